"""scripts/evaluate.py against a served model, and the plot of its report."""

from __future__ import annotations

import json

import numpy as np
import pytest
from evaluate import main as evaluate_main
from plot_evaluation import confusion, plot_report

LABELLED = "text,label\n" + "".join(
    f"{text},{label}\n"
    for text, label in [
        ("I loved it", "positive"),
        ("the soup was cold", "negative"),
        ("the shop opens at nine", "neutral"),
        ("What a fantastic movie", "positive"),
        ("rude staff and a dirty room", "negative"),
        ("it has four wheels", "neutral"),
    ]
)  # fmt: skip


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


@pytest.mark.e2e
def test_a_faithful_deployment_matches_its_model_folder(torchserve, sentiment_model, tmp_path, capsys):
    data = tmp_path / "labelled.csv"
    data.write_text(LABELLED)
    report = tmp_path / "report.json"
    status = evaluate_main([
        "--url", torchserve.predictions_url("sentiment"), "--token", torchserve.inference_token,
        "--data", str(data), "--task", "single_label", "--model-dir", str(sentiment_model),
        "--batch-size", "2", "--report", str(report),
    ])  # fmt: skip
    assert status == 0, capsys.readouterr().out
    document = json.loads(report.read_text())
    assert document["mismatches"] == [] and document["served"] == document["in_process"]
    assert document["metrics"]["examples"] == 6
    assert "all 6 served predictions equal" in capsys.readouterr().out


@pytest.mark.e2e
def test_a_deployment_of_another_model_is_caught(torchserve, sentiment_model, tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file, save_file

    # The folder checked is the served model with its classifier negated: every argmax moves.
    other = tmp_path / "other"
    shutil.copytree(sentiment_model, other)
    weights = load_file(other / "model.safetensors")
    weights = {name: -tensor if name.startswith("classifier.") else tensor for name, tensor in weights.items()}
    save_file(weights, other / "model.safetensors", metadata={"format": "pt"})
    data = tmp_path / "labelled.csv"
    data.write_text(LABELLED)
    report = tmp_path / "report.json"
    status = evaluate_main([
        "--url", torchserve.predictions_url("sentiment"), "--token", torchserve.inference_token,
        "--data", str(data), "--task", "single_label", "--model-dir", str(other), "--report", str(report),
    ])  # fmt: skip
    assert status == 1
    assert "6 of 6 served predictions differ from the model folder's" in capsys.readouterr().out
    assert [m["line"] for m in json.loads(report.read_text())["mismatches"]] == [2, 3, 4, 5, 6, 7]
