"""Encoding examples for training, and scoring a split as the model will be served.

Served scores come from ``handler.postprocess.scoring`` (the activation of the calibrated logits),
so a split's reported metrics are those of the answers the handler gives (a test checks that).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from handler.api.tasks import Objective
from handler.postprocess.scoring import Activation, LogitCalibration, served_scores, softmax
from hflabels.training.calibration import (
    MIN_CALIBRATION_EXAMPLES,
    SMALL_SAMPLE_BOUNDS,
    calibration_metrics,
    fit_label_temperatures,
    fit_temperature,
    fit_top_label_map,
    prior_correction,
    temperature_interval,
)
from hflabels.training.data import Example
from hflabels.training.metrics import (
    EPOCH_METRICS,
    entity_metrics,
    multi_label_metrics,
    regression_metrics,
    single_label_metrics,
)

IGNORED = -100

# ---- encoding ----------------------------------------------------------------------------------


def continuation_tag(tag: str) -> str:
    return "I-" + tag[2:] if tag.startswith("B-") else tag


def encode(
    examples: Sequence[Example],
    tokenizer: Any,
    task: str,
    label_ids: dict[str, int],
    max_length: int,
    all_subwords: bool,
) -> list[dict[str, Any]]:
    """Tokenized features with their training targets."""
    if task == Objective.TOKEN_CLASSIFICATION:
        features = []
        for example in examples:
            encoding = tokenizer(list(example.tokens), is_split_into_words=True, truncation=True, max_length=max_length)
            targets, previous = [], None
            for word in encoding.word_ids():
                if word is None:
                    targets.append(IGNORED)
                elif word != previous:
                    targets.append(label_ids[example.tags[word]])
                else:
                    targets.append(label_ids[continuation_tag(example.tags[word])] if all_subwords else IGNORED)
                previous = word
            features.append({**encoding, "labels": targets})
        return features
    texts = [example.text for example in examples]
    has_pairs = task == Objective.SENTENCE_PAIR or (
        task == Objective.REGRESSION and any(example.text_pair is not None for example in examples)
    )
    pairs = [example.text_pair or "" for example in examples] if has_pairs else None
    encoding = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    features = []
    for row, example in enumerate(examples):
        feature = {key: values[row] for key, values in encoding.items()}
        if task == Objective.MULTI_LABEL:
            target = np.zeros(len(label_ids), dtype=np.float32)
            target[[label_ids[name] for name in example.labels]] = 1.0
            feature["labels"] = target.tolist()
        elif task == Objective.REGRESSION:
            feature["labels"] = float(example.score)  # type: ignore[arg-type]
        else:
            feature["labels"] = label_ids[example.label]
        features.append(feature)
    return features


def label_counts(examples: Sequence[Example], task: str, labels: Sequence[str]) -> list[int]:
    if task == Objective.REGRESSION:
        return [len(examples)]
    counter: Counter[str] = Counter()
    for example in examples:
        counter.update(
            example.tags
            if task == Objective.TOKEN_CLASSIFICATION
            else example.labels
            if task == Objective.MULTI_LABEL
            else [example.label]
        )
    return [counter[name] for name in labels]


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, features: list[dict[str, Any]]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.features[index]


# ---- per-epoch metrics (the Trainer's compute_metrics) ---------------------------------------------


def epoch_metrics(task: str, labels: Sequence[str], logits: Any, targets: Any) -> dict[str, float]:
    """The task's metrics of the model's own (uncalibrated) outputs on the validation split."""
    logits = logits[0] if isinstance(logits, tuple) else logits
    logits = np.asarray(logits, dtype=np.float64)
    if task == Objective.REGRESSION:
        found = regression_metrics(np.asarray(targets).reshape(-1), logits.reshape(-1))
    elif task == Objective.MULTI_LABEL:
        found = multi_label_metrics(np.asarray(targets) > 0.5, logits >= 0.0, labels)
    elif task == Objective.TOKEN_CLASSIFICATION:
        truth, predicted = [], []
        for row_logits, row_targets in zip(logits, np.asarray(targets)):
            positions = [i for i, target in enumerate(row_targets) if target != IGNORED]
            truth.append([labels[int(row_targets[i])] for i in positions])
            predicted.append([labels[int(np.argmax(row_logits[i]))] for i in positions])
        found = entity_metrics(truth, predicted)
    else:
        found = single_label_metrics(np.asarray(targets).tolist(), logits.argmax(axis=-1).tolist(), labels)
    return {name: float(found[name]) for name in EPOCH_METRICS[Objective(task).value]}


# ---- calibration -------------------------------------------------------------------------------


def fit_calibration(
    task: str, logits: np.ndarray, truth: np.ndarray, ratios: np.ndarray, report: dict[str, Any] | None = None
) -> LogitCalibration:
    """Prior correction for the training's class ratios, then the temperature(s) minimising the
    validation NLL of the corrected logits (hflabels.training.calibration documents the solver),
    then (single-label) the top-label curve of the same examples (handler.postprocess.top_label).
    ``report`` receives how reliable the fit is: the examples, a bootstrap interval of T
    (single-label), and a warning and bounds below MIN_CALIBRATION_EXAMPLES."""
    multi_label = task == Objective.MULTI_LABEL
    adjustment = prior_correction(ratios, centred=not multi_label)
    corrected = logits - adjustment
    if multi_label:
        temperature = fit_label_temperatures(corrected, truth)
    else:
        temperature = np.full(logits.shape[1], fit_temperature(corrected, truth))
    fit: dict[str, Any] = {"examples": len(truth)}
    if not multi_label:
        fit["temperature_interval_90"] = [round(t, 4) for t in temperature_interval(corrected, truth)]
    if len(truth) < MIN_CALIBRATION_EXAMPLES:
        low, high = SMALL_SAMPLE_BOUNDS
        bounded = np.clip(temperature, low, high)
        fit["bounded_to"] = [low, high]
        fit["fitted_temperature"] = [round(float(t), 6) for t in temperature]
        fit["warning"] = (
            f"calibration fitted on {len(truth)} validation examples (fewer than {MIN_CALIBRATION_EXAMPLES}): "
            f"the temperature is kept within {low}-{high}; pass a larger --validation file for a reliable fit"
        )
        temperature = bounded
    top_label = None if multi_label else fit_top_label_map(softmax(corrected / temperature), truth)
    fit["top_label_knots"] = 0 if top_label is None else len(top_label.confidence)
    if report is not None:
        report.update(fit)
    return LogitCalibration(adjustment, temperature, top_label)


def calibration_config(calibration: LogitCalibration, labels: Sequence[str], task: str) -> dict[str, Any]:
    """``handler.classification.calibration`` for model-config.yaml, by label name."""
    temperature: Any = round(float(calibration.temperature[0]), 6)
    if task == Objective.MULTI_LABEL:
        temperature = {label: round(float(t), 6) for label, t in zip(labels, calibration.temperature)}
    written: dict[str, Any] = {
        "temperature": temperature,
        "logit_adjustment": {label: round(float(a), 6) for label, a in zip(labels, calibration.adjustment)},
    }
    if calibration.top_label is not None:
        # Knots at full precision: rounding could make two confidence knots equal.
        written["top_label"] = {"confidence": [float(x) for x in calibration.top_label.confidence],
                                "accuracy": [float(y) for y in calibration.top_label.accuracy]}  # fmt: skip
    return written


def describe_calibration(written: dict[str, Any]) -> str:
    """One line for ``calibration_config``'s output: the curve as its span, not its knots."""
    shown = {key: value for key, value in written.items() if key != "top_label"}
    curve = written.get("top_label")
    if curve is None:
        return str(shown)
    confidence, accuracy = curve["confidence"], curve["accuracy"]
    return (f"{shown}; top-label curve of {len(confidence)} knots, confidence {confidence[0]:.3f}-{confidence[-1]:.3f} "
            f"served as {accuracy[0]:.3f}-{accuracy[-1]:.3f}")  # fmt: skip


def binary_calibration_metrics(scores: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Multi-label: ECE, NLL and Brier over every (example, label) as a yes/no prediction."""
    flat = scores.reshape(-1)
    return calibration_metrics(np.stack([1.0 - flat, flat], axis=1), truth.reshape(-1).astype(int))


def multi_hot(examples: Sequence[Example], label_ids: dict[str, int]) -> np.ndarray:
    truth = np.zeros((len(examples), len(label_ids)), dtype=bool)
    for row, example in enumerate(examples):
        truth[row, [label_ids[name] for name in example.labels]] = True
    return truth


def truth_of(examples: Sequence[Example], task: str, label_ids: dict[str, int]) -> np.ndarray:
    if task == Objective.MULTI_LABEL:
        return multi_hot(examples, label_ids)
    return np.array([label_ids[example.label] for example in examples])


# ---- a split as served -----------------------------------------------------------------------------


class SplitScorer:
    """Predicts splits with a trained Trainer and reports them as the handler will serve them."""

    def __init__(
        self, trainer: Any, tokenizer: Any, task: str, labels: Sequence[str], max_length: int
    ) -> None:  # fmt: skip
        self.trainer = trainer
        self.tokenizer = tokenizer
        self.task = Objective(task)
        self.labels = list(labels)
        self.label_ids = {name: i for i, name in enumerate(labels)}
        self.max_length = max_length

    def features(self, examples: Sequence[Example]) -> list[dict[str, Any]]:
        return encode(examples, self.tokenizer, self.task, self.label_ids, self.max_length, False)

    def logits(self, examples: Sequence[Example]) -> np.ndarray:
        predictions = self.trainer.predict(ListDataset(self.features(examples))).predictions
        return np.asarray(predictions[0] if isinstance(predictions, tuple) else predictions, dtype=np.float64)

    def scores(self, examples: Sequence[Example], calibration: LogitCalibration | None = None) -> np.ndarray:
        """The served scores: sigmoid (multi-label) or softmax of the (calibrated) logits."""
        logits = self.logits(examples)
        activation = Activation.SIGMOID if self.task == Objective.MULTI_LABEL else Activation.SOFTMAX
        return served_scores(logits, activation, calibration or LogitCalibration.identity(logits.shape[1]))

    def evaluate(
        self,
        examples: Sequence[Example],
        thresholds: np.ndarray | None,
        calibration: LogitCalibration | None = None,
    ) -> dict[str, Any]:
        """The metrics of the answers as served (calibrated), and the calibration before and after."""
        task, labels, label_ids = self.task, self.labels, self.label_ids
        if task == Objective.REGRESSION:
            predicted = self.logits(examples).reshape(-1)
            return regression_metrics([example.score for example in examples], predicted.tolist())
        if task == Objective.MULTI_LABEL:
            scores = self.scores(examples, calibration)
            truth = multi_hot(examples, label_ids)
            tuned = multi_label_metrics(truth, scores >= thresholds, labels)
            tuned["f1_micro_at_0.5"] = multi_label_metrics(truth, scores >= 0.5, labels)["f1_micro"]
            tuned["f1_macro_at_0.5"] = multi_label_metrics(truth, scores >= 0.5, labels)["f1_macro"]
            own = self.scores(examples)
            tuned["calibration"] = {"before": binary_calibration_metrics(own, truth)}
            if calibration is not None:
                tuned["calibration"]["after"] = binary_calibration_metrics(scores, truth)
            return tuned
        if task == Objective.TOKEN_CLASSIFICATION:
            features = self.features(examples)
            logits = self.trainer.predict(ListDataset(features)).predictions
            truth, predicted = [], []
            for feature, row in zip(features, logits):
                positions = [i for i, target in enumerate(feature["labels"]) if target != IGNORED]
                truth.append([labels[feature["labels"][i]] for i in positions])
                predicted.append([labels[int(np.argmax(row[i]))] for i in positions])
            return entity_metrics(truth, predicted)
        logits = self.logits(examples)
        truth = np.array([label_ids[e.label] for e in examples])
        served = served_scores(logits, Activation.SOFTMAX, calibration or LogitCalibration.identity(len(labels)))
        metrics = single_label_metrics(truth.tolist(), served.argmax(axis=-1).tolist(), labels)
        metrics["calibration"] = {"before": calibration_metrics(softmax(logits), truth)}
        if calibration is not None:
            metrics["calibration"]["after"] = calibration_metrics(served, truth)
            metrics["calibration"]["decisions_changed"] = int((served.argmax(-1) != logits.argmax(-1)).sum())
            # The model's own decisions, before the prior correction moved any.
            own = single_label_metrics(truth.tolist(), logits.argmax(axis=-1).tolist(), labels)
            metrics["calibration"]["uncalibrated"] = {
                "accuracy": own["accuracy"],
                "f1_macro": own["f1_macro"],
                "recall": {label: row["recall"] for label, row in own["per_class"].items()},
            }
        return metrics
