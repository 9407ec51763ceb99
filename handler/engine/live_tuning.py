"""Correcting the load-time choices of how passes run from the passes traffic actually runs.

Two choices are made at load by timing a few passes: packed against padded passes
(handler/engine/pass_costs.py) and, under ``dtype: auto``, bf16 autocast against float32
(handler/engine/precision.py). One busy second there picked padded passes for a worker's whole
life (36% slower, docs: performance); the precision speed test can be fooled the same way. While
serving, every batch's forward is timed; now and then (``EXPLORE_EVERY`` batches) a batch runs one
of the choices the other way (the tunable dimensions take turns), so every alternative has fresh
figures on the same traffic. A way's cost is its recent median of seconds per real token of a
batch (the strategy is its plan of passes as much as the passes: padded passes cut at a wrong
overhead are slow for that reason). When an alternative has been cheaper by ``SWITCH_MARGIN``
over at least ``MIN_SAMPLES`` batches of each, the choice switches (a log line and the
PackedForward / LowPrecision gauge say so). The margin and the sample floor are the hysteresis:
near a tie nothing moves, and a switch back needs the same evidence again.

Only speed is tuned here: bf16 is an alternative only where its answers were checked against
float32 on the probe at load (labels agree, within ``dtype_tolerance``), so whichever way a batch
runs its answers are within that verified tolerance. Pure: the timings are given, and tested
without a clock.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

# One batch in this many runs one choice the other way.
EXPLORE_EVERY = 20
# Batches kept per way, and the fewest of each before a switch is considered.
WINDOW = 60
MIN_SAMPLES = 12
# The other way must cost at most this share of the chosen one's to take over.
SWITCH_MARGIN = 0.9
# Batches of fewer real tokens say more about fixed overheads than about the way they ran: not
# counted, and they always run the choice (a lone short input never pays for an experiment).
MIN_PASS_TOKENS = 64
# The tunable dimensions of a Way.
STRATEGY = "packed"
PRECISION = "low_precision"


@dataclass(frozen=True)
class Way:
    """How a batch's passes run: padding-free or padded, under low-precision autocast or in the
    weights' own dtype."""

    packed: bool
    low_precision: bool = False

    def flipped(self, dimension: str) -> Way:
        return replace(self, **{dimension: not getattr(self, dimension)})


@dataclass(frozen=True)
class Switch:
    dimension: str
    # The new choice.
    way: Way
    chosen_cost: float
    other_cost: float
    samples: int

    def describe(self) -> str:
        if self.dimension == STRATEGY:
            what = f"forward passes: switching to {'padding-free' if self.way.packed else 'padded'} passes"
        else:
            what = f"dtype auto: switching to {'bfloat16 autocast' if self.way.low_precision else 'float32'}"
        return (
            f"{what} from live traffic: {self.other_cost * 1e6:.1f} us per token against "
            f"{self.chosen_cost * 1e6:.1f} over the last {self.samples} batches of each"
        )


class LiveExecutionTuner:
    def __init__(self, chosen: Way, dimensions: Sequence[str] = (STRATEGY,)) -> None:
        if not dimensions or any(dimension not in (STRATEGY, PRECISION) for dimension in dimensions):
            raise ValueError(f"tunable dimensions are {STRATEGY!r} and {PRECISION!r}, not {dimensions!r}")
        self.way = chosen
        self.dimensions = tuple(dimensions)
        self._seconds_per_token: dict[Way, deque[float]] = {}
        self._batches = 0
        self.switches = 0

    def next_batch(self, tokens: int) -> Way:
        """How a batch of ``tokens`` real tokens runs: the choice, or now and then one dimension
        of it the other way; a batch too small to be timed usefully always runs the choice."""
        if tokens < MIN_PASS_TOKENS:
            return self.way
        self._batches += 1
        if self._batches % EXPLORE_EVERY:
            return self.way
        explored = self.dimensions[(self._batches // EXPLORE_EVERY - 1) % len(self.dimensions)]
        return self.way.flipped(explored)

    def record(self, way: Way, real_tokens: int, seconds: float) -> Switch | None:
        """One timed batch that ran ``way``; returns the switch it led to, if any."""
        if real_tokens < MIN_PASS_TOKENS or seconds <= 0:
            return None
        self._samples(way).append(seconds / real_tokens)
        chosen = self._samples(self.way)
        if len(chosen) < MIN_SAMPLES:
            return None
        chosen_cost = statistics.median(chosen)
        for dimension in self.dimensions:
            other = self._samples(self.way.flipped(dimension))
            if len(other) < MIN_SAMPLES:
                continue
            other_cost = statistics.median(other)
            if other_cost > SWITCH_MARGIN * chosen_cost:
                continue
            samples = min(len(chosen), len(other))
            switch = Switch(dimension, self.way.flipped(dimension), chosen_cost, other_cost, samples)
            self.way = switch.way
            self.switches += 1
            # The new choice starts from fresh evidence on every side: no flapping on old samples.
            self._seconds_per_token.clear()
            return switch
        return None

    def _samples(self, way: Way) -> deque[float]:
        return self._seconds_per_token.setdefault(way, deque(maxlen=WINDOW))
