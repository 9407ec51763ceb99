"""Scores from classification logits, and the labels they select: pure functions of arrays.

The rules follow transformers' ``TextClassificationPipeline`` so served answers equal the pipeline's:
softmax for single-label models, sigmoid for multi-label and one-label models, ties broken by the
lower label index.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from handler.api.errors import ConfigurationError
from handler.api.settings import Calibration
from handler.postprocess.top_label import TopLabelMap

LabelScore = dict[str, Any]  # {"label": str, "score": float}


class Activation(str, enum.Enum):
    SOFTMAX = "softmax"
    SIGMOID = "sigmoid"
    NONE = "none"


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    # Two branches so neither exp() can overflow; equal to 1 / (1 + exp(-x)) where that is finite.
    logits = np.asarray(logits)
    positive = logits >= 0
    exp_neg_abs = np.exp(-np.abs(logits))
    return np.where(positive, 1.0 / (1.0 + exp_neg_abs), exp_neg_abs / (1.0 + exp_neg_abs)).astype(
        logits.dtype if np.issubdtype(logits.dtype, np.floating) else np.float64
    )


def activate(logits: np.ndarray, activation: Activation) -> np.ndarray:
    if activation is Activation.SOFTMAX:
        return softmax(logits)
    if activation is Activation.SIGMOID:
        return sigmoid(logits)
    return logits


def default_activation(problem_type: str | None, num_labels: int) -> Activation:
    if problem_type == "regression":
        return Activation.NONE
    if problem_type == "multi_label_classification" or num_labels == 1:
        return Activation.SIGMOID
    return Activation.SOFTMAX


def best_label(scores: np.ndarray, labels: Sequence[str]) -> LabelScore:
    index = int(np.argmax(scores))
    return {"label": labels[index], "score": float(scores[index])}


def ranked_labels(scores: np.ndarray, labels: Sequence[str], top_k: int | None) -> list[LabelScore]:
    """The ``top_k`` best labels, score descending (``None``: all of them)."""
    order = np.argsort(-scores, kind="stable")
    if top_k is not None:
        order = order[:top_k]
    return [{"label": labels[i], "score": float(scores[i])} for i in order]


def labels_reaching(scores: np.ndarray, labels: Sequence[str], thresholds: np.ndarray) -> list[LabelScore]:
    """Every label whose score reaches its threshold, score descending; empty if none does."""
    return [{"label": labels[i], "score": float(scores[i])} for i in decided_labels(scores, True, thresholds)]


def threshold_vector(labels: Sequence[str], default: float, per_label: dict[str, float]) -> np.ndarray:
    return np.array([per_label.get(label, default) for label in labels], dtype=np.float64)


@dataclass(frozen=True)
class LogitCalibration:
    """Served scores are ``activation((logits - adjustment) / temperature)``, label by label, then
    (softmax only) the top score through ``top_label``: the one definition serving, training and
    evaluation share (``handler.calibration``)."""

    # Subtracted from each label's logit (a prior correction).
    adjustment: np.ndarray
    # Per label (single-label: one value repeated).
    temperature: np.ndarray
    # Single-label: the held-out accuracy curve the top score is mapped through (None: no map).
    top_label: TopLabelMap | None = None

    @classmethod
    def identity(cls, labels: int) -> LogitCalibration:
        return cls(np.zeros(labels), np.ones(labels))

    @classmethod
    def from_settings(cls, calibration: Calibration | None, labels: Sequence[str]) -> LogitCalibration:
        """Per label index from ``handler.calibration``; raises ConfigurationError naming unknown labels."""
        if calibration is None:
            return cls.identity(len(labels))
        named = dict(calibration.logit_adjustment)
        per_label = calibration.temperature if isinstance(calibration.temperature, Mapping) else {}
        unknown = sorted((set(named) | set(per_label)) - set(labels))
        if unknown:
            raise ConfigurationError(f"handler.calibration names unknown label(s) {unknown}; labels are {list(labels)}")
        adjustment = np.array([named.get(label, 0.0) for label in labels], dtype=np.float64)
        if per_label:
            temperature = np.array([per_label.get(label, 1.0) for label in labels], dtype=np.float64)
        else:
            temperature = np.full(len(labels), float(calibration.temperature))  # type: ignore[arg-type]
        curve, top_label = calibration.top_label, None
        if curve is not None:
            top_label = TopLabelMap(np.array(curve.confidence), np.array(curve.accuracy))
        return cls(adjustment, temperature, top_label)

    def apply(self, logits: np.ndarray) -> np.ndarray:
        """``(logits - adjustment) / temperature``, label by label, in the logits' precision."""
        logits = np.asarray(logits)
        return ((logits - self.adjustment) / self.temperature).astype(logits.dtype, copy=False)


def served_scores(logits: np.ndarray, activation: Activation, calibration: LogitCalibration) -> np.ndarray:
    """What a classification head's logits are served as: raw for ``none``, else the activation
    of the calibrated logits."""
    if activation is Activation.NONE:
        return logits
    scores = activate(calibration.apply(logits), activation)
    if calibration.top_label is not None and activation is Activation.SOFTMAX:
        return calibration.top_label.apply(scores)
    return scores


def compare_served_scores(
    reference: Sequence[np.ndarray],
    candidate: Sequence[np.ndarray],
    activation: Activation,
    calibration: LogitCalibration,
    multi_label: bool,
    thresholds: np.ndarray,
) -> tuple[bool, float]:
    """dtype auto's check of a classification head as clients read it: (every row decides the same
    labels, the largest change of a served score) between two runs' logits. Compared after the
    calibration because its top-label curve can be steep where two held-out confidences lie close:
    on the real-data movie model bf16 moved raw probabilities by at most 0.018 and served scores by
    up to 0.15. A raw output (regression) changes relative to its size, at least 1."""
    agree, change = True, 0.0
    for ours, theirs in zip(reference, candidate):
        a = served_scores(np.atleast_2d(np.asarray(ours, dtype=np.float64)), activation, calibration)
        b = served_scores(np.atleast_2d(np.asarray(theirs, dtype=np.float64)), activation, calibration)
        if activation is Activation.NONE:
            change = max(change, float(np.abs(a - b).max() / max(1.0, float(np.abs(a).max()))))
            continue
        agree = agree and all(
            decided_labels(x, multi_label, thresholds) == decided_labels(y, multi_label, thresholds)
            for x, y in zip(a, b)
        )
        change = max(change, float(np.abs(a - b).max()))
    return agree, change


def zero_shot_scores(logits: np.ndarray, entailment_id: int, multi_label: bool) -> np.ndarray:
    """Per candidate, from its pair's NLI logits (candidates x NLI labels), as transformers'
    zero-shot pipeline computes them: a softmax of the entailment logits over the candidates, or,
    with ``multi_label`` (or one candidate), per candidate a softmax over its contradiction and
    entailment logits. Stable for any finite logits."""
    if multi_label or logits.shape[0] == 1:
        contradiction_id = -1 if entailment_id == 0 else 0
        return softmax(logits[..., [contradiction_id, entailment_id]])[..., 1]
    return softmax(logits[..., entailment_id])


def decided_labels(scores: np.ndarray, multi_label: bool, thresholds: np.ndarray) -> tuple[int, ...]:
    """The label indices a classification decides on, best first: every label reaching its
    threshold (multi-label; possibly none), else the best label (the lower index on a tie)."""
    if multi_label:
        chosen = np.flatnonzero(scores >= thresholds)
        return tuple(int(i) for i in chosen[np.argsort(-scores[chosen], kind="stable")])
    return (int(np.argmax(scores)),)
