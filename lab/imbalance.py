"""The class-imbalance experiment: one imbalanced training split of the demo data, MiniLM trained
with each strategy practitioners name, the same seed and budget, measured on the balanced test set
before and after calibration."""

from __future__ import annotations

import csv
import random
from dataclasses import replace
from pathlib import Path
from typing import Any

from hflabels.training.trainer import TrainOptions, train

# (name, TrainOptions changes): every strategy on the same data, seed and epochs. The weighted and
# resampled ones are served as --imbalance auto serves them (the decisions they trained, from 10:1).
STRATEGIES: dict[str, dict[str, Any]] = {
    "none": {"imbalance": "none"},
    "auto (the default)": {},
    "weights: inverse": {"class_weights": "inverse"},
    "weights: sqrt_inverse": {"class_weights": "sqrt_inverse"},
    "weights: effective": {"class_weights": "effective"},
    "oversample": {"sampling": "oversample"},
    "undersample": {"sampling": "undersample"},
    "focal (gamma 2)": {"loss": "focal"},
    "focal + inverse alpha": {"loss": "focal", "class_weights": "inverse"},
}
# About 90 / 8 / 2 per cent of the training split, the rare class last.
SHARES = {"neutral": 0.90, "negative": 0.08, "positive": 0.02}


def imbalanced_split(source: Path, target: Path, seed: int) -> dict[str, int]:
    """Write ``target`` from ``source`` (text,label CSV) keeping every example of the most common
    class and a seeded sample of the others in SHARES' proportions; returns the counts."""
    with open(source, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_label: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_label.setdefault(row["label"], []).append(row)
    rng = random.Random(seed)
    majority = max(SHARES, key=SHARES.get)
    total = len(by_label[majority]) / SHARES[majority]
    kept = []
    for label, share in SHARES.items():
        kept += rng.sample(by_label[label], max(2, round(total * share)))
    rng.shuffle(kept)
    with open(target, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": row["text"], "label": row["label"]} for row in kept)
    return {label: sum(row["label"] == label for row in kept) for label in SHARES}


def run_strategy(base: TrainOptions, changes: dict[str, Any], rare: str) -> dict[str, Any]:
    results = train(replace(base, **changes))
    test = results["test"]
    own = test["calibration"]["uncalibrated"]
    return {
        # The strategy's own decisions (argmax of the model's logits)...
        "accuracy": own["accuracy"],
        "f1_macro": own["f1_macro"],
        "rare_recall": own["recall"][rare],
        # ...and the served ones, after the prior correction (a temperature moves none).
        "served_f1_macro": test["f1_macro"],
        "served_rare_recall": test["per_class"][rare]["recall"],
        "ece_before": test["calibration"]["before"]["ece"],
        "ece_after": test["calibration"]["after"]["ece"],
        "nll_before": test["calibration"]["before"]["nll"],
        "nll_after": test["calibration"]["after"]["nll"],
        "decisions_changed_by_calibration": test["calibration"]["decisions_changed"],
        "temperature": results["calibration"]["temperature"],
    }
