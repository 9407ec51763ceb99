"""The plot of an evaluation report (the report itself, against a served model: test_e2e_evaluation)."""

from __future__ import annotations

import numpy as np

from hflabels.plotting import confusion, plot_report


def test_confusion_counts_rows_as_truth_and_columns_as_predictions():
    matrix = confusion(["a", "a", "b", "c"], ["a", "b", "b", "a"], ["a", "b", "c"])
    np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [1, 0, 0]])


def test_plot_writes_a_png_for_each_kind_of_report(tmp_path):
    single = {"task": "single_label", "labels": ["a", "b"], "truth": ["a", "b"], "served": ["a", "a"],
              "metrics": {"accuracy": 0.5}, "mismatches": []}  # fmt: skip
    per_type = {"PER": {"precision": 1.0, "recall": 0.5, "f1": 0.66, "support": 2}}
    tokens = {"task": "token_classification", "labels": ["O", "B-PER"], "mismatches": [],
              "metrics": {"entity_f1": 0.5, "per_type": per_type}}  # fmt: skip
    for name, report in (("single", single), ("tokens", tokens)):
        plot_report(report, tmp_path / f"{name}.png")
        content = (tmp_path / f"{name}.png").read_bytes()
        assert content.startswith(b"\x89PNG") and len(content) > 5_000
