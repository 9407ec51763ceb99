"""hflabels evaluate against a served model."""

from __future__ import annotations

import json

import pytest
from support import script

pytestmark = pytest.mark.e2e
evaluate_main = script("evaluate")

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


def test_a_faithful_deployment_matches_its_model_folder(torchserve, sentiment_model, tmp_path, capsys):
    data = tmp_path / "labelled.csv"
    data.write_text(LABELLED)
    report = tmp_path / "report.json"
    # "--token=VALUE": a token may start with "-", which argparse would take for an option.
    status = evaluate_main([
        "--url", torchserve.predictions_url("sentiment"), f"--token={torchserve.inference_token}",
        "--data", str(data), "--task", "single_label", "--model-dir", str(sentiment_model),
        "--batch-size", "2", "--report", str(report),
    ])  # fmt: skip
    assert status == 0, capsys.readouterr().out
    document = json.loads(report.read_text())
    assert document["mismatches"] == [] and document["served"] == document["in_process"]
    assert document["metrics"]["examples"] == 6
    # The served probabilities' calibration, with the reliability diagram's bins over every example.
    calibration = document["calibration"]
    assert {"ece", "nll", "brier"} <= set(calibration) and 0 <= calibration["ece"] <= 1
    assert sum(row["count"] for row in calibration["reliability"]) == 6
    assert "all 6 served predictions equal" in capsys.readouterr().out


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
        "--url", torchserve.predictions_url("sentiment"), f"--token={torchserve.inference_token}",
        "--data", str(data), "--task", "single_label", "--model-dir", str(other), "--report", str(report),
    ])  # fmt: skip
    assert status == 1
    assert "6 of 6 served predictions differ from the model folder's" in capsys.readouterr().out
    assert [m["line"] for m in json.loads(report.read_text())["mismatches"]] == [2, 3, 4, 5, 6, 7]
