#!/usr/bin/env python3
"""Draw a served model's evaluation (the JSON of ``scripts/evaluate.py --report``) as a PNG.

    scripts/plot_evaluation.py build/evaluation.json [--output build/evaluation.png]

Single-label (and sentence-pair) models get a confusion matrix of the served predictions, with
counts and row-normalised shading; multi-label and token-classification models get per-label
(per-entity-type) precision, recall and F1 bars.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def confusion(truth: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> np.ndarray:
    """Counts: rows are true labels, columns predicted ones, both in ``labels`` order."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for true, guess in zip(truth, predicted):
        if true in index and guess in index:
            matrix[index[true], index[guess]] += 1
    return matrix


def plot_report(report: dict[str, Any], output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = report["metrics"]
    headline = ", ".join(f"{key} {value:.3f}" for key, value in metrics.items() if isinstance(value, float))
    if report["task"] in ("single_label", "sentence_pair"):
        labels = report["labels"]
        matrix = confusion(report["truth"], report["served"], labels)
        shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        figure, axis = plt.subplots(figsize=(1.2 * len(labels) + 3, 1.0 * len(labels) + 2.5))
        axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        for row in range(len(labels)):
            for column in range(len(labels)):
                axis.text(column, row, str(matrix[row, column]), ha="center", va="center",
                          color="white" if shares[row, column] > 0.6 else "black", fontsize=12)  # fmt: skip
        axis.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        axis.set_yticks(range(len(labels)), labels)
        axis.set(xlabel="served prediction", ylabel="true label")
    else:
        rows = metrics.get("per_class") or metrics.get("per_type") or {}
        names = list(rows)
        positions = np.arange(len(names))
        figure, axis = plt.subplots(figsize=(max(5, 0.9 * len(names) + 2), 4))
        for offset, key in zip((-0.25, 0.0, 0.25), ("precision", "recall", "f1")):
            axis.bar(positions + offset, [rows[name][key] for name in names], width=0.25, label=key)
        axis.set_xticks(positions, names, rotation=30, ha="right")
        axis.set(ylim=(0, 1.05), ylabel="score")
        axis.legend(fontsize=8)
    mismatches = len(report.get("mismatches", []))
    axis.set_title(f"{headline}\nserved vs in-process mismatches: {mismatches}", fontsize=9)
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="the JSON written by scripts/evaluate.py --report")
    parser.add_argument("--output", type=Path, help="the PNG (default: the report's name with .png)")
    args = parser.parse_args(argv)
    output = args.output or args.report.with_suffix(".png")
    plot_report(json.loads(args.report.read_text(encoding="utf-8")), output)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
