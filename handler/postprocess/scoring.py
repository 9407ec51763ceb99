"""Scores from classification logits, and the labels they select: pure functions of arrays.

The rules follow transformers' ``TextClassificationPipeline`` so served answers equal the pipeline's:
softmax for single-label models, sigmoid for multi-label and one-label models, ties broken by the
lower label index.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from handler.api.errors import ConfigurationError
from handler.api.settings import Calibration

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
    chosen = np.flatnonzero(scores >= thresholds)
    chosen = chosen[np.argsort(-scores[chosen], kind="stable")]
    return [{"label": labels[i], "score": float(scores[i])} for i in chosen]


def threshold_vector(labels: Sequence[str], default: float, per_label: dict[str, float]) -> np.ndarray:
    return np.array([per_label.get(label, default) for label in labels], dtype=np.float64)


def calibration_vectors(calibration: Calibration | None, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(logit adjustment, temperature) per label index; raises ConfigurationError naming unknown labels."""
    adjustment = np.zeros(len(labels))
    temperature = np.ones(len(labels))
    if calibration is None:
        return adjustment, temperature
    named = dict(calibration.logit_adjustment)
    per_label = calibration.temperature if isinstance(calibration.temperature, Mapping) else {}
    unknown = sorted((set(named) | set(per_label)) - set(labels))
    if unknown:
        raise ConfigurationError(f"handler.calibration names unknown label(s) {unknown}; labels are {list(labels)}")
    for index, label in enumerate(labels):
        adjustment[index] = named.get(label, 0.0)
        temperature[index] = per_label.get(label, 1.0) if per_label else float(calibration.temperature)  # type: ignore[arg-type]
    return adjustment, temperature


def calibrate(logits: np.ndarray, adjustment: np.ndarray, temperature: np.ndarray) -> np.ndarray:
    """``(logits - adjustment) / temperature``, label by label, in the logits' precision."""
    return ((logits - adjustment) / temperature).astype(logits.dtype, copy=False)
