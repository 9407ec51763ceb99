"""Training on little data: the recipe's defaults against settings chosen by hand, and the baselines.

    python -m lab small-data [--domains nyt amazon] [--per-label 8 20 50 100] [--seeds 1 2 3]
                             [--baselines tfidf_lr setfit] [--test-examples 600] [--output build/small-data]

From each VADER domain (`hflabels data vader` writes them), a seeded sample of K sentences a label
is trained on with `hflabels train`'s defaults and with each hand setting (--hand EPOCHS:RATE,
repeatable), and the baselines are fitted on the same sentences: TF-IDF + logistic regression, and
SetFit (contrastive few-shot fine-tuning of the same MiniLM, run in .venv-setfit: `make setfit`);
every one is scored on the same seeded sample of the domain's test split (macro-F1). A hand setting
that the defaults resolve to at that size is not trained twice: it takes the defaults' score.
Writes results.json with each run and the median per size and setting (--append keeps the runs
already there that this call does not redo). Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import statistics
import subprocess
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from hflabels.paths import BUILD

HAND = ("8:5e-5", "20:1e-4")
BASELINES = ("tfidf_lr", "setfit")
SETFIT_PYTHON = Path(".venv-setfit/bin/python")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=BUILD / "vader", help="hflabels data vader's output")
    parser.add_argument("--domains", nargs="+", default=["nyt", "amazon"], help="VADER domains")
    parser.add_argument("--per-label", type=int, nargs="+", default=[8, 20, 50, 100],
                        help="training sentences a label")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3], help="one sample and run per seed")
    parser.add_argument("--hand", action="append", metavar="EPOCHS:RATE",
                        help=f"a hand setting, repeatable (default: {' '.join(HAND)}; "
                        "none: the defaults alone)")  # fmt: skip
    parser.add_argument("--baselines", nargs="*", choices=BASELINES, default=list(BASELINES),
                        help="baselines fitted on the same sentences")  # fmt: skip
    parser.add_argument("--no-fine-tune", action="store_true", help="only the baselines")
    parser.add_argument("--append", action="store_true", help="keep the runs of OUTPUT/results.json not redone")
    parser.add_argument("--test-examples", type=int, default=600, help="test sentences scored per domain")
    parser.add_argument("--output", type=Path, default=BUILD / "small-data", help="runs and results.json")


def read(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8") as stream:
        return [(row["text"], row["label"]) for row in csv.DictReader(stream)]


def sample(rows: list[tuple[str, str]], per_label: int, seed: int, at_most: bool = False) -> list[tuple[str, str]]:
    """A seeded sample of ``per_label`` rows a label (``at_most``: fewer where a label has fewer)."""
    by_label: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row in rows:
        by_label[row[1]].append(row)
    rng = random.Random(seed)
    picked = []
    for label in sorted(by_label):
        members = by_label[label]
        picked += rng.sample(members, min(per_label, len(members)) if at_most else per_label)
    rng.shuffle(picked)
    return picked


def write(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def setfit_macro_f1(train_file: Path, test_file: Path, seed: int, output: Path) -> float:
    """SetFit on the same sentences, in its own venv (it pins another transformers)."""
    if not SETFIT_PYTHON.exists():
        raise SystemExit(f"{SETFIT_PYTHON} is missing: make setfit (or --baselines tfidf_lr)")
    from hflabels.training.options import default_base_model

    command = [str(SETFIT_PYTHON), "-m", "lab.setfit_baseline", "--train", str(train_file), "--test", str(test_file),
               "--seed", str(seed), "--base-model", str(default_base_model()), "--output", str(output)]  # fmt: skip
    subprocess.run(command, check=True)
    return float(json.loads((output / "setfit.json").read_text())["f1_macro"])


def fine_tune_runs(args: argparse.Namespace, hand: list[str], train_file: Path, test_file: Path, seed: int,
                   output: Path) -> list[dict[str, Any]]:  # fmt: skip
    """The defaults, then each hand setting the defaults did not already resolve to (on small data
    the defaults run the pair stage, and every hand setting fine-tunes)."""
    from hflabels.training.trainer import TrainOptions, train

    runs: list[dict[str, Any]] = []
    settings: list[tuple[str, dict[str, Any]]] = [("defaults", {})]
    for spec in hand:
        epochs, rate = spec.split(":")
        settings.append((f"hand {spec}", {"epochs": float(epochs), "learning_rate": float(rate)}))
    for name, changes in settings:
        if runs and not runs[0]["pair_stage"] and \
                (changes["epochs"], changes["learning_rate"]) == (runs[0]["epochs"], runs[0]["learning_rate"]):
            runs.append({**runs[0], "setting": name, "same_as": "defaults"})
            continue
        started = time.perf_counter()
        options = TrainOptions(task="single_label", train=train_file, test=test_file, seed=seed, quiet=True,
                               output=output / "model", **changes)  # fmt: skip
        results = train(options)
        recipe, seconds = results["recipe"], round(time.perf_counter() - started, 1)
        runs.append({"setting": name, "f1_macro": round(results["test"]["f1_macro"], 4),
                     "epochs": recipe["epochs"], "learning_rate": recipe["learning_rate"],
                     "epochs_run": recipe["epochs_run"], "pair_stage": recipe["pair_stage"]["run"],
                     "seconds": seconds})  # fmt: skip
    return runs


def run(args: argparse.Namespace) -> int:
    from transformers.utils import logging as transformers_logging

    from hflabels.training.metrics import single_label_metrics
    from hflabels.vader_data import LABELS
    from lab.real_data import tfidf_logistic_regression
    from lab.results import write_results

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    hand = [spec for spec in (args.hand or list(HAND)) if spec != "none"]
    redone: set[tuple[str, int, int, str]] = set()
    runs: list[dict[str, Any]] = []
    for domain in args.domains:
        # A rare label's test rows may be fewer (amazon has 93 neutral): all of them then.
        test = sample(read(args.data / domain / "test.csv"), args.test_examples // 3, 0, at_most=True)
        test_file = write(args.output / domain / "test.csv", test)
        pool = read(args.data / domain / "train.csv")
        for per_label in args.per_label:
            for seed in args.seeds:
                rows = sample(pool, per_label, seed)
                folder = args.output / domain / f"{per_label}-{seed}"
                train_file = write(folder / "train.csv", rows)
                found: list[dict[str, Any]] = []
                if "tfidf_lr" in args.baselines:
                    predict = tfidf_logistic_regression([t for t, _ in rows], [label for _, label in rows])
                    truth = [LABELS.index(label) for _, label in test]
                    predicted = [LABELS.index(label) for label in predict([t for t, _ in test])]
                    score = single_label_metrics(truth, predicted, LABELS)["f1_macro"]
                    found.append({"setting": "tfidf_lr", "f1_macro": round(score, 4)})
                if "setfit" in args.baselines:
                    started = time.perf_counter()
                    score = setfit_macro_f1(train_file, test_file, seed, folder / "setfit")
                    found.append({"setting": "setfit", "f1_macro": round(score, 4),
                                  "seconds": round(time.perf_counter() - started, 1)})  # fmt: skip
                if not args.no_fine_tune:
                    found += fine_tune_runs(args, hand, train_file, test_file, seed, folder)
                for entry in found:
                    runs.append({"domain": domain, "per_label": per_label, "seed": seed, **entry})
                    redone.add((domain, per_label, seed, entry["setting"]))
                    print(f"{domain} {per_label}/label seed {seed} {entry['setting']:<16} "
                          f"macro-F1 {entry['f1_macro']:.3f} ({entry.get('seconds', '-')} s)", flush=True)  # fmt: skip
    results_file = args.output / "results.json"
    if args.append and results_file.exists():
        kept = [r for r in json.loads(results_file.read_text())["runs"]
                if (r["domain"], r["per_label"], r["seed"], r["setting"]) not in redone]  # fmt: skip
        runs = kept + runs
    summary: dict[str, dict[str, float]] = defaultdict(dict)
    for key in sorted({(r["domain"], r["per_label"], r["setting"]) for r in runs}):
        scores = [r["f1_macro"] for r in runs if (r["domain"], r["per_label"], r["setting"]) == key]
        summary[f"{key[0]} {key[1]}/label"][key[2]] = round(statistics.median(scores), 4)
    write_results(results_file, {"runs": runs, "median_f1_macro": summary, "hand": hand})
    for size, medians in summary.items():
        print(size, "  ".join(f"{name} {value:.3f}" for name, value in medians.items()))
    return 0
