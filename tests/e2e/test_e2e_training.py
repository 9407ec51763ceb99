"""Folders written by hflabels train archive and serve with their label names."""

from __future__ import annotations

import pytest
import torch
import yaml
from support import assert_same_answers, post, script

from handler.api.request_parsing import RequestBody
from handler.api.settings import HandlerSettings
from handler.registry import build_runner
from hflabels.paths import TORCHSERVE_CONFIG
from hflabels.torchserve_config import config_with_free_ports
from hflabels.torchserve_control import start, stop

pytestmark = pytest.mark.e2e


def test_trained_folders_archive_and_serve_with_their_label_names(trained, tmp_path):
    archive_main = script("archive")
    store = tmp_path / "store"
    names = {"single_label": "single", "sentence_pair": "pair", "multi_label": "multi", "token_classification": "ner"}
    # float32, served and in-process: the comparison below is to 1e-5 (dtype auto's choice, made by
    # each process on its own timing, is tested in test_precision.py).
    exact = {}
    for task, folder in trained.items():
        document = yaml.safe_load((folder / "model-config.yaml").read_text(encoding="utf-8"))
        handler = document.get("handler") or {}
        document["handler"] = {**handler, "loading": {**(handler.get("loading") or {}), "dtype": "float32"}}
        config_file = tmp_path / f"{task}.yaml"
        config_file.write_text(yaml.safe_dump(document), encoding="utf-8")
        exact[task] = HandlerSettings.from_mapping(document["handler"])
        arguments = [str(folder), "--name", names[task], "--export-path", str(store), "--config", str(config_file)]
        assert archive_main(arguments) == 0
    config = config_with_free_ports(TORCHSERVE_CONFIG, tmp_path / "config.properties")
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
        runner = build_runner(trained[task], exact[task], torch.device("cpu"))
        assert runner.policy.autocast_dtype is None
        parsed = runner.parse(RequestBody(body["inputs"], body.get("parameters"), is_json=True))
        [expected] = runner.run([parsed]).outcomes
        assert_same_answers(served[task], expected.payload)
