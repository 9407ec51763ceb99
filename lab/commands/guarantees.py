"""The guarantees on real data: prediction sets, abstention and drift of the movie-domain MiniLM,
recalibrated on the movie validation split and served by a real torchserve.

    python -m lab guarantees [--model-dir build/real-data/movie-model] [--data build/real-data/data]

Writes docs/results/guarantees-results.json and docs/results/risk-coverage.png (the docs' results
pages draw their tables from them).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from hflabels.paths import REPO_ROOT


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=REPO_ROOT / "build" / "real-data" / "movie-model",
        help="the movie-domain model (make real-data trains it)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=REPO_ROOT / "build" / "real-data" / "data",
        help="the VADER splits (hflabels data vader writes them)",
    )
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "results",
                        help="where the results and plot go")  # fmt: skip
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "build" / "guarantees", help="scratch folder")
    parser.add_argument("--abstain-error", type=float, default=0.1, help="the abstention bound to fit")
    parser.add_argument("--resplits", type=int, default=100, help="seeded re-splits for the mean coverage")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from hflabels.training.data import DataError
    from lab.guarantees_report import GuaranteePlan
    from lab.guarantees_report import run as run_report

    plan = GuaranteePlan(args.model_dir, args.data, args.output, args.work, args.abstain_error, args.resplits)
    try:
        results = run_report(plan, print)
    except DataError as error:
        print(f"{args.prog}: error: {error}", file=sys.stderr)
        return 2
    for method in ("lac", "aps", "class_conditional"):
        realised = results.get(f"realised_{method}", {}).get("prediction_sets")
        if realised:
            print(f"{method}: " + ", ".join(f"{level} coverage {row['coverage']:.3f} size {row['mean_size']:.2f}"
                                             for level, row in realised["levels"].items()))  # fmt: skip
    print(f"wrote {args.output / 'guarantees-results.json'} and {args.output / 'risk-coverage.png'}")
    return 0
