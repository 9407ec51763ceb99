"""How to run forward passes on this machine, measured at load rather than fitted once elsewhere.

Two constants decide how a batch of encoder inputs is run, and both depend on the CPU (or GPU):
- the fixed price of a padded pass, in tokens' worth of compute (``batch_overhead_tokens``): where
  a batch sorted by length is cut into passes (handler/engine/batching.py);
- whether padding-free passes (handler/engine/packed_encoder.py) beat padded ones: they remove
  the padding but add gathers and per-group attention calls, and which wins moved from +3% to
  -14% between two machines of the same class.

So at load the handler times a few padded pass shapes on the serving device, fits
``seconds = pass_seconds + token_seconds * rows * width``, and times a mixed-length batch both
ways with the fitted planner; the faster way serves. The timings here are injected callables,
so the choice itself is a pure function of them (and tested without a clock).
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from handler.engine.batching import plan_micro_batches

# (rows, width) of the padded passes timed for the fit: from one short input to a full pass.
FIT_SHAPES = ((1, 8), (1, 32), (2, 64), (8, 16), (8, 48), (16, 32))
# Timing rounds per pass shape, and per strategy for the choice. The fastest round of each is
# kept: another process taking a core (a second model loading, the frontend starting) only ever
# adds time, and it slows the many small steps of a packed pass more than a padded pass's few
# large ones, so medians let a busy moment at load pick padded passes for good.
FIT_ROUNDS = 3
CHOICE_ROUNDS = 5
# Packed passes serve only when they are at least this much faster: near a tie the model's own
# forward is the simpler path.
PACKED_MARGIN = 0.97
# Inputs in the mixed-length batch timed both ways (fewer if micro_batch_size is smaller).
MIXED_BATCH_ROWS = 16
MAX_OVERHEAD_TOKENS = 4096
# A strategy's median round this much slower than its fastest means something else held the CPU
# while it was timed: the handler measures again once, and says so if it stays that busy.
BUSY_SPREAD = 1.5
# A fit is believed only if a pass has a fixed cost and a per-token cost, and every shape's time is
# within this share of what the fit predicts for it. Otherwise the shapes are timed again, at most
# FIT_ATTEMPTS times, and a fit that stays implausible gives way to FALLBACK_OVERHEAD_TOKENS: a
# busy CPU once fitted "0.00 ms + 173.8 us per token", chose padded passes and served 36% slower
# for the worker's whole life (docs: performance).
FIT_TOLERANCE = 0.35
FIT_ATTEMPTS = 3
FALLBACK_OVERHEAD_TOKENS = 32

# Seconds one pass takes for inputs of these lengths (padded: rows of the longest).
PassTimer = Callable[[Sequence[int]], float]


@dataclass(frozen=True)
class PassCosts:
    """A padded pass costs ``pass_seconds`` plus ``token_seconds`` per padded token."""

    pass_seconds: float
    token_seconds: float
    # False: no fixed cost, no per-token cost, or shapes far from the line (see FIT_TOLERANCE).
    plausible: bool = True

    @property
    def overhead_tokens(self) -> int:
        if self.token_seconds <= 0:
            return MAX_OVERHEAD_TOKENS
        return int(min(MAX_OVERHEAD_TOKENS, max(0.0, round(self.pass_seconds / self.token_seconds))))


@dataclass(frozen=True)
class ExecutionChoice:
    """How this model's forward passes run, and the measurements behind it (None: configured)."""

    packed: bool
    batch_overhead_tokens: int
    costs: PassCosts | None = None
    packed_seconds: float | None = None
    padded_seconds: float | None = None
    measured_seconds: float = 0.0
    # The larger median / fastest ratio of the two strategies' rounds (None: not timed).
    timing_spread: float | None = None

    @property
    def disturbed(self) -> bool:
        spread = self.timing_spread is not None and self.timing_spread > BUSY_SPREAD
        return spread or (self.costs is not None and not self.costs.plausible)

    def to_json(self) -> dict:
        found = dataclasses.asdict(self)
        return found

    @classmethod
    def from_json(cls, found: dict) -> ExecutionChoice:
        costs = found.get("costs")
        return cls(**{**found, "costs": PassCosts(**costs) if costs is not None else None})

    def describe(self) -> str:
        way = "padding-free" if self.packed else "padded"
        found = []
        if self.costs is not None:
            found.append(
                f"a padded pass costs {self.costs.pass_seconds * 1e3:.2f} ms + "
                f"{self.costs.token_seconds * 1e6:.1f} us per token"
            )
        if self.packed_seconds is not None and self.padded_seconds is not None:
            found.append(
                f"a mixed batch took {self.packed_seconds * 1e3:.1f} ms packed, "
                f"{self.padded_seconds * 1e3:.1f} ms padded"
            )
        overhead = "" if self.costs is not None else " (configured)"
        text = f"{way} passes, batch_overhead_tokens {self.batch_overhead_tokens}{overhead}"
        if not found:
            return text + "; nothing measured"
        if self.costs is not None and not self.costs.plausible:
            found.append(
                f"no plausible fit in {FIT_ATTEMPTS} tries (a fixed cost and a per-token cost, each shape within "
                f"{FIT_TOLERANCE:.0%} of the line): batch_overhead_tokens {FALLBACK_OVERHEAD_TOKENS}, the default"
            )
        if self.timing_spread is not None and self.timing_spread > BUSY_SPREAD:
            found.append(
                f"rounds spread x{self.timing_spread:.1f}: the CPU was busy while measuring "
                "(set packed_forward and batch_overhead_tokens to fix the choice)"
            )
        return f"{text}; measured in {self.measured_seconds:.2f} s: " + "; ".join(found)


def fit_pass_costs(samples: Sequence[tuple[int, float]]) -> PassCosts:
    """Least squares ``seconds = pass_seconds + token_seconds * tokens`` over (tokens, seconds),
    with neither term negative; ``plausible`` says whether the line can be believed."""
    tokens = np.array([float(t) for t, _ in samples])
    seconds = np.array([s for _, s in samples])
    design = np.stack([np.ones_like(tokens), tokens], axis=1)
    (pass_seconds, token_seconds), *_ = np.linalg.lstsq(design, seconds, rcond=None)
    if pass_seconds <= 0:
        return PassCosts(0.0, float(max(seconds @ tokens / (tokens @ tokens), 0.0)), plausible=False)
    if token_seconds <= 0:
        return PassCosts(float(np.mean(seconds)), 0.0, plausible=False)
    predicted = pass_seconds + token_seconds * tokens
    close = bool(np.all(np.abs(seconds - predicted) <= FIT_TOLERANCE * predicted))
    # A pass costs at least one token's worth more than its tokens: launching it is never free.
    return PassCosts(float(pass_seconds), float(token_seconds), plausible=close and pass_seconds >= token_seconds)


def mixed_lengths(rows: int, max_length: int) -> list[int]:
    """A spread of input lengths like short-text traffic: from 8 tokens up to 96 (or max_length)."""
    longest = max(2, min(96, max_length))
    shortest = min(8, longest)
    return [round(shortest + (longest - shortest) * (i / max(1, rows - 1)) ** 2) for i in range(rows)]


def choose_execution(
    time_padded: PassTimer,
    time_packed: PassTimer | None,
    micro_batch_size: int,
    max_length: int,
    overhead_tokens: int | None,
    packed: bool | None,
    clock: Callable[[], float],
) -> ExecutionChoice:
    """What to run, measuring what is not configured: ``overhead_tokens`` None is fitted, and
    ``packed`` None is decided by timing (only when ``time_packed`` exists: the model can pack)."""
    started = clock()
    can_pack = time_packed is not None
    costs = None
    if overhead_tokens is None:
        shapes = sorted({(min(rows, micro_batch_size), min(width, max_length)) for rows, width in FIT_SHAPES})
        time_padded([shapes[-1][1]] * shapes[-1][0])  # warm-up: first calls allocate
        for _ in range(FIT_ATTEMPTS):
            timings: dict[tuple[int, int], list[float]] = {shape: [] for shape in shapes}
            for _ in range(FIT_ROUNDS):
                for rows, width in shapes:
                    timings[(rows, width)].append(time_padded([width] * rows))
            costs = fit_pass_costs([(rows * width, min(t)) for (rows, width), t in timings.items()])
            if costs.plausible:
                break
        assert costs is not None
        overhead_tokens = costs.overhead_tokens if costs.plausible else FALLBACK_OVERHEAD_TOKENS
    if packed is None and not can_pack:
        packed = False
    packed_seconds = padded_seconds = spread = None
    if packed is None:
        assert time_packed is not None
        lengths = mixed_lengths(min(MIXED_BATCH_ROWS, micro_batch_size), max_length)
        plan = plan_micro_batches(lengths, micro_batch_size, 1 << 62, True, overhead_tokens)
        time_packed(lengths)  # warm-up
        packed_times: list[float] = []
        padded_times: list[float] = []
        for round_index in range(CHOICE_ROUNDS):
            # Alternate which goes first, so neither always runs on a cache the other warmed.
            for way in ("packed", "padded") if round_index % 2 == 0 else ("padded", "packed"):
                if way == "packed":
                    packed_times.append(time_packed(lengths))
                else:
                    padded_times.append(sum(time_padded([lengths[i] for i in batch]) for batch in plan))
        packed_seconds, padded_seconds = min(packed_times), min(padded_times)
        spread = max(statistics.median(times) / min(times) for times in (packed_times, padded_times))
        packed = packed_seconds < PACKED_MARGIN * padded_seconds
    return ExecutionChoice(
        packed=bool(packed) and can_pack,
        batch_overhead_tokens=overhead_tokens,
        costs=costs,
        packed_seconds=packed_seconds,
        padded_seconds=padded_seconds,
        measured_seconds=clock() - started if (costs is not None or packed_seconds is not None) else 0.0,
        timing_spread=spread,
    )
