"""Correcting the load-time choice of forward passes from the passes traffic actually runs.

The load-time measurement (handler/engine/pass_costs.py) takes a second; one busy second there
picked padded passes for a worker's whole life (36% slower, README Performance). While serving,
every batch's forward is timed; now and then (``EXPLORE_EVERY`` batches) a batch runs the
strategy not chosen, so both have fresh figures on the same traffic. Each strategy's cost is its
recent median of seconds per real token of a batch (the strategy is its plan of passes as much as
the passes: padded passes cut at a wrong overhead are slow for that reason). When the other one
has been cheaper by ``SWITCH_MARGIN`` over at least ``MIN_SAMPLES`` batches of each, the choice
switches (a log line and the PackedForward gauge say so). The margin and the sample floor are the
hysteresis: near a tie nothing moves, and a switch back needs the same evidence again. Pure: the
timings are given, and tested without a clock.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass

# One batch in this many runs the strategy not chosen (its answers are equal to float32 rounding).
EXPLORE_EVERY = 20
# Batches kept per strategy, and the fewest of each before a switch is considered.
WINDOW = 60
MIN_SAMPLES = 12
# The other strategy must cost at most this share of the chosen one's to take over.
SWITCH_MARGIN = 0.9
# Batches of fewer real tokens say more about fixed overheads than about the strategy: not counted,
# and they always run the choice (a lone short input never pays for an experiment).
MIN_PASS_TOKENS = 64


@dataclass(frozen=True)
class Switch:
    packed: bool
    chosen_cost: float
    other_cost: float
    samples: int

    def describe(self) -> str:
        way = "padding-free" if self.packed else "padded"
        return (
            f"forward passes: switching to {way} passes from live traffic: {self.other_cost * 1e6:.1f} us per "
            f"token against {self.chosen_cost * 1e6:.1f} over the last {self.samples} batches of each"
        )


class LiveExecutionTuner:
    def __init__(self, packed: bool) -> None:
        self.packed = packed
        self._seconds_per_token: dict[bool, deque[float]] = {True: deque(maxlen=WINDOW), False: deque(maxlen=WINDOW)}
        self._batches = 0
        self.switches = 0

    def next_batch_packed(self, tokens: int) -> bool:
        """Whether a batch of ``tokens`` real tokens runs packed passes: the choice, or now and
        then the other way; a batch too small to be timed usefully always runs the choice."""
        if tokens < MIN_PASS_TOKENS:
            return self.packed
        self._batches += 1
        if self._batches % EXPLORE_EVERY == 0:
            return not self.packed
        return self.packed

    def record(self, packed: bool, real_tokens: int, seconds: float) -> Switch | None:
        """One timed batch; returns the switch it led to, if any."""
        if real_tokens < MIN_PASS_TOKENS or seconds <= 0:
            return None
        self._seconds_per_token[packed].append(seconds / real_tokens)
        chosen, other = self._seconds_per_token[self.packed], self._seconds_per_token[not self.packed]
        if len(chosen) < MIN_SAMPLES or len(other) < MIN_SAMPLES:
            return None
        chosen_cost, other_cost = statistics.median(chosen), statistics.median(other)
        if other_cost > SWITCH_MARGIN * chosen_cost:
            return None
        switch = Switch(not self.packed, chosen_cost, other_cost, min(len(chosen), len(other)))
        self.packed = not self.packed
        self.switches += 1
        # The new choice starts from fresh evidence on both sides: no flapping on old samples.
        for samples in self._seconds_per_token.values():
            samples.clear()
        return switch
