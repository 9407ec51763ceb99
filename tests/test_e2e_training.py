"""Folders written by hflabels train archive and serve with their label names."""

from __future__ import annotations

import pytest
from conftest import REPO_ROOT
from support import post, script

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
    try:
        single = post(server, "single", {"inputs": "the staff were lovely", "parameters": {"top_k": None}}).json()
        assert {item["label"] for item in single} == {"negative", "neutral", "positive"}
        pair = post(server, "pair", {"inputs": {"text": "a dog runs", "text_pair": "an animal moves"}}).json()
        assert pair["label"] in {"entailment", "contradiction"}
        multi = post(server, "multi", {"inputs": "the app crashes", "parameters": {"top_k": None}}).json()
        assert {item["label"] for item in multi} == {"billing", "bug", "feature_request", "praise"}
        tokens = post(
            server,
            "ner",
            {"inputs": "Alice lives in Paris", "parameters": {"aggregation_strategy": "none", "ignore_labels": []}},
        ).json()
        assert {item["entity"] for item in tokens} <= {"O", "B-LOC", "I-LOC", "B-PER", "I-PER"} and len(tokens) >= 4
    finally:
        stop(tmp_path / "run")
