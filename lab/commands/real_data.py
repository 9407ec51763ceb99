"""The measured comparison on real, human-labelled data (the VADER corpora), baselines included.

    python -m lab real-data [--output build/real-data] [--movie-train N] [--per-domain-train N] [--quick]

Trains (movies; all four domains; a rating regression), archives and serves the models with a real
torchserve, evaluates them over HTTP on every domain's test split beside VADER and TF-IDF + logistic
regression, and runs every class-imbalance strategy over several seeds. Writes results.json and
real-data.png. About 20 minutes on 2 CPU cores; --quick is a few minutes at small sizes.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path

from hflabels.paths import BUILD
from hflabels.training.data import DataError
from lab.plots import plot_real_data
from lab.real_data import IMBALANCE_STRATEGIES, Plan
from lab.real_data import run as run_experiment


def configure(parser: argparse.ArgumentParser) -> None:
    defaults = Plan(output=BUILD / "real-data")
    parser.add_argument("--output", type=Path, default=defaults.output, help="default: build/real-data")
    parser.add_argument(
        "--movie-train",
        type=int,
        default=defaults.movie_train,
        help=f"movie training examples (subsample; default {defaults.movie_train})",
    )
    parser.add_argument(
        "--per-domain-train",
        type=int,
        default=defaults.per_domain_train,
        help=f"all-domain model: training examples per domain (default {defaults.per_domain_train})",
    )
    parser.add_argument(
        "--regression-train",
        type=int,
        default=defaults.regression_train,
        help=f"rating regression training examples (default {defaults.regression_train})",
    )
    parser.add_argument(
        "--imbalance-train",
        type=int,
        default=defaults.imbalance_train,
        help=f"training examples per imbalance run (default {defaults.imbalance_train})",
    )
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help=f"default {defaults.epochs}")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=list(defaults.imbalance_seeds),
        help="imbalance runs' seeds (default 1 2 3)",
    )
    parser.add_argument(
        "--strategies",
        nargs="+",
        choices=list(IMBALANCE_STRATEGIES),
        default=list(defaults.strategies),
        help="imbalance strategies to run",
    )
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="train in fp32 even with bf16 units")
    parser.add_argument("--quick", action="store_true", help="small sizes, one seed: checks the pipeline end to end")
    # fmt: skip


def plan_of(args: argparse.Namespace) -> Plan:
    if args.quick:
        return Plan(output=args.output, epochs=1, movie_train=300, per_domain_train=100, regression_train=300,
                    imbalance_train=200, imbalance_epochs=1, imbalance_seeds=(1,), bf16_check_examples=200,
                    bf16=args.bf16, strategies=("none", "weights: inverse"))  # fmt: skip
    return Plan(output=args.output, epochs=args.epochs, movie_train=args.movie_train,
                per_domain_train=args.per_domain_train, regression_train=args.regression_train,
                imbalance_train=args.imbalance_train, imbalance_seeds=tuple(args.seeds), bf16=args.bf16,
                strategies=tuple(args.strategies))  # fmt: skip


def table(results: dict) -> str:
    systems = ("vader", "tfidf_lr_movies", "minilm_movies", "tfidf_lr_all_domains", "minilm_all_domains")
    lines = ["| domain (test n, neutral) | system | accuracy | macro-F1 | neutral recall | ECE before -> after |",
             "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for domain, row in results["classification"].items():
        for system in systems:
            figures = row[system]
            ece = f"{figures['ece_before']:.3f} -> {figures['ece_after']:.3f}" if "ece_after" in figures else ""
            lines.append(
                f"| {domain} ({row['examples']}, {row['neutral_share']:.0%}) | {system} | "
                f"{figures['accuracy']:.3f} | {figures['f1_macro']:.3f} | {figures['neutral_recall']:.3f} | {ece} |"
            )
    lines += ["", "| domain | MiniLM rating regression (movies): Pearson / Spearman "
              "| VADER compound: Pearson / Spearman |",
              "| --- | --- | --- |"]  # fmt: skip
    for domain, row in results["regression"].items():
        ours, vader = row["minilm_movies"], row["vader_compound"]
        lines.append(
            f"| {domain} | {ours['pearson']:.3f} / {ours['spearman']:.3f} | "
            f"{vader['pearson']:.3f} / {vader['spearman']:.3f} |"
        )
    if results["imbalance"]:
        lines += ["", "| strategy (movies, seeds) | macro-F1 (sd) | accuracy | neutral recall | ECE before -> after |",
                  "| --- | --- | --- | --- | --- |"]  # fmt: skip
        for strategy, row in results["imbalance"].items():
            lines.append(
                f"| {strategy} | {row['f1_macro_mean']:.3f} ({row['f1_macro_sd']:.3f}) | "
                f"{row['accuracy_mean']:.3f} | {row['neutral_recall_mean']:.3f} | "
                f"{row['ece_before_mean']:.3f} -> {row['ece_after_mean']:.3f} |"
            )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        results = asdict(run_experiment(plan_of(args), lambda line: print(line, flush=True)))
    except DataError as error:
        print(f"{args.prog}: error: {error}", file=sys.stderr)
        return 2
    plot_real_data(results, args.output / "real-data.png")
    (args.output / "results.md").write_text(table(results) + "\n")
    print("\n" + table(results))
    if results["bf16"]:
        fp32, bf16 = results["bf16"]["fp32"], results["bf16"]["bf16"]
        print(f"\nbf16 training ({results['machine']['bf16_unit']}): x{results['bf16']['speedup']} "
              f"({fp32['examples_per_second']} -> {bf16['examples_per_second']} examples/s), validation accuracy "
              f"{fp32['validation_accuracy']:.4f} -> {bf16['validation_accuracy']:.4f}")  # fmt: skip
    print(f"\ntime: {json.dumps(results['seconds'])}")
    print(f"wrote {args.output / 'results.json'}, {args.output / 'results.md'}, {args.output / 'real-data.png'}")
    return 0
