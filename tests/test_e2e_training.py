"""Folders written by hflabels train archive and serve with their label names."""

from __future__ import annotations

import pytest
from conftest import REPO_ROOT
from support import assert_same_answers, post, script

from handler.api.request_parsing import RequestBody
from hflabels.evaluation import folder_runner
from hflabels.torchserve_control import config_with_free_ports, start, stop

pytestmark = pytest.mark.e2e


def test_trained_folders_archive_and_serve_with_their_label_names(trained, tmp_path):
    archive_main = script("archive")
    store = tmp_path / "store"
    names = {"single_label": "single", "sentence_pair": "pair", "multi_label": "multi", "token_classification": "ner"}
    for task, folder in trained.items():
        assert archive_main([str(folder), "--name", names[task], "--export-path", str(store)]) == 0
    config = config_with_free_ports(REPO_ROOT / "config.properties", tmp_path / "config.properties")
    server = start(config, store, [f"{name}={name}.mar" for name in names.values()], tmp_path / "run", timeout=300)
    bodies = {
        "single_label": {"inputs": "the staff were lovely", "parameters": {"top_k": None}},
        "sentence_pair": {"inputs": {"text": "a dog runs", "text_pair": "an animal moves"}},
        "multi_label": {"inputs": "the app crashes", "parameters": {"top_k": None}},
        "token_classification": {
            "inputs": "Alice lives in Paris",
            "parameters": {"aggregation_strategy": "none", "ignore_labels": []},
        },
    }
    try:
        served = {task: post(server, names[task], body).json() for task, body in bodies.items()}
    finally:
        stop(tmp_path / "run")
    assert {item["label"] for item in served["single_label"]} == {"negative", "neutral", "positive"}
    assert served["sentence_pair"]["label"] in {"entailment", "contradiction"}
    assert {item["label"] for item in served["multi_label"]} == {"billing", "bug", "feature_request", "praise"}
    tokens = served["token_classification"]
    assert {item["entity"] for item in tokens} <= {"O", "B-LOC", "I-LOC", "B-PER", "I-PER"} and len(tokens) >= 4
    # The trained weights and calibration are what is served, not some head with the right names:
    # every answer equals the trained folder's own, computed in-process, to 1e-5.
    for task, body in bodies.items():
        runner = folder_runner(trained[task])
        parsed = runner.parse(RequestBody(body["inputs"], body.get("parameters"), is_json=True))
        [expected] = runner.run([parsed]).outcomes
        assert_same_answers(served[task], expected.payload)
