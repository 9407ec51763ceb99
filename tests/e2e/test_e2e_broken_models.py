"""Broken models that reach torchserve anyway: initialize() fails with archive.py's message."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
import yaml
from support import post

from hflabels.archiving import ArchiveError, archive, build
from hflabels.paths import TORCHSERVE_CONFIG
from hflabels.torchserve_config import config_with_free_ports
from hflabels.torchserve_control import ServeError, start, stop

pytestmark = pytest.mark.e2e

FRONTEND = {"minWorkers": 1, "maxWorkers": 1, "batchSize": 4, "maxBatchDelay": 5, "maxRetryTimeoutInSec": 5}


def breakages(model_dir: Path) -> dict[str, tuple[Path, dict]]:
    """name -> (a broken copy of the folder, its handler settings)."""

    def copy(name: str) -> Path:
        target = model_dir.parent / f"broken_{name}"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(model_dir, target)
        return target

    gap = copy("gap")
    (gap / "index_to_name.json").write_text(json.dumps({"0": "a", "2": "c", "3": "d"}))
    weightless = copy("weightless")
    (weightless / "model.safetensors").unlink()
    no_tokenizer = copy("no_tokenizer")
    (no_tokenizer / "tokenizer.json").unlink()
    return {
        "gap": (gap, {}),
        "weightless": (weightless, {}),
        "no_tokenizer": (no_tokenizer, {}),
        "wrongtask": (copy("wrongtask"), {"task": "token_classification"}),
        "badsetting": (copy("badsetting"), {"max_len": 3}),
    }


def without_folder(message: str) -> str:
    return re.sub(r"^/[^:]*: ", "MODEL_DIR: ", message)


def archive_message(model_dir: Path, settings: dict, tmp_path: Path) -> str:
    """What hflabels archive says about the folder (it refuses to archive it)."""
    config = tmp_path / f"{model_dir.name}.yaml"
    config.write_text(yaml.safe_dump({"handler": settings}))
    with pytest.raises(ArchiveError) as refused:
        archive(model_dir, "x", config=config, export_path=tmp_path)
    return str(refused.value)


@pytest.fixture(scope="module")
def broken_server(tmp_path_factory, sentiment_model):
    root = tmp_path_factory.mktemp("broken")
    models = breakages(shutil.copytree(sentiment_model, root / "models" / "sentiment"))
    store = root / "store"
    for name, (folder, settings) in models.items():
        mapping = folder / "index_to_name.json"
        build(folder, name, {**FRONTEND, "handler": settings}, mapping if mapping.exists() else None, store)
    build(sentiment_model, "fine", {**FRONTEND, "handler": {"task": "sequence_classification"}}, None, store)
    config = config_with_free_ports(TORCHSERVE_CONFIG, root / "config.properties")
    specs = [f"{name}={name}.mar" for name in [*models, "fine"]]
    server = start(config, store, specs, root / "run", timeout=300, wait_for=["fine"])
    yield server, models, root
    stop(root / "run")


def test_each_broken_model_fails_to_load_with_archive_py_s_message(broken_server, tmp_path):
    server, models, _ = broken_server
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and set(server.load_failures()) < set(models):
        time.sleep(1)
    failures = server.load_failures()
    for name, (folder, settings) in models.items():
        assert name in failures, f"{name} never reported a load failure"
        # The same message, but for the folder's path: the user's in archive.py, TorchServe's
        # unpacked copy (/tmp/models/<hash>) in the model log.
        assert without_folder(failures[name][0]) == without_folder(archive_message(folder, settings, tmp_path)), name


def test_a_broken_model_has_no_ready_worker_and_the_others_are_served(broken_server):
    """TorchServe queues requests for a model with no worker and never answers them (until the
    client gives up), so the signal is the worker status, and the load error in the model log."""
    server, models, _ = broken_server
    for name in models:
        assert server.ready_workers(name) == 0
        assert all(worker["status"] != "READY" for worker in server.describe_model(name)[0]["workers"])
    assert post(server, "fine", {"inputs": "x"}).status_code == 200


def test_torchserve_stops_retrying_a_broken_model(broken_server):
    server, _, _ = broken_server
    deadline = time.monotonic() + 90
    counts, stable_since = None, time.monotonic()
    while time.monotonic() < deadline:
        now = {name: len(lines) for name, lines in server.load_failures().items()}
        if now != counts:
            counts, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since > 10:
            break
        time.sleep(1)
    assert time.monotonic() - stable_since > 10, f"still retrying: {counts}"
    assert all(1 <= count <= 12 for count in counts.values()), counts


def test_serve_start_fails_fast_with_the_message(sentiment_model, tmp_path):
    folder = shutil.copytree(sentiment_model, tmp_path / "model")
    (folder / "index_to_name.json").write_text('{"0": "only one"}')
    build(folder, "broken", {**FRONTEND, "handler": {}}, folder / "index_to_name.json", tmp_path / "store")
    config = config_with_free_ports(TORCHSERVE_CONFIG, tmp_path / "config.properties")
    started = time.monotonic()
    with pytest.raises(ServeError) as failed:
        start(config, tmp_path / "store", ["broken=broken.mar"], tmp_path / "run", timeout=120)
    assert "index_to_name.json: has 1 labels but the model has num_labels=3" in str(failed.value)
    assert time.monotonic() - started < 90
