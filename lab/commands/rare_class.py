"""A learnable rare class at controlled ratios: plain training, inverse class weights, focal loss,
the logit-adjusted loss and oversampling (what --imbalance auto does from 10:1), and the decision
rules on their logits (lab/rare_class.py says which and why).

    python -m lab rare-class [--ratios 100 20] [--seeds 1 2 3] [--majority 1500] [--epochs 3]
                             [--output docs/results/rare-class.json]

Each run's figures go to BUILD/rare-class/runs.jsonl as they finish (--append keeps earlier ones),
so a long study can be stopped and continued. Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from dataclasses import replace
from pathlib import Path

import numpy as np
import yaml

from hflabels.paths import BUILD, REPO_ROOT

# Each training's options. oversample is what --imbalance auto does from 10:1: the rarer classes
# repeated up to the largest's count, decisions served with every class weighed alike.
TRAININGS = {
    "plain": {"imbalance": "none"},
    "inverse weights": {"class_weights": "inverse"},
    "focal (gamma 2)": {"loss": "focal"},
    "oversample": {"imbalance": "oversample"},
    # Menon et al. 2021: cross-entropy on the logits plus the log training prior; served as trained.
    "logit-adjusted loss": {"loss": "logit_adjusted"},
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ratios", type=int, nargs="+", default=[100, 20], help="majority examples per rare one")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--majority", type=int, default=1500, help="movie sentences per majority class")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--trainings", nargs="+", default=list(TRAININGS), choices=list(TRAININGS))
    parser.add_argument("--work", type=Path, default=BUILD / "rare-class", help="data, models and runs.jsonl")
    parser.add_argument("--append", action="store_true", help="keep the runs already in runs.jsonl")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "results" / "rare-class.json")


def run(args: argparse.Namespace) -> int:
    from transformers.utils import logging as transformers_logging

    from hflabels.training.trainer import TrainOptions, train
    from hflabels.vader_data import fetch_sdist
    from lab.plots import plot_rare_class
    from lab.rare_class import LABELS, decision_rules, evaluate_rules, model_logits, rare_class_splits, write_rows
    from lab.results import write_results

    logging.disable(logging.INFO)
    transformers_logging.set_verbosity_error()
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "runs.jsonl"
    if not args.append and log.exists():
        log.unlink()
    sdist = fetch_sdist(BUILD / "downloads")
    index = {label: i for i, label in enumerate(LABELS)}
    for ratio in args.ratios:
        for seed in args.seeds:
            splits = rare_class_splits(sdist, args.majority, ratio, seed)
            folder = args.work / f"{ratio}-{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            for name, rows in splits.items():
                write_rows(folder / f"{name}.csv", rows)
            counts = np.array([sum(label == wanted for _, label in splits["train"]) for wanted in LABELS], float)
            prior = counts / counts.sum()
            truth = {name: np.array([index[label] for _, label in rows]) for name, rows in splits.items()}
            for training in args.trainings:
                options = TrainOptions(task="single_label", train=folder / "train.csv",
                                       validation=folder / "validation.csv", output=folder / "model",
                                       epochs=args.epochs, seed=seed, quiet=True)  # fmt: skip
                results = train(replace(options, **TRAININGS[training]))
                config = yaml.safe_load((folder / "model" / "model-config.yaml").read_text())
                written = config["handler"]["classification"]["calibration"]["logit_adjustment"]
                adjustment = np.array([written[label] for label in LABELS])
                logits = {name: model_logits(folder / "model", [text for text, _ in splits[name]])
                          for name in ("validation", "test")}  # fmt: skip
                weights = np.array([results["class_weights"][label] for label in LABELS])
                rules = decision_rules((logits["validation"], truth["validation"]), logits["test"], prior, adjustment,
                                       weights)  # fmt: skip
                found = {"ratio": ratio, "seed": seed, "training": training, "counts": counts.tolist(),
                         "seconds": results["recipe"].get("seconds"), "imbalance": results["imbalance"],
                         "rules": evaluate_rules(rules, truth["test"], prior)}  # fmt: skip
                with open(log, "a", encoding="utf-8") as handle:
                    handle.write(json.dumps(found) + "\n")
                for rule, row in found["rules"].items():
                    test, natural = row["test"], row["at_training_prior"]
                    print(f"{ratio}:1 seed {seed} {training:<16} {rule:<26} rare recall {test['rare_recall']:.2f} "
                          f"macro-F1 {test['macro_f1']:.3f} balanced acc {test['balanced_accuracy']:.3f} | at the "
                          f"training prior macro-F1 {natural['macro_f1']:.3f}", flush=True)  # fmt: skip
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    document = {"majority": args.majority, "epochs": args.epochs, "labels": list(LABELS), "runs": runs,
                "summary": summarise(runs)}  # fmt: skip
    write_results(args.output, document)
    plot_rare_class(document, args.output.with_suffix(".png"))
    print(f"wrote {args.output} and its plot")
    return 0


def summarise(runs: list[dict]) -> dict[str, dict]:
    """Per ratio, training and rule: the median and range over seeds of each metric."""
    grouped: dict[str, list[dict]] = {}
    for found in runs:
        for rule, row in found["rules"].items():
            grouped.setdefault(f"{found['ratio']}|{found['training']}|{rule}", []).append(row)
    return {
        key: {view: {metric: {"median": statistics.median(r[view][metric] for r in rows),
                              "min": min(r[view][metric] for r in rows), "max": max(r[view][metric] for r in rows)}
                     for metric in rows[0][view]}
              for view in rows[0]} | {"seeds": len(rows)}
        for key, rows in grouped.items()
    }  # fmt: skip
