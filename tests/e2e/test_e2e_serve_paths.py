"""`hflabels serve start` with an archive given by a path, and a refused archive reported at once
with this run's log lines."""

from __future__ import annotations

import time

import pytest
import requests
from support import script

from hflabels.archiving import archive
from hflabels.paths import TORCHSERVE_CONFIG
from hflabels.torchserve_config import config_with_free_ports
from hflabels.torchserve_control import server_for, stop

pytestmark = pytest.mark.e2e


def test_an_archive_outside_the_store_is_served_and_a_broken_one_refused_at_once(sentiment_model, tmp_path, capsys):
    built = archive(sentiment_model, "reviews", export_path=tmp_path / "elsewhere")
    config = config_with_free_ports(TORCHSERVE_CONFIG, tmp_path / "config.properties")
    store, run_dir = tmp_path / "store", tmp_path / "run"
    serve = script("serve")
    base = ["--config", str(config), "--run-dir", str(run_dir)]
    try:
        assert serve([*base, "start", f"reviews={built.path}", "--model-store", str(store)]) == 0
        out = capsys.readouterr().out
        assert "inference token in" in out and "key_file.json" in out
        server = server_for(config, run_dir)
        answer = requests.post(server.predictions_url("reviews"), json={"inputs": "I loved it"},
                               headers=server.auth(server.inference_token), timeout=30)  # fmt: skip
        assert answer.status_code == 200 and "label" in answer.json()
        assert serve([*base, "status"]) == 0
        status = capsys.readouterr().out
        assert "reviews: 1 READY worker(s)" in status and "curl" in status
    finally:
        stop(run_dir)
    broken = tmp_path / "broken.mar"
    broken.write_bytes(b"not a zip archive")
    started = time.monotonic()
    try:
        assert serve([*base, "start", f"broken={broken}", "--model-store", str(store), "--timeout", "120"]) == 1
    finally:
        stop(run_dir)
    error = capsys.readouterr().err
    assert time.monotonic() - started < 60, "refused at once, not after the timeout"
    assert "broken" in error and "reviews" not in error, error  # this run's lines only


def test_the_renaming_path_end_to_end_train_archive_serve_evaluate(trained, tmp_path, capsys):
    """A folder hflabels train wrote, archived under new label names, served by torchserve and
    evaluated over HTTP: the calibration follows the names, and evaluate reads the answers back."""
    import json

    folder = trained["single_label"]
    mapping = tmp_path / "mine.json"
    mapping.write_text(json.dumps({"0": "NEG", "1": "NEU", "2": "POS"}))
    store, run_dir = tmp_path / "store", tmp_path / "run"
    assert script("archive")([str(folder), "--name", "renamed", "--mapping", str(mapping),
                              "--export-path", str(store)]) == 0  # fmt: skip
    config = config_with_free_ports(TORCHSERVE_CONFIG, tmp_path / "config.properties")
    base = ["--config", str(config), "--run-dir", str(run_dir)]
    data = tmp_path / "data.csv"
    rows = ["the staff were lovely,positive", "the soup was cold,negative", "it opens at nine,neutral"]
    data.write_text("text,label\n" + "\n".join(rows) + "\n")
    try:
        assert script("serve")([*base, "start", "renamed", "--model-store", str(store)]) == 0
        server = server_for(config, run_dir)
        answer = requests.post(server.predictions_url("renamed"), json={"inputs": "x", "parameters": {"top_k": None}},
                               headers=server.auth(server.inference_token), timeout=30).json()  # fmt: skip
        assert {item["label"] for item in answer} == {"NEG", "NEU", "POS"}
        capsys.readouterr()
        evaluate = ["--url", server.predictions_url("renamed"), "--token-file", str(server.key_file), "--data",
                    str(data), "--task", "single_label", "--model-dir", str(folder)]  # fmt: skip
        assert script("evaluate")(evaluate) == 2
        refused = capsys.readouterr()
        assert "--mapping FILE" in refused.err and "accuracy" not in refused.out
        assert script("evaluate")([*evaluate, "--mapping", str(mapping)]) == 0
        out = capsys.readouterr().out
        assert "accuracy" in out and "all 3 served predictions equal the model folder's" in out
    finally:
        stop(run_dir)
