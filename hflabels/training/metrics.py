"""Pure functions for fine-tuning: class weights, per-label thresholds, evaluation metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hflabels.training.choices import WEIGHT_SCHEMES


def class_weights(counts: Sequence[int], scheme: str, beta: float = 0.999) -> np.ndarray:
    """One weight per class from its example count, normalised to mean 1.

    - ``inverse``: 1 / n
    - ``sqrt_inverse``: 1 / sqrt(n)
    - ``effective``: (1 - beta) / (1 - beta**n), the "effective number of samples" weighting
      (Cui et al., CVPR 2019)
    Classes with no examples get weight 0 (they cannot be learned from this data).
    """
    counts = np.asarray(counts, dtype=np.float64)
    if scheme not in WEIGHT_SCHEMES:
        raise ValueError(f"unknown class-weight scheme {scheme!r}; choose one of {', '.join(WEIGHT_SCHEMES)}")
    if scheme == "none":
        return np.ones_like(counts)
    present = counts > 0
    raw = np.zeros_like(counts)
    if scheme == "inverse":
        raw[present] = 1.0 / counts[present]
    elif scheme == "sqrt_inverse":
        raw[present] = 1.0 / np.sqrt(counts[present])
    else:
        raw[present] = (1.0 - beta) / (1.0 - np.power(beta, counts[present]))
    return raw * (len(counts) / raw.sum())


def f1_at(scores: np.ndarray, truth: np.ndarray, threshold: float) -> float:
    predicted = scores >= threshold
    true_positives = int(np.sum(predicted & truth))
    denominator = int(np.sum(predicted)) + int(np.sum(truth))
    return 0.0 if denominator == 0 else 2.0 * true_positives / denominator


def tune_thresholds(scores: np.ndarray, truth: np.ndarray, default: float = 0.5) -> np.ndarray:
    """Per label, the threshold that maximises that label's F1 on ``scores``.

    Candidates lie halfway between consecutive observed scores (and below the lowest), never on
    one: a threshold equal to a validation score would flip that example's decision once the
    score is served in float32 or the threshold is written rounded. ``scores`` and ``truth`` are
    (examples, labels). Ties go to the threshold closest to ``default``; a label with no positive
    example keeps ``default``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    truth = np.asarray(truth, dtype=bool)
    chosen = np.full(scores.shape[1], default)
    for label in range(scores.shape[1]):
        if not truth[:, label].any():
            continue
        observed = np.unique(scores[:, label])
        between = np.concatenate([[observed[0] / 2], (observed[:-1] + observed[1:]) / 2])
        candidates = np.unique(np.append(between, default))
        f1s = np.array([f1_at(scores[:, label], truth[:, label], t) for t in candidates])
        best = np.flatnonzero(np.isclose(f1s, f1s.max()))
        chosen[label] = candidates[best[np.argmin(np.abs(candidates[best] - default))]]
    return chosen


def single_label_metrics(truth: Sequence[int], predicted: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    indices = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=indices, zero_division=0)
    return {
        "examples": len(truth),
        "accuracy": float(accuracy_score(truth, predicted)),
        "f1_macro": float(f1_score(truth, predicted, labels=indices, average="macro", zero_division=0)),
        "f1_weighted": float(f1_score(truth, predicted, labels=indices, average="weighted", zero_division=0)),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
    }


def multi_label_metrics(truth: np.ndarray, predicted: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    from sklearn.metrics import f1_score, hamming_loss, precision_recall_fscore_support

    truth, predicted = np.asarray(truth, dtype=int), np.asarray(predicted, dtype=int)
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, zero_division=0)
    return {
        "examples": int(truth.shape[0]),
        "f1_micro": float(f1_score(truth, predicted, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "f1_samples": float(f1_score(truth, predicted, average="samples", zero_division=0)),
        "hamming_loss": float(hamming_loss(truth, predicted)),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
    }


def entity_metrics(truth: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Entity-level scores (a predicted entity counts only if its type and span are exact)."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    report = classification_report(
        list(map(list, truth)), list(map(list, predicted)), output_dict=True, zero_division=0
    )
    return {
        "sentences": len(truth),
        "entity_f1": float(f1_score(truth, predicted, zero_division=0)),
        "entity_precision": float(precision_score(truth, predicted, zero_division=0)),
        "entity_recall": float(recall_score(truth, predicted, zero_division=0)),
        "per_type": {
            name: {
                "precision": float(row["precision"]),
                "recall": float(row["recall"]),
                "f1": float(row["f1-score"]),
                "support": int(row["support"]),
            }
            for name, row in report.items()
            if name not in ("micro avg", "macro avg", "weighted avg")
        },
    }


def regression_metrics(truth: Sequence[float], predicted: Sequence[float]) -> dict[str, Any]:
    """Pearson and Spearman correlation (scipy's) and the mean squared error."""
    from scipy.stats import pearsonr, spearmanr

    truth_array, predicted_array = np.asarray(truth, dtype=np.float64), np.asarray(predicted, dtype=np.float64)
    constant = np.ptp(predicted_array) == 0 or np.ptp(truth_array) == 0
    return {
        "examples": len(truth_array),
        "pearson": 0.0 if constant else float(pearsonr(truth_array, predicted_array).statistic),
        "spearman": 0.0 if constant else float(spearmanr(truth_array, predicted_array).statistic),
        "mse": float(np.mean((truth_array - predicted_array) ** 2)),
    }


# The metrics each task reports every epoch; the first is what picks the best epoch by default.
EPOCH_METRICS: dict[str, tuple[str, ...]] = {
    "single_label": ("f1_macro", "accuracy", "f1_weighted"),
    "sentence_pair": ("f1_macro", "accuracy", "f1_weighted"),
    "multi_label": ("f1_micro", "f1_macro"),
    "token_classification": ("entity_f1", "entity_precision", "entity_recall"),
    "regression": ("spearman", "pearson", "mse"),
}
# Metrics where lower is better.
LOWER_IS_BETTER = frozenset({"mse", "hamming_loss"})


def format_table(metrics: dict[str, Any]) -> str:
    """A readable table of a metrics dict: the headline figures, then one row per class."""
    rows = metrics.get("per_class") or metrics.get("per_type") or {}
    headline = "  ".join(f"{key} {value:.3f}" for key, value in metrics.items() if isinstance(value, float))
    if not rows:
        return headline
    width = max([len("label")] + [len(name) for name in rows])
    lines = [headline, f"{'label':<{width}}  precision  recall     f1  support"]
    for name, row in rows.items():
        lines.append(
            f"{name:<{width}}  {row['precision']:9.3f}  {row['recall']:6.3f}  {row['f1']:5.3f}  {row['support']:7d}"
        )
    return "\n".join(lines)
