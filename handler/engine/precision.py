"""``dtype: auto``: low precision only where it is fast on this device and agrees with float32.

At load, on the serving device: if it has fast bf16 units (``fast_bfloat16``: Intel AMX or
AVX512_BF16, AMD Zen 4/5 AVX512_BF16, Arm BF16, a CUDA GPU with bf16), the probe texts are run
through the model in float32 and under bf16 autocast (outputs leave in float32, so the head's
softmax, calibration and thresholds are computed in float32), and both are timed, alternating.
The candidate serves only if every probe output picks the same label (per row, per token, per
span logit), its largest probability change is at most ``loading.dtype_tolerance``, and it is at
least ``MIN_SPEEDUP`` times faster; otherwise float32 serves. Fail-closed: anything missing (no
units, no probe) means float32.

The probe: ``probe.txt`` beside the model (one text per line; ``hflabels train`` writes its
validation texts there, ``hflabels archive --probe FILE`` adds any), else ``BUILT_IN_PROBE``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

PROBE_FILE = "probe.txt"
# At most this many probe texts are run (the load stays within a few seconds for MiniLM).
MAX_PROBE_TEXTS = 256
MIN_SPEEDUP = 1.2
TIMING_ROUNDS = 3
# A round this much slower than the fastest of its kind means another process took the CPU: the
# rounds are timed again (at most TIMING_ATTEMPTS times in all). A CPU busy for the whole timing
# cannot be seen here; live traffic corrects that choice (handler/engine/live_tuning.py).
MAX_ROUND_SPREAD = 1.5
TIMING_ATTEMPTS = 3
# Every probe text is compared; the first this many are timed (load time stays low).
TIMED_PROBE_TEXTS = 64
# Short and long, plain and odd: reviews, news, questions, code, numbers, other languages.
BUILT_IN_PROBE = (
    "I loved it.",
    "The service was slow and the food arrived cold.",
    "Not bad at all, though the ending dragged on for far too long.",
    "What time does the pharmacy on the corner open on Sundays?",
    "The central bank raised interest rates by a quarter of a percentage point on Wednesday.",
    "meh",
    "Absolutely terrible customer support, I will never order from them again!!!",
    "The committee will meet again next month to review the proposal in detail.",
    "def add(a, b): return a + b",
    "Order #4512 shipped on 2024-03-07 and should arrive within 3-5 business days.",
    "C'est un film magnifique, mais un peu trop long.",
    "Das Hotel war sauber, aber das Frühstück war enttäuschend.",
    "It is what it is.",
    "The new phone's battery easily lasts two days, and the camera is excellent in low light, "
    "although the software still has a few rough edges that the next update should fix.",
    "Scientists have discovered a new species of frog in the rainforests of Ecuador.",
    "Can you help me reset my password? I no longer have access to the old email address.",
    "Great value for the price.",
    "The plot is thin, but the acting carries it.",
    "Rain is expected in the afternoon, clearing by evening with lows around ten degrees.",
    "I'm not sure whether I liked it or not.",
)


@dataclass(frozen=True)
class PrecisionChoice:
    low_precision: bool
    unit: str | None
    probe_texts: int = 0
    labels_agree: bool | None = None
    max_change: float | None = None
    speedup: float | None = None
    tolerance: float | None = None
    # Why nothing was tried, where something other than the device ruled it out.
    why_not: str | None = None
    timing_attempts: int = 0
    # The last timing attempt still had rounds far apart (MAX_ROUND_SPREAD).
    disturbed: bool = False

    @property
    def answers_agree(self) -> bool:
        """Whether the candidate's answers passed the check (whatever the speed test said)."""
        return bool(self.labels_agree) and self.max_change is not None and self.max_change <= (self.tolerance or 0)

    def describe(self) -> str:
        chosen = "bfloat16 autocast" if self.low_precision else "float32"
        if self.unit is None:
            return f"dtype auto: {chosen} ({self.why_not or 'no fast bf16 units on this device'})"
        figures = (
            f"on {self.probe_texts} probe texts labels {'agree' if self.labels_agree else 'differ'}, largest "
            f"probability change {self.max_change:.4f} (tolerance {self.tolerance:g})"
        )
        if self.speedup is not None:
            figures += f", {self.speedup:.2f}x the float32 speed (needs {MIN_SPEEDUP:g}x)"
            if self.timing_attempts > 1:
                figures += f", timed {self.timing_attempts} times{' (still disturbed)' if self.disturbed else ''}"
        elif self.why_not:
            figures += f"; {self.why_not}"
        return f"dtype auto: {chosen}; bf16 units: {self.unit}; {figures}"


def probabilities(array: np.ndarray) -> np.ndarray:
    values = np.asarray(array, dtype=np.float64)
    shifted = np.exp(values - values.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def compare_outputs(
    reference: Sequence[dict[str, np.ndarray]], candidate: Sequence[dict[str, np.ndarray]]
) -> tuple[bool, float]:
    """(every output picks the same label / token / span position, largest probability change)."""
    agree, change = True, 0.0
    for ours, theirs in zip(reference, candidate):
        for name, array in ours.items():
            p, q = probabilities(array), probabilities(theirs[name])
            agree = agree and bool(np.array_equal(p.argmax(axis=-1), q.argmax(axis=-1)))
            change = max(change, float(np.abs(p - q).max()))
    return agree, change


Comparison = Callable[[Sequence[dict[str, np.ndarray]], Sequence[dict[str, np.ndarray]]], tuple[bool, float]]


# (float32 seconds / low-precision seconds, timing attempts, whether the last was still disturbed)
Timing = tuple[float, int, bool]


def choose_precision(
    unit: str | None,
    probe_texts: int,
    run: Callable[[bool, int | None], list[dict[str, np.ndarray]]],
    tolerance: float,
    clock: Callable[[], float] = time.perf_counter,
    compare: Comparison = compare_outputs,
    remember: Callable[[Callable[[], Timing]], Timing | None] | None = None,
    answers: tuple[bool, float] | None = None,
) -> PrecisionChoice:
    """``run(low_precision, texts)`` gives the outputs of the first ``texts`` probe texts (None:
    all) one way or the other; each way's time is its fastest of TIMING_ROUNDS alternating rounds.
    ``compare`` is the task's check of the outputs (agree, largest change of what it serves);
    ``answers`` is its result where the caller has it already (remembered: load_measurements.py).
    ``remember`` reads the timing measured before, or times under the machine's lock, or gives
    None: then float32 serves with the candidate's answers verified, and the live tuner decides
    the speed from traffic."""
    if unit is None or probe_texts == 0:
        return PrecisionChoice(False, unit, probe_texts)
    warmed = answers is None
    agree, change = compare(run(False, None), run(True, None)) if answers is None else answers  # also the warm-up
    if not (agree and change <= tolerance):
        # Answers decide first: no speed makes a disagreeing candidate acceptable.
        return PrecisionChoice(False, unit, probe_texts, agree, change, None, tolerance)

    def timed() -> Timing:
        if not warmed:  # the first pass of each way allocates
            run(False, TIMED_PROBE_TEXTS), run(True, TIMED_PROBE_TEXTS)
        attempts = 0
        while True:
            attempts += 1
            times: dict[bool, list[float]] = {False: [], True: []}
            for round_index in range(TIMING_ROUNDS):
                for low in (False, True) if round_index % 2 == 0 else (True, False):
                    started = clock()
                    run(low, TIMED_PROBE_TEXTS)
                    times[low].append(clock() - started)
            disturbed = any(max(rounds) > MAX_ROUND_SPREAD * min(rounds) for rounds in times.values())
            if not disturbed or attempts == TIMING_ATTEMPTS:
                return min(times[False]) / max(min(times[True]), 1e-12), attempts, disturbed

    timing = remember(timed) if remember is not None else timed()
    if timing is None:
        return PrecisionChoice(False, unit, probe_texts, agree, change, None, tolerance,
                               why_not="not timed: another worker was timing, or the load's timing budget "
                                       "ran out; float32 until traffic says")  # fmt: skip
    speedup, attempts, disturbed = timing
    return PrecisionChoice(speedup >= MIN_SPEEDUP, unit, probe_texts, agree, change, speedup, tolerance,
                           timing_attempts=attempts, disturbed=disturbed)  # fmt: skip
