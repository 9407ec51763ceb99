"""Calibration on unseen data: every calibrator fitted on a model's validation split, measured on
its test split (ECE equal-width and equal-mass with bootstrap intervals; conformal coverage).

    python -m lab calibration --models build/drift/movie-trained [--domain movies]
                              [--halves 20] [--output docs/results/calibration.json]

Each folder's own runner (the served path) gives the logits of the VADER domain's validation and
test splits (`hflabels data vader` writes them); lab/calibration_study.py fits and measures.
Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hflabels.paths import BUILD, REPO_ROOT


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="single-label model folders")
    parser.add_argument("--data", type=Path, default=BUILD / "vader", help="hflabels data vader's output")
    parser.add_argument("--domain", default="movies", help="the VADER domain the models were trained on")
    parser.add_argument("--halves", type=int, default=20, help="random validation halves besides the seeded one")
    parser.add_argument("--seed", type=int, default=42, help="the seeded half (hflabels train's default seed)")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "results" / "calibration.json",
                        help="results JSON")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from hflabels.calibrating import folder_logits, truth_of
    from hflabels.evaluation import folder_runner
    from hflabels.training.data import load_examples
    from hflabels.training.guarantees import GuaranteeOptions
    from lab.calibration_study import study
    from lab.results import write_results

    found = {}
    for folder in args.models:
        runner = folder_runner(folder)
        labels = list(runner.labels)
        splits = []
        for split in ("validation", "test"):
            # Raw logits (folder_logits asks for raw scores): the study applies each calibrator.
            examples = load_examples(args.data / args.domain / f"{split}.csv", "single_label")
            splits.append((folder_logits(runner, examples), truth_of(examples, labels, False)))
        share = GuaranteeOptions().held_out_share
        found[folder.name] = study(splits[0], splits[1], args.seed, share, args.halves)
        for name, row in found[folder.name]["calibrators"].items():
            print(f"{folder.name} {name:<40} test ECE {row['ece']:.3f} {row['ece_interval_90']} equal-mass "
                  f"{row['ece_equal_mass']:.3f}; over halves mean {row['halves']['ece_mean']:.3f} "
                  f"worst {row['halves']['ece_max']:.3f}")  # fmt: skip
    write_results(args.output, {"data": f"VADER {args.domain}: validation and test splits", "models": found})
    print(f"wrote {args.output}")
    return 0
