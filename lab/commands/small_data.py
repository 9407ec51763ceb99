"""Training on little data: the recipe's defaults against settings chosen by hand, and the baselines.

    python -m lab small-data [--domains nyt amazon] [--per-label 8 20 50] [--seeds 1 2 3]
                             [--test-examples 600] [--output build/small-data]

From each VADER domain (`hflabels data vader` writes them), a seeded sample of K sentences a label
is trained on with `hflabels train`'s defaults and with each hand setting (--hand EPOCHS:RATE,
repeatable), and TF-IDF + logistic regression is fitted on the same sentences; every one is scored
on the same seeded sample of the domain's test split (macro-F1). Writes results.json with each run
and the median per size and setting. Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from hflabels.paths import BUILD

HAND = ("8:5e-5", "20:1e-4", "40:1e-4")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=BUILD / "vader", help="hflabels data vader's output")
    parser.add_argument("--domains", nargs="+", default=["nyt", "amazon"], help="VADER domains")
    parser.add_argument("--per-label", type=int, nargs="+", default=[8, 20, 50], help="training sentences a label")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="one sample and run per seed")
    parser.add_argument("--hand", action="append", metavar="EPOCHS:RATE",
                        help=f"a hand setting, repeatable (default: {' '.join(HAND)})")  # fmt: skip
    parser.add_argument("--test-examples", type=int, default=600, help="test sentences scored per domain")
    parser.add_argument("--output", type=Path, default=BUILD / "small-data", help="runs and results.json")


def read(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8") as stream:
        return [(row["text"], row["label"]) for row in csv.DictReader(stream)]


def sample(rows: list[tuple[str, str]], per_label: int, seed: int) -> list[tuple[str, str]]:
    by_label: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in rows:
        by_label[row[1]].append(row)
    rng = random.Random(seed)
    picked = [row for label in sorted(by_label) for row in rng.sample(by_label[label], per_label)]
    rng.shuffle(picked)
    return picked


def write(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def run(args: argparse.Namespace) -> int:
    from transformers.utils import logging as transformers_logging

    from hflabels.training.metrics import single_label_metrics
    from hflabels.training.trainer import TrainOptions, train
    from hflabels.vader_data import LABELS
    from lab.real_data import tfidf_logistic_regression
    from lab.results import write_results

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    hand = args.hand or list(HAND)
    runs: list[dict[str, Any]] = []
    for domain in args.domains:
        test = sample(read(args.data / domain / "test.csv"), args.test_examples // 3, 0)
        test_file = write(args.output / domain / "test.csv", test)
        pool = read(args.data / domain / "train.csv")
        for per_label in args.per_label:
            for seed in args.seeds:
                rows = sample(pool, per_label, seed)
                train_file = write(args.output / domain / f"{per_label}-{seed}" / "train.csv", rows)
                predict = tfidf_logistic_regression([t for t, _ in rows], [label for _, label in rows])
                truth = [LABELS.index(label) for _, label in test]
                predicted = [LABELS.index(label) for label in predict([t for t, _ in test])]
                baseline = single_label_metrics(truth, predicted, LABELS)["f1_macro"]
                runs.append({"domain": domain, "per_label": per_label, "seed": seed, "setting": "tfidf_lr",
                             "f1_macro": round(baseline, 4)})  # fmt: skip
                settings: list[tuple[str, dict[str, Any]]] = [("defaults", {})]
                for spec in hand:
                    epochs, rate = spec.split(":")
                    settings.append((f"hand {spec}", {"epochs": float(epochs), "learning_rate": float(rate)}))
                for name, changes in settings:
                    started = time.perf_counter()
                    output = args.output / domain / f"{per_label}-{seed}" / "model"
                    options = TrainOptions(task="single_label", train=train_file, test=test_file, seed=seed,
                                           quiet=True, output=output, **changes)  # fmt: skip
                    results = train(options)
                    runs.append({"domain": domain, "per_label": per_label, "seed": seed, "setting": name,
                                 "f1_macro": round(results["test"]["f1_macro"], 4),
                                 "epochs_run": results["recipe"]["epochs_run"],
                                 "learning_rate": results["recipe"].get("learning_rate"),
                                 "seconds": round(time.perf_counter() - started, 1)})  # fmt: skip
                    print(f"{domain} {per_label}/label seed {seed} {name:<16} macro-F1 {runs[-1]['f1_macro']:.3f} "
                          f"({runs[-1]['seconds']} s); TF-IDF+LR {baseline:.3f}", flush=True)
    summary: dict[str, dict[str, float]] = defaultdict(dict)
    for key in sorted({(r["domain"], r["per_label"], r["setting"]) for r in runs}):
        scores = [r["f1_macro"] for r in runs if (r["domain"], r["per_label"], r["setting"]) == key]
        summary[f"{key[0]} {key[1]}/label"][key[2]] = round(statistics.median(scores), 4)
    write_results(args.output / "results.json", {"runs": runs, "median_f1_macro": summary, "hand": hand})
    for size, found in summary.items():
        print(size, "  ".join(f"{name} {value:.3f}" for name, value in found.items()))
    return 0
