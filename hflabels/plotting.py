"""Figures of a served model's evaluation: a confusion matrix or per-label bars, the reliability
diagram, the risk-coverage curve (the lab draws its benchmarks in lab/plots.py).

Single-label (and sentence-pair) models get a confusion matrix of the served predictions, with
counts and row-normalised shading; multi-label and token-classification models get per-label
(per-entity-type) precision, recall and F1 bars.
"""

from __future__ import annotations

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


def plot_reliability(report: dict[str, Any], output: Path) -> None:
    """Accuracy against confidence per bin of the served scores, with each bin's count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    calibration = report["calibration"]
    bins = [row for row in calibration["reliability"] if row["count"]]
    figure, axis = plt.subplots(figsize=(5, 4.6))
    axis.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
    centres = [(row["low"] + row["high"]) / 2 for row in bins]
    width = bins[0]["high"] - bins[0]["low"] if bins else 0.05
    axis.bar(centres, [row["accuracy"] for row in bins], width=width * 0.9, alpha=0.7, label="accuracy")
    axis.plot([row["confidence"] for row in bins], [row["accuracy"] for row in bins], "o", color="tab:red",
              label="mean confidence")  # fmt: skip
    for centre, row in zip(centres, bins):
        axis.annotate(str(row["count"]), (centre, row["accuracy"]), ha="center", va="bottom", fontsize=7)
    axis.set(xlim=(0, 1), ylim=(0, 1.05), xlabel="confidence (top score served)", ylabel="accuracy")
    axis.set_title(
        f"reliability of the served scores\nECE {calibration['ece']:.3f}  NLL {calibration['nll']:.3f}  "
        f"Brier {calibration['brier']:.3f}",
        fontsize=9,
    )
    axis.legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=110)
    plt.close(figure)


def plot_risk_coverage(guarantees: dict[str, Any], path: Path, title: str = "") -> None:
    """Error among the answered against the share answered, the abstention threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = guarantees["risk_coverage"]
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot([row["answered"] for row in curve], [row["error"] for row in curve], label="served scores")
    abstention = guarantees.get("abstention")
    if abstention is not None:
        bound = abstention["max_error"]
        axis.axhline(bound, color="grey", linestyle="--", label=f"bound E = {bound}")
        axis.plot([abstention["answered"]], [abstention["error_answered"]], "o", color="C3",
                  label=f"served threshold {abstention['threshold']:.3f}")  # fmt: skip
    axis.set(xlabel="share answered", ylabel="error among answered", xlim=(0, 1), ylim=(0, None), title=title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
