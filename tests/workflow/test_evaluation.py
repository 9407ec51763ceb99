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


def test_the_reliability_diagram_is_drawn_beside_the_confusion_matrix(tmp_path, capsys):
    import json

    from support import script

    bins = [{"low": i / 15, "high": (i + 1) / 15, "count": 0, "confidence": 0.0, "accuracy": 0.0} for i in range(15)]
    bins[14] = {**bins[14], "count": 3, "confidence": 0.97, "accuracy": 2 / 3}
    bins[9] = {**bins[9], "count": 1, "confidence": 0.64, "accuracy": 1.0}
    report = {"task": "single_label", "labels": ["a", "b"], "truth": ["a", "b", "a", "b"],
              "served": ["a", "b", "b", "b"], "metrics": {"accuracy": 0.75, "f1_macro": 0.73, "examples": 4},
              "calibration": {"ece": 0.2, "nll": 0.4, "brier": 0.3, "reliability": bins}}  # fmt: skip
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    assert script("plot-evaluation")([str(path)]) == 0
    assert "report-reliability.png" in capsys.readouterr().out
    assert (tmp_path / "report-reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_trained_models_reported_metrics_are_those_of_its_served_answers(trained):
    """Training's reported scores and the handler's served scores are one function: the metrics
    and calibration training wrote for its validation split are recomputed here from the answers
    the handler's runner gives for the same examples (values, not keys)."""
    import json

    import pytest

    from hflabels.evaluation import local_predictions, metrics_for, model_labels, served_calibration, served_labels
    from hflabels.training.data import load_examples, split_held_out

    for task, data in (("single_label", "single.csv"), ("sentence_pair", "pairs.csv"), ("multi_label", "multi.jsonl")):
        folder = trained[task]
        reported = json.loads((folder / "metrics.json").read_text())["validation"]
        _, validation = split_held_out(load_examples(folder.parent / data, task), 0.25, 42, task)
        answers = local_predictions(folder, validation, task)
        metrics = metrics_for(task, validation, served_labels(task, answers), model_labels(folder))
        keys = ("f1_micro", "f1_macro", "hamming_loss") if task == "multi_label" else ("accuracy", "f1_macro")
        for key in keys:
            assert metrics[key] == pytest.approx(reported[key], abs=1e-9), (task, key)
        if task != "multi_label":
            served = served_calibration(answers, validation, model_labels(folder))
            for key in ("ece", "nll", "brier"):
                assert served[key] == pytest.approx(reported["calibration"]["after"][key], abs=2e-5), (task, key)
