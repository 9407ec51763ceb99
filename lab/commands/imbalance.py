"""The class-imbalance experiment: every strategy on one imbalanced split, measured on a balanced test.

    python -m lab imbalance [--seeds 1 2] [--epochs 15] [--output build/imbalance]

Trains all-MiniLM-L6-v2 (as the demo does) once per strategy and seed on a ~90/8/2 split of
data/sentiment/train.csv (a fifth held out for validation and calibration) and reports, on the
balanced data/sentiment/test.csv: accuracy, macro-F1, the rarest class's recall, and ECE and NLL
before and after calibration. Writes results.json and imbalance.png. Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import logging
import statistics
from pathlib import Path

from hflabels.paths import BUILD, SENTIMENT_DATA
from hflabels.training.trainer import TrainOptions
from lab.imbalance import SHARES, STRATEGIES, imbalanced_split, run_strategy
from lab.results import write_results

METRICS = ("accuracy", "f1_macro", "rare_recall", "served_f1_macro", "served_rare_recall", "ece_before", "ece_after",
           "nll_before", "nll_after")  # fmt: skip


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="seeds, one run of every strategy each")
    parser.add_argument("--epochs", type=float, default=15.0, help="training epochs per run")
    parser.add_argument("--output", type=Path, default=BUILD / "imbalance", help="folder for the results")


def run(args: argparse.Namespace) -> int:
    logging.disable(logging.INFO)
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    args.output.mkdir(parents=True, exist_ok=True)
    rare = min(SHARES, key=SHARES.get)
    runs: dict[str, list[dict]] = {name: [] for name in STRATEGIES}
    counts = {}
    for seed in args.seeds:
        split = args.output / f"train-seed{seed}.csv"
        counts[seed] = imbalanced_split(SENTIMENT_DATA / "train.csv", split, seed)
        print(f"seed {seed}: training split {counts[seed]}", flush=True)
        base = TrainOptions(task="single_label", train=split, test=SENTIMENT_DATA / "test.csv",
                            output=args.output / "model", epochs=args.epochs, seed=seed)  # fmt: skip
        for name, changes in STRATEGIES.items():
            runs[name].append(run_strategy(base, changes, rare))
            last = runs[name][-1]
            print(f"  {name:<24} macro-F1 {last['f1_macro']:.3f}  {rare} recall {last['rare_recall']:.3f}  "
                  f"served macro-F1 {last['served_f1_macro']:.3f}  "
                  f"ECE {last['ece_before']:.3f} -> {last['ece_after']:.3f}", flush=True)  # fmt: skip
    summary = {
        name: {metric: {"median": statistics.median(r[metric] for r in found),
                        "min": min(r[metric] for r in found), "max": max(r[metric] for r in found)}
               for metric in METRICS}
        for name, found in runs.items()
    }  # fmt: skip
    document = {"shares": SHARES, "rare": rare, "seeds": args.seeds, "epochs": args.epochs, "counts": counts,
                "runs": runs, "summary": summary}  # fmt: skip
    document = write_results(args.output / "results.json", document)
    plot(document, args.output / "imbalance.png")
    print(f"wrote {args.output / 'results.json'} and {args.output / 'imbalance.png'}")
    return 0


def plot(document: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(document["summary"])
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    positions = range(len(names))
    for offset, metric, label in ((-0.2, "f1_macro", "macro-F1"), (0.2, "rare_recall", f"{document['rare']} recall")):
        medians = [document["summary"][name][metric]["median"] for name in names]
        low = [m - document["summary"][name][metric]["min"] for name, m in zip(names, medians)]
        high = [document["summary"][name][metric]["max"] - m for name, m in zip(names, medians)]
        axes[0].bar([p + offset for p in positions], medians, width=0.4, yerr=[low, high], capsize=3, label=label)
    for offset, metric, label in ((-0.2, "ece_before", "ECE, model's softmax"), (0.2, "ece_after", "ECE, calibrated")):
        medians = [document["summary"][name][metric]["median"] for name in names]
        axes[1].bar([p + offset for p in positions], medians, width=0.4, label=label)
    for axis, title in ((axes[0], "balanced test set"), (axes[1], "calibration on the balanced test set")):
        axis.set_xticks(list(positions), names, rotation=30, ha="right", fontsize=8)
        axis.set_title(title, fontsize=9)
        axis.legend(fontsize=7)
    shares = "/".join(f"{share:.0%}" for share in document["shares"].values())
    figure.suptitle(f"MiniLM on a {shares} split of the demo data; medians over seeds {document['seeds']} "
                    f"(bars: min-max)", fontsize=9)  # fmt: skip
    figure.tight_layout()
    figure.savefig(path, dpi=110)
