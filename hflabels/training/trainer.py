"""Fine-tune a model from labelled data into a folder that ``hflabels archive`` takes as is.

Tasks: single_label (text,label), sentence_pair (text,text_pair,label), multi_label (text,labels),
token_classification (tokens,tags in BIO), regression (text[,text_pair],score). Without a
validation file, a seeded, stratified fifth of the training data is held out.

The recipe is transformers' Trainer as its users run it at scale (hf_trainer.py): the validation
split is evaluated every epoch with the task's metric (``--metric``), every epoch is checkpointed,
the best epoch is the one kept, ``--early-stopping-patience`` stops a run that stopped improving,
``--resume`` continues a run that was killed, batches are grouped by length with dynamic padding,
and ``--bf16`` trains in bf16 autocast where the device has bf16 units. :func:`train` runs it in
named steps: load the splits, load the base model, fine-tune, fit what serving needs (calibration,
guarantees, multi-label thresholds) on the validation split, evaluate, write the folder
(model_folder.py).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from handler.api.tasks import Objective
from handler.postprocess.scoring import Activation, served_scores
from hflabels.training.choices import MIN_HELD_OUT
from hflabels.training.data import (
    DataError,
    Example,
    check_known_labels,
    label_names,
    load_examples,
    resample,
    split_held_out,
    subsample,
)
from hflabels.training.evaluation import (
    SplitScorer,
    calibration_config,
    encode,
    fit_calibration,
    label_counts,
    multi_hot,
    truth_of,
)
from hflabels.training.guarantees import GuaranteeError, fit_guarantees, split_for_guarantees
from hflabels.training.hf_trainer import EpochClock, best_epoch_of, build_trainer, epoch_history, last_checkpoint
from hflabels.training.imbalance import ImbalancePlan, decision_ratios, plan_imbalance
from hflabels.training.metrics import EPOCH_METRICS, class_weights, tune_thresholds
from hflabels.training.model_folder import save_outputs
from hflabels.training.options import (
    CHECKPOINTS,
    TrainOptions,
    balance_options_given,
    check_options,
    chosen_metric,
    default_base_model,
    pair_stage_for,
    schedule_for,
)

__all__ = ["TrainOptions", "build_trainer", "subsample", "train"]


@dataclass
class Splits:
    """The labelled examples of a run, checked against one label list."""

    train: list[Example]
    validation: list[Example]
    test: list[Example]
    labels: list[str]
    # Training examples before --max-train-examples.
    available: int
    synthetic_counts: dict[str, Any] | None = None


@dataclass
class Balance:
    """How the training split was rebalanced: counts before and after sampling, the loss weights."""

    counts_before: list[int]
    counts: list[int]
    weights: np.ndarray
    loss_weights: torch.Tensor | None
    imbalance: ImbalancePlan
    # What the training split was resampled with: --sampling, or the imbalance plan's own.
    sampling: str
    # The training split's log class shares, added to the logits by --loss logit_adjusted.
    log_prior: torch.Tensor | None = None

    def ratios(self, options: TrainOptions) -> np.ndarray:
        """What calibration's prior correction divides out: how much more likely training made
        each class on purpose, and with logit adjustment the training prior as well."""
        ratios = np.ones(len(self.counts))
        if options.class_weights != "none":
            ratios *= self.weights
        if self.sampling != "none":
            before = np.maximum(np.asarray(self.counts_before, dtype=float), 1.0)
            ratios *= np.asarray(self.counts, dtype=float) / before
        if self.log_prior is not None:
            # The loss took the training prior out of the model's logits: it made each class 1/share
            # more likely than the data did (as inverse weights would).
            ratios /= np.exp(self.log_prior.double().numpy())
        return decision_ratios(ratios, self.counts_before, self.imbalance)


def load_splits(options: TrainOptions, task: Objective) -> Splits:
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
    return Splits(train_examples, validation_examples, test_examples, labels, available, synthetic_counts)


def load_base_model(options: TrainOptions, task: Objective, labels: Sequence[str]) -> tuple[Path, Any, Any]:
    """The base folder, its tokenizer, and the model with a fresh head for ``labels``."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    base = options.base_model or default_base_model()
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    token_task = task == Objective.TOKEN_CLASSIFICATION
    model_class = AutoModelForTokenClassification if token_task else AutoModelForSequenceClassification
    model = model_class.from_pretrained(
        base,
        local_files_only=True,
        # A base that is itself a classifier with other labels gets a fresh head of the right size.
        ignore_mismatched_sizes=True,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)},
        problem_type=task.problem_type,
    )
    return base, tokenizer, model


def rebalance(options: TrainOptions, task: Objective, splits: Splits) -> Balance:
    """Resample the training split as asked or as the imbalance plan says (in place) and weigh the
    loss per class."""
    counts_before = label_counts(splits.train, task, splits.labels)
    # The balance is served through the calibration; --no-calibration serves the model's own scores.
    single_label = task in (Objective.SINGLE_LABEL, Objective.SENTENCE_PAIR) and options.calibrate
    try:
        plan = plan_imbalance(options.imbalance, counts_before, single_label, balance_options_given(options))
    except ValueError as error:
        raise DataError(str(error)) from None
    sampling = plan.sampling if options.sampling == "none" else options.sampling
    splits.train = resample(splits.train, task, sampling, options.seed)
    counts = label_counts(splits.train, task, splits.labels)
    weights = class_weights(counts, options.class_weights)
    loss_weights = None if options.class_weights == "none" else torch.tensor(weights, dtype=torch.float32)
    log_prior = None
    if options.loss == "logit_adjusted":
        shares = np.maximum(np.asarray(counts, dtype=np.float64), 1.0)
        log_prior = torch.tensor(np.log(shares / shares.sum()), dtype=torch.float32)
    return Balance(counts_before, counts, weights, loss_weights, plan, sampling, log_prior)


def run_pair_stage(
    options: TrainOptions, task: Objective, splits: Splits, tokenizer: Any, model: Any, label_ids: dict[str, int]
) -> dict[str, Any]:
    """The contrastive first stage where it is due (contrastive.py), on the training split only."""
    due, why = pair_stage_for(options, task, len(splits.train))
    if not due:
        return {"run": False, "why": why}
    from hflabels.training.contrastive import first_stage

    texts = [example.text or "" for example in splits.train]
    labels = [label_ids[str(example.label)] for example in splits.train]
    report = first_stage(model, tokenizer, texts, labels, len(label_ids), options.seed, options.max_length)
    return {"run": True, "why": why, **report}


def fine_tune(options: TrainOptions, trainer: Any) -> tuple[Path | None, float]:
    """Run the Trainer (from the last checkpoint with --resume); returns where it resumed and the seconds."""
    checkpoints = options.output / CHECKPOINTS
    resume_from = last_checkpoint(checkpoints) if options.resume else None
    if options.resume and resume_from is None:
        raise DataError(f"--resume: no checkpoint in {checkpoints} to continue from")
    if not options.resume and checkpoints.exists():
        shutil.rmtree(checkpoints)
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None else None)
    return resume_from, time.perf_counter() - started


def run_summary(
    options: TrainOptions, task: Objective, splits: Splits, base: Path, balance: Balance, trainer: Any,
    clock: EpochClock, resumed_from: Path | None, seconds: float,
) -> dict[str, Any]:  # fmt: skip
    """What ran: data sizes, rebalancing, the recipe and its per-epoch history (metrics.json)."""
    labels = splits.labels
    history = epoch_history(trainer.state.log_history, clock, EPOCH_METRICS[task.value])
    best = trainer.state.best_metric
    results: dict[str, Any] = {
        "task": task.value,
        "labels": labels,
        "base_model": str(base),
        "train_examples": len(splits.train),
        "train_examples_available": splits.available,
        "class_weights": {"scheme": options.class_weights, **dict(zip(labels, balance.weights.tolist()))},
        "imbalance": {
            "mode": balance.imbalance.mode,
            "ratio": round(balance.imbalance.ratio, 3),
            "why": balance.imbalance.why,
        },
        "loss": {"name": options.loss, **({"gamma": options.focal_gamma} if options.loss == "focal" else {})},
        "sampling": {
            "mode": balance.sampling,
            "counts_before": dict(zip(labels, balance.counts_before)),
            "counts_after": dict(zip(labels, balance.counts)),
        },
        "recipe": {
            "metric": chosen_metric(task, options.metric),
            "best_epoch": best_epoch_of(trainer.state.best_model_checkpoint, trainer.state.log_history),
            "best_metric": None if best is None else round(float(best), 6),
            "epochs_run": len(history),
            "early_stopping_patience": options.early_stopping_patience,
            "resumed_from": resumed_from.name if resumed_from is not None else None,
            "group_by_length": options.group_by_length,
            "bf16": options.bf16,
            "seconds": round(seconds, 1),
        },
        "history": history,
    }
    if splits.synthetic_counts is not None:
        results["synthetic"] = splits.synthetic_counts
    return results


def fit_calibration_and_guarantees(
    options: TrainOptions, task: Objective, splits: Splits, balance: Balance, scorer: SplitScorer,
    results: dict[str, Any],
) -> tuple[Any, dict[str, Any] | None, list[Example]]:  # fmt: skip
    """Calibration (prior correction, then temperature) on the validation split, and, where each
    half has enough examples, the guarantees on the half the temperature was not fitted on (the
    examples of that half are returned for the input drift reference)."""
    label_ids = {name: i for i, name in enumerate(splits.labels)}
    validation = splits.validation
    logits, truth = scorer.logits(validation), truth_of(validation, task, label_ids)
    held_out = None
    share = options.guarantees.held_out_share
    if len(validation) * min(share, 1 - share) >= MIN_HELD_OUT:
        scaling, held_out = split_for_guarantees(truth, share, options.seed)
        logits, truth = logits[scaling], truth[scaling]
    else:
        results["guarantees_skipped"] = (
            f"{len(validation)} validation examples: fewer than the {MIN_HELD_OUT} per part that "
            "prediction sets, abstention and the drift reference need; fit them with hflabels calibrate"
        )
    fit_report: dict[str, Any] = {}
    calibration = fit_calibration(task, logits, truth, balance.ratios(options), fit_report)
    results["calibration_fit"] = fit_report
    if held_out is None:
        return calibration, None, []
    activation = Activation.SIGMOID if task == Objective.MULTI_LABEL else Activation.SOFTMAX
    held_scores = scorer.scores([validation[i] for i in held_out], calibration)
    held_truth = truth_of(validation, task, label_ids)[held_out]
    try:
        sections, results["guarantees"] = fit_guarantees(
            held_scores, held_truth, splits.labels, task == Objective.MULTI_LABEL, options.guarantees, strict=False,
            independent_top_scores=served_scores(logits, activation, calibration).max(axis=1),
        )  # fmt: skip
    except GuaranteeError as error:
        raise DataError(str(error)) from None
    return calibration, sections, [validation[i] for i in held_out]


def train(options: TrainOptions, report: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Fine-tune as ``options`` say; ``report`` receives each epoch's validation figures."""
    from transformers import set_seed

    task = Objective(options.task)
    check_options(options, task, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    chosen_metric(task, options.metric)  # an unknown --metric fails before any work
    splits = load_splits(options, task)
    set_seed(options.seed)
    base, tokenizer, model = load_base_model(options, task, splits.labels)
    balance = rebalance(options, task, splits)
    label_ids = {name: i for i, name in enumerate(splits.labels)}
    pair_stage = run_pair_stage(options, task, splits, tokenizer, model, label_ids)
    options, schedule = schedule_for(options, len(splits.train))
    if pair_stage["run"]:
        schedule = "no fine-tuning epochs: the pair stage made the model"
    encode_args = (tokenizer, task, label_ids, options.max_length, options.label_all_subwords)
    train_features, validation_features = encode(splits.train, *encode_args), encode(splits.validation, *encode_args)
    clock = EpochClock(len(train_features), report, EPOCH_METRICS[task.value])
    trainer = build_trainer(options, model, tokenizer, splits.labels, train_features, validation_features,
                            balance.loss_weights, [clock.callback], balance.log_prior)  # fmt: skip
    if pair_stage["run"]:
        resumed_from, seconds = None, pair_stage["seconds"]  # the pair stage made the model: no epochs
    else:
        resumed_from, seconds = fine_tune(options, trainer)
    results = run_summary(options, task, splits, base, balance, trainer, clock, resumed_from, seconds)
    results["recipe"].update(epochs=options.epochs, learning_rate=options.learning_rate, schedule=schedule,
                             pair_stage=pair_stage)  # fmt: skip

    scorer = SplitScorer(trainer, tokenizer, task, splits.labels, options.max_length)
    calibration, guarantee_sections, held_out_examples = None, None, []
    if task.classifies and task != Objective.TOKEN_CLASSIFICATION and options.calibrate:
        calibration, guarantee_sections, held_out_examples = fit_calibration_and_guarantees(
            options, task, splits, balance, scorer, results
        )
    thresholds = None
    if task == Objective.MULTI_LABEL:
        validation_scores = scorer.scores(splits.validation, calibration)
        thresholds = tune_thresholds(validation_scores, multi_hot(splits.validation, label_ids))
        results["thresholds"] = dict(zip(splits.labels, thresholds.tolist()))
    for split, examples in (("validation", splits.validation), ("test", splits.test)):
        if examples:
            results[split] = scorer.evaluate(examples, thresholds, calibration)
    if calibration is not None:
        results["calibration"] = calibration_config(calibration, splits.labels, task)
    probe = [" ".join(e.tokens) if e.tokens else (e.text or "") for e in splits.validation]
    save_outputs(options.output, trainer.model, tokenizer, task, splits.labels, results, thresholds, calibration,
                 guarantee_sections, probe)  # fmt: skip
    if guarantee_sections is not None:
        # The input drift reference, from the written folder's own serving pass.
        from hflabels.training.drift_reference import add_input_reference

        section = add_input_reference(options.output, held_out_examples, options.seed)
        results["guarantees"]["drift_input_reference"] = section
        (options.output / "metrics.json").write_text(json.dumps(results, indent=1) + "\n")
    if not options.keep_checkpoints:
        shutil.rmtree(options.output / CHECKPOINTS, ignore_errors=True)
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
