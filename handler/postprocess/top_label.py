"""Top-label recalibration: the served top score mapped through a fitted, non-decreasing curve of
held-out accuracy against confidence, the other labels' scores rescaled to share the rest. Pure numpy.

Why: a temperature is one number, and the miscalibration left after it has a shape: on VADER's
movie sentences a MiniLM fine-tuned on 3,000 of them never scores above 0.93 (the 2% neutral class
always keeps some mass), answers at 0.84 are right 75% of the time and answers at 0.89 93%; the
NLL-optimal temperature leaves a held-out ECE of 0.053-0.058, and vector or matrix scaling
0.050-0.057. The accuracy-against-confidence curve fitted by isotonic regression on the same
validation half (Zadrozny & Elkan 2002; applied to the top label as in Gupta & Ramdas 2022, "Top-label
calibration") brought it to 0.031 on average over 20 random halves (``python -m lab calibration``).
``hflabels train`` fits it centred (hflabels/training/calibration.py): the plain fit's steep
steps turned bf16's small changes into served changes of up to 0.16.

The map never changes the answer: the top label stays on top (its score is kept at least the
rescaled runner-up's), so accuracy, argmax parity and the decided label are those of the logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TIE_MARGIN = 1e-6


@dataclass(frozen=True)
class TopLabelMap:
    """Knots of a piecewise-linear, non-decreasing map of top-label confidence to the accuracy
    held-out answers had at it; outside the knots it is flat (the end values)."""

    confidence: np.ndarray
    accuracy: np.ndarray

    def __post_init__(self) -> None:
        confidence, accuracy = np.asarray(self.confidence, np.float64), np.asarray(self.accuracy, np.float64)
        if confidence.ndim != 1 or confidence.shape != accuracy.shape or len(confidence) < 2:
            raise ValueError("a top-label map needs two or more (confidence, accuracy) knots of equal count")
        if np.any(np.diff(confidence) <= 0) or np.any(np.diff(accuracy) < 0):
            raise ValueError("a top-label map's confidence knots must increase and its accuracy knots never decrease")
        if confidence.min() < 0 or confidence.max() > 1 or accuracy.min() < 0 or accuracy.max() > 1:
            raise ValueError("a top-label map's knots must lie within 0 and 1")
        object.__setattr__(self, "confidence", confidence)
        object.__setattr__(self, "accuracy", accuracy)

    def apply(self, scores: np.ndarray) -> np.ndarray:
        """``scores`` (softmax rows, last axis the labels) with each row's top score replaced by the
        map's value and the other scores scaled to sum to the rest; same shape and dtype."""
        scores = np.asarray(scores)
        flat = scores.reshape(-1, scores.shape[-1]).astype(np.float64)
        rows = np.arange(len(flat))
        top = flat.argmax(axis=-1)
        confidence = flat[rows, top]
        rest = 1.0 - confidence
        others = flat.copy()
        others[rows, top] = -np.inf
        runner_up = others.max(axis=-1) if flat.shape[-1] > 1 else np.zeros(len(flat))
        mapped = np.interp(confidence, self.confidence, self.accuracy)
        # The top label stays on top: after rescaling by (1 - mapped) / rest the runner-up is
        # runner_up * (1 - mapped) / rest, which mapped must pass (by a relative margin that
        # survives float32, so a tie cannot hand the answer to a lower label index).
        with np.errstate(divide="ignore", invalid="ignore"):
            floor = np.where(rest + runner_up > 0, runner_up / (rest + runner_up), 0.0) * (1.0 + TIE_MARGIN)
            mapped = np.maximum(mapped, floor)
            scale = np.where(rest > 0, (1.0 - mapped) / rest, 0.0)
        out = flat * scale[:, None]
        # A row with nothing left over (confidence 1) keeps its scores: there is no mass to move.
        out[rows, top] = np.where(rest > 0, mapped, confidence)
        unchanged = rest <= 0
        out[unchanged] = flat[unchanged]
        dtype = scores.dtype if np.issubdtype(scores.dtype, np.floating) else np.float64
        return out.reshape(scores.shape).astype(dtype)
