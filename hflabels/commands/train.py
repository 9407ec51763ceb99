"""Fine-tune a model from labelled data into a folder that `archive` takes as is.

    hflabels train --task single_label --train data/sentiment/train.csv --output build/my-model
        [--validation FILE] [--test FILE] [--base-model DIR] [--epochs N] [--metric NAME]
        [--early-stopping-patience N] [--resume] [--bf16] [--max-train-examples N]
        [--class-weights none|inverse|sqrt_inverse|effective] [--imbalance auto|none|oversample|logit_adjustment]
        [--pair-stage auto|on|off]
        [--label-all-subwords]

Every epoch is evaluated on the validation split and checkpointed; the best epoch is kept.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from handler.api.tasks import Objective
from hflabels.commands.calibrate import add_guarantee_arguments, guarantee_options, print_guarantees
from hflabels.training.choices import (
    AUTO_OVERSAMPLE_RATIO,
    IMBALANCE_MODES,
    LOSSES,
    MIN_HELD_OUT,
    PAIR_STAGE_MODES,
    WEIGHT_SCHEMES,
)
from hflabels.training.data import SAMPLING, DataError

if TYPE_CHECKING:
    from hflabels.training.trainer import TrainOptions


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", type=objective_value, required=True, metavar="TASK",
                        help=f"what to train: {', '.join(Objective.choices())}")  # fmt: skip
    parser.add_argument("--train", type=Path, required=True, help="training data (CSV with a header, or JSONL)")
    parser.add_argument("--validation", type=Path, help="held-out data (default: a fifth of --train)")
    parser.add_argument("--test", type=Path, help="test data, reported separately")
    parser.add_argument("--output", type=Path, required=True, help="folder to write the model into")
    parser.add_argument("--base-model", type=Path, help="a local save_pretrained folder (default: all-MiniLM-L6-v2)")
    parser.add_argument("--epochs", type=float, help="training epochs, at most (default: 8, or 20 where 8 would "
                        "give fewer than 300 optimisation steps: small data)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=16, help="examples per training step")
    parser.add_argument(
        "--learning-rate",
        type=float,
        help="AdamW's peak learning rate, linear warm-up over a tenth of the steps, then decay "
        "(default: 5e-5, or 1e-4 on small data, as for --epochs)",
    )
    parser.add_argument("--max-length", type=int, default=128, help="tokens per example, at most")
    parser.add_argument(
        "--class-weights", choices=WEIGHT_SCHEMES, default="none", help="weight the loss per class by its frequency"
    )
    parser.add_argument(
        "--imbalance", choices=IMBALANCE_MODES, default="auto",
        help="single-label classes: oversample trains on the rarer classes repeated up to the largest's count and "
        "answers with every class weighed alike; auto does so where the largest class is "
        f"{AUTO_OVERSAMPLE_RATIO:.0f} times the smallest or more and no --sampling, --class-weights or --loss "
        "focal is given; logit_adjustment weighs every class alike without resampling (it needs a rare class "
        "the model learned); none keeps the training's prior",
    )  # fmt: skip
    parser.add_argument(
        "--pair-stage", choices=PAIR_STAGE_MODES, default="auto",
        help="single-label texts: first train the encoder on pairs of sentences (same label or not) and start "
        "the head from a logistic regression, as SetFit does, instead of fine-tuning (auto: where 8 epochs "
        "would give fewer than 100 optimisation steps and no schedule is given)",
    )  # fmt: skip
    parser.add_argument("--label-all-subwords", action="store_true", help="give continuation subwords the I- tag")
    parser.add_argument(
        "--validation-fraction", type=float, default=0.2, help="share of --train held out when no --validation is given"
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the split, the order and the initialisation")
    parser.add_argument(
        "--loss", choices=LOSSES, default="cross_entropy",
        help="the training loss (logit_adjusted: Menon et al. 2021, single-label; decisions weigh every class alike)",
    )  # fmt: skip
    parser.add_argument("--focal-gamma", type=float, default=2.0, help="focal loss's focusing parameter")
    parser.add_argument("--sampling", choices=SAMPLING, default="none", help="balance single-label classes")
    parser.add_argument(
        "--no-calibration",
        dest="calibrate",
        action="store_false",
        help="serve the model's own scores (default: fit a prior correction and a temperature on validation)",
    )
    parser.add_argument(
        "--metric",
        help="validation metric that picks the best epoch (default: f1_macro; "
        "multi_label f1_micro, token_classification entity_f1, regression spearman)",
    )
    parser.add_argument(
        "--early-stopping-patience",
        type=int,
        metavar="N",
        help="stop after N epochs without a better validation metric (default: run every epoch)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue a killed run from its last checkpoint in OUTPUT/checkpoints"
    )
    parser.add_argument(
        "--keep-checkpoints",
        action="store_true",
        help="keep OUTPUT/checkpoints after the run (default: removed; they hold optimizer states)",
    )
    parser.add_argument(
        "--no-group-by-length",
        dest="group_by_length",
        action="store_false",
        help="random batches (default: batches of similar lengths, less padding)",
    )
    parser.add_argument(
        "--bf16", action="store_true", help="train in bf16 autocast; refused where the CPU/GPU has no bf16 units"
    )
    parser.add_argument(
        "--synthetic",
        type=Path,
        metavar="FILE",
        help="generated examples (same columns; e.g. from hflabels augment) added to the training "
        "split only, after deduplication and the label-consistency filter",
    )
    parser.add_argument(
        "--synthetic-min-score",
        type=float,
        default=0.9,
        help="the filter: a first model must give each synthetic example its label with at least "
        "this score (default: 0.9)",
    )
    parser.add_argument(
        "--synthetic-filter-model",
        type=Path,
        metavar="DIR",
        help="that first model (default: one trained on the real data with this recipe)",
    )
    parser.add_argument("--max-train-examples", type=int, metavar="N",
                        help="train on a seeded, stratified subsample of at most N examples")  # fmt: skip
    guarantees = parser.add_argument_group(
        "guarantees", f"fitted on half the validation split when each half has {MIN_HELD_OUT} examples or more"
    )
    add_guarantee_arguments(guarantees)  # type: ignore[arg-type]


def objective_value(text: str) -> str:
    try:
        return Objective.parse(text).value
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def options_of(args: argparse.Namespace) -> TrainOptions:
    from hflabels.training.trainer import TrainOptions

    # Options without a flag (quiet: the demo's) keep their defaults.
    known = {field.name: getattr(args, field.name) for field in fields(TrainOptions) if hasattr(args, field.name)}
    if hasattr(args, "method"):
        known["guarantees"] = guarantee_options(args)
    return TrainOptions(**known)


def run(args: argparse.Namespace) -> int:
    from hflabels.training.metrics import format_table
    from hflabels.training.trainer import train

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # The load report lists the new classifier head as "missing", which is the point of fine-tuning.
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()  # weight loading and saving; the Trainer's own bar stays
    report = None if sys.stderr.isatty() else print_epoch
    try:
        results = train(options_of(args), report)
    except DataError as error:
        print(f"{args.prog}: error: {error}", file=sys.stderr)
        return 2
    recipe = results["recipe"]
    pairs = recipe["pair_stage"]
    if pairs["run"]:
        print(f"\npair stage: {pairs['why']}")
        print(f"{pairs['pairs']} sentence pairs ({pairs['steps']} steps), pooling {pairs['pooling']}, head from a "
              f"logistic regression; {results['train_examples']} training examples, {recipe['seconds']} s")  # fmt: skip
    else:
        print(f"\n{history_table(results['history'])}")
        print(f"schedule: {recipe['schedule']}")
        print(f"pair stage: {pairs['why']}")
        print(
            f"best epoch {recipe['best_epoch']} of {recipe['epochs_run']} by validation {recipe['metric']} "
            f"{recipe['best_metric']} (kept); {results['train_examples']} training examples, {recipe['seconds']} s"
        )
    print(f"\nimbalance: {results['imbalance']['why']}")
    weights = {k: round(v, 3) for k, v in results["class_weights"].items() if k != "scheme"}
    print(f"\nclass weights ({results['class_weights']['scheme']}): {weights}")
    sampling = results["sampling"]
    if sampling["mode"] != "none":
        print(f"sampling {sampling['mode']}: {sampling['counts_before']} -> {sampling['counts_after']}")
    if "synthetic" in results:
        counts = results["synthetic"]
        print(f"synthetic examples: {counts['given']} given, {counts['duplicates_removed']} duplicates removed, "
              f"{counts['rejected_by_filter']} rejected by the filter, {counts['added']} added "
              f"{counts['added_per_label']}")  # fmt: skip
    if "calibration" in results:
        from hflabels.training.evaluation import describe_calibration

        print(f"calibration (served): {describe_calibration(results['calibration'])}")
        fit = results.get("calibration_fit", {})
        interval = fit.get("temperature_interval_90")
        reliability = f"; 90% bootstrap interval of T {interval[0]}-{interval[1]}" if interval else ""
        print(f"calibration fitted on {fit.get('examples')} validation examples{reliability}")
        if "warning" in fit:
            print(f"warning: {fit['warning']}")
    if "guarantees" in results:
        print_guarantees(results["guarantees"])
    elif "guarantees_skipped" in results:
        print(f"no prediction sets, abstention or drift reference: {results['guarantees_skipped']}")
    if "thresholds" in results:
        print("tuned thresholds: " + ", ".join(f"{k} {v:.3f}" for k, v in results["thresholds"].items()))
    for split in ("validation", "test"):
        if split in results:
            print(f"\n{split}:\n{format_table(results[split])}")
            calibrated = results[split].get("calibration", {})
            for stage in ("before", "after"):
                if stage in calibrated:
                    figures = calibrated[stage]
                    print(f"calibration {stage}: ECE {figures['ece']:.4f}  NLL {figures['nll']:.4f}  "
                          f"Brier {figures['brier']:.4f}")  # fmt: skip
    print(f"\nwrote {args.output} (archive it with: hflabels archive {args.output} --name NAME)")
    return 0


def print_epoch(row: dict) -> None:
    """A plain line per epoch where no terminal shows Trainer's progress bar."""
    figures = "  ".join(
        f"{k} {v:.4f}" for k, v in row.items() if k not in ("epoch", "seconds") and isinstance(v, float)
    )
    print(
        f"epoch {row['epoch']}: {figures}" + (f"  ({row['seconds']:.1f} s)" if row.get("seconds") else ""), flush=True
    )


def history_table(history: list[dict]) -> str:
    """The per-epoch history as a table: one row per epoch, the columns every row has."""
    if not history:
        return ""
    columns = [key for key in history[0] if all(key in row for row in history)]
    lines = ["  ".join(f"{column:>12}" for column in columns)]
    for row in history:
        lines.append("  ".join(f"{row[column]:>12.4f}" if isinstance(row[column], float) else f"{row[column]:>12}"
                               for column in columns))  # fmt: skip
    return "\n".join(lines)
