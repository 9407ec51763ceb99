"""What the model predicts, compared with what it predicted on held-out data: pure functions.

Served predictions are summarised as two distributions: the shares of top labels and the shares
of top-label confidence in fixed buckets (``CONFIDENCE_EDGES``). A sliding window of the latest
predictions is compared with the reference the archive carries (``handler.monitoring.reference``,
written by ``hflabels train`` / ``hflabels calibrate`` from held-out predictions) by

- the population stability index, PSI = sum_i (p_i - q_i) ln(p_i / q_i) (the symmetric Kullback-
  Leibler divergence; credit-risk practice reads < 0.1 as stable and > 0.25 as a shift), and
- the Jensen-Shannon distance, sqrt of the Jensen-Shannon divergence in bits (0 to 1; scipy's
  ``jensenshannon(p, q, base=2)``).

Both are computed on shares smoothed by ``SHARE_FLOOR`` so an empty bucket or an unseen label
gives a finite value (the same smoothing on both sides; the tests compare with scipy on these).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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
    label_psi: float
    label_js: float
    confidence_psi: float
    confidence_js: float

    def crosses(self, psi_alarm: float, js_alarm: float) -> bool:
        return max(self.label_psi, self.confidence_psi) > psi_alarm or max(self.label_js, self.confidence_js) > js_alarm


class PredictionWindow:
    """The latest ``size`` predictions (top label index, confidence bucket), with running counts."""

    def __init__(self, size: int, labels: int) -> None:
        self.size = size
        self._items: deque[tuple[int, int]] = deque()
        self.label_counts = np.zeros(labels, dtype=np.int64)
        self.bucket_counts = np.zeros(len(CONFIDENCE_EDGES) - 1, dtype=np.int64)

    def add(self, label: int, confidence: float) -> None:
        bucket = confidence_bucket(confidence)
        self._items.append((label, bucket))
        self.label_counts[label] += 1
        self.bucket_counts[bucket] += 1
        if len(self._items) > self.size:
            old_label, old_bucket = self._items.popleft()
            self.label_counts[old_label] -= 1
            self.bucket_counts[old_bucket] -= 1

    @property
    def full(self) -> bool:
        return len(self._items) >= self.size

    def __len__(self) -> int:
        return len(self._items)

    def compare(self, label_reference: Sequence[float], confidence_reference: Sequence[float]) -> DriftReading:
        labels, buckets = shares(self.label_counts), shares(self.bucket_counts)
        return DriftReading(
            population_stability_index(labels, label_reference),
            jensen_shannon_distance(labels, label_reference),
            population_stability_index(buckets, confidence_reference),
            jensen_shannon_distance(buckets, confidence_reference),
        )
