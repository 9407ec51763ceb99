"""What the model sees and predicts, compared with what it saw and predicted on held-out data:
pure functions.

Served answers are taken in consecutive windows (``DriftWindow``). Each window is tested against
the reference the archive carries (``handler.monitoring.reference``, written by ``hflabels train``
/ ``hflabels calibrate`` from held-out examples), each test at an even share of the level
(``test_window``; the statistics are in handler/postprocess/drift_tests.py):

- inputs: a kernel MMD permutation test between the window's representations (the mean of the
  encoder's last hidden states, from the pass that answered) and the reference's;
- outputs: chi-square tests of homogeneity of the top labels' counts and of the top-label
  confidence buckets' counts (``CONFIDENCE_EDGES``) against the reference's.

The alarm (``DriftAlarm``) is raised by a window in which any test rejects and cleared after
``clear_windows`` consecutive windows in which none does. Two effect sizes are reported beside the
p-values, on the same windows:

- the population stability index, PSI = sum_i (p_i - q_i) ln(p_i / q_i) (the symmetric Kullback-
  Leibler divergence; credit-risk practice reads < 0.1 as stable and > 0.25 as a shift), and
- the Jensen-Shannon distance, sqrt of the Jensen-Shannon divergence in bits (0 to 1; scipy's
  ``jensenshannon(p, q, base=2)``).

Both are computed on shares smoothed by ``SHARE_FLOOR`` so an empty bucket or an unseen label
gives a finite value (the same smoothing on both sides; the tests compare with scipy on these).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from handler.postprocess.drift_tests import chi_square_homogeneity, mmd_permutation_test

# Bucket edges of top-label confidence: finer near 1, where a confident model's answers lie.
CONFIDENCE_EDGES = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
# Each share is raised to at least this (then renormalised) before PSI and JS are taken.
SHARE_FLOOR = 1e-4


def confidence_bucket(score: float) -> int:
    """The index of the bucket [edge_i, edge_i+1) holding ``score`` (1.0 in the last)."""
    index = int(np.searchsorted(CONFIDENCE_EDGES, score, side="right")) - 1
    return min(max(index, 0), len(CONFIDENCE_EDGES) - 2)


def bucket_names() -> tuple[str, ...]:
    """Each bucket's name as the ``Bucket`` dimension of the metrics: "0.90-0.95"."""
    return tuple(f"{low:.2f}-{high:.2f}" for low, high in zip(CONFIDENCE_EDGES, CONFIDENCE_EDGES[1:]))


def shares(counts: Sequence[float]) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total > 0 else np.full(len(counts), 1.0 / len(counts))


def smoothed(distribution: Sequence[float]) -> np.ndarray:
    floored = np.maximum(np.asarray(distribution, dtype=np.float64), SHARE_FLOOR)
    return floored / floored.sum()


def population_stability_index(observed: Sequence[float], reference: Sequence[float]) -> float:
    p, q = smoothed(observed), smoothed(reference)
    return float(np.sum((p - q) * np.log(p / q)))


def jensen_shannon_distance(observed: Sequence[float], reference: Sequence[float]) -> float:
    p, q = smoothed(observed), smoothed(reference)
    middle = (p + q) / 2.0
    divergence = 0.5 * np.sum(p * np.log2(p / middle)) + 0.5 * np.sum(q * np.log2(q / middle))
    return float(np.sqrt(max(divergence, 0.0)))


@dataclass(frozen=True)
class DriftReading:
    """One window's tests: p-values (None: the test was not run) and effect sizes."""

    label_p: float
    confidence_p: float
    input_p: float | None
    input_mmd2: float | None
    label_psi: float
    label_js: float
    confidence_psi: float
    confidence_js: float
    level_per_test: float

    def rejected(self) -> bool:
        p_values = [self.label_p, self.confidence_p] + ([] if self.input_p is None else [self.input_p])
        return min(p_values) <= self.level_per_test

    def gauges(self) -> dict[str, float]:
        found = {
            "DriftLabelP": self.label_p, "DriftConfidenceP": self.confidence_p,
            "DriftLabelPSI": self.label_psi, "DriftLabelJS": self.label_js,
            "DriftConfidencePSI": self.confidence_psi, "DriftConfidenceJS": self.confidence_js,
        }  # fmt: skip
        if self.input_p is not None and self.input_mmd2 is not None:
            found.update(DriftInputP=self.input_p, DriftInputMMD=self.input_mmd2)
        return found

    def describe(self) -> str:
        inputs = "" if self.input_p is None else f"inputs p {self.input_p:.4f} (MMD^2 {self.input_mmd2:.4g}), "
        return (
            f"{inputs}labels p {self.label_p:.4f} (PSI {self.label_psi:.3f}), confidence p {self.confidence_p:.4f} "
            f"(PSI {self.confidence_psi:.3f}); each test rejects at p <= {self.level_per_test:.4g}"
        )


@dataclass(frozen=True)
class ReferenceSample:
    """What the window is tested against: output shares with the example count behind them, and
    (optionally) the representations of held-out inputs with the kernel bandwidth for them."""

    label_shares: np.ndarray
    confidence_shares: np.ndarray
    examples: int
    representations: np.ndarray | None = None
    bandwidth: float | None = None


@dataclass(frozen=True)
class CompletedWindow:
    label_counts: np.ndarray
    bucket_counts: np.ndarray
    representations: np.ndarray | None


def window_tests(
    window: CompletedWindow, reference: ReferenceSample, level: float, permutations: int, seed: int = 0
) -> DriftReading:
    """The window's tests, each at ``level`` / (number of tests): Bonferroni, so a window drawn like
    the reference rejects in any of them with probability at most ``level``."""
    with_inputs = reference.representations is not None and window.representations is not None
    level_per_test = level / (3 if with_inputs else 2)
    label_reference = np.round(reference.label_shares * reference.examples)
    bucket_reference = np.round(reference.confidence_shares * reference.examples)
    labels = chi_square_homogeneity(window.label_counts, label_reference)
    buckets = chi_square_homogeneity(window.bucket_counts, bucket_reference)
    inputs = None
    if with_inputs:
        assert reference.representations is not None and reference.bandwidth is not None
        inputs = mmd_permutation_test(
            reference.representations, window.representations, reference.bandwidth, permutations, seed
        )
    label_shares, bucket_shares = shares(window.label_counts), shares(window.bucket_counts)
    return DriftReading(
        labels.p_value,
        buckets.p_value,
        None if inputs is None else inputs.p_value,
        None if inputs is None else inputs.statistic,
        population_stability_index(label_shares, reference.label_shares),
        jensen_shannon_distance(label_shares, reference.label_shares),
        population_stability_index(bucket_shares, reference.confidence_shares),
        jensen_shannon_distance(bucket_shares, reference.confidence_shares),
        level_per_test,
    )


class DriftWindow:
    """Answers gathered until ``size`` of them make a window (top label, confidence bucket and,
    when inputs are tested, the representation)."""

    def __init__(self, size: int, labels: int, representations: bool) -> None:
        self.size, self.labels, self.with_representations = size, labels, representations
        self._reset()

    def _reset(self) -> None:
        self.label_counts = np.zeros(self.labels, dtype=np.int64)
        self.bucket_counts = np.zeros(len(CONFIDENCE_EDGES) - 1, dtype=np.int64)
        self.representations: list[np.ndarray] = []
        self.count = 0

    def add(self, label: int, confidence: float, representation: np.ndarray | None) -> CompletedWindow | None:
        """Count one answer; the completed window when this one fills it (and a new one starts)."""
        self.label_counts[label] += 1
        self.bucket_counts[confidence_bucket(confidence)] += 1
        if self.with_representations and representation is not None:
            self.representations.append(np.asarray(representation, dtype=np.float32))
        self.count += 1
        if self.count < self.size:
            return None
        # An answer without a representation (none asked of that pass) leaves the input test out.
        complete = self.with_representations and len(self.representations) == self.count
        done = CompletedWindow(
            self.label_counts, self.bucket_counts, np.stack(self.representations) if complete else None
        )
        self._reset()
        return done


class AlarmState:
    """Raised by a rejecting window; cleared after ``clear_windows`` consecutive quiet ones."""

    def __init__(self, clear_windows: int) -> None:
        self.clear_windows = clear_windows
        self.raised = False
        self.quiet = 0

    def update(self, rejected: bool) -> bool:
        """Take one window's verdict; True when the alarm changed."""
        if rejected:
            self.quiet = 0
            changed, self.raised = not self.raised, True
            return changed
        self.quiet += 1
        if self.raised and self.quiet >= self.clear_windows:
            self.raised = False
            return True
        return False
