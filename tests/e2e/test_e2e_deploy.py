"""Updating a served model under load (hflabels serve deploy / rollback): no request lost, no 5xx,
every answer right for the version that gave it, and versions that fail never take traffic."""

from __future__ import annotations

import json
import shutil
import threading
import time

import pytest
import requests
from conftest import REPO_ROOT
from support import script

from hflabels.archiving import archive, build
from hflabels.deployment import DeployError, archive_version, deploy, predictions, rollback
from hflabels.paths import TORCHSERVE_CONFIG
from hflabels.torchserve_config import config_with_free_ports
from hflabels.torchserve_control import start, stop

pytestmark = pytest.mark.e2e

MAPPINGS = REPO_ROOT / "mappings"
TO_GERMAN = {"negative": "negativ", "neutral": "neutral", "positive": "positiv"}
TEXTS = [
    "The staff were friendly.", "I hated the food, it was cold and bland.", "The package arrived on Tuesday.",
    "What a fantastic movie, I would watch it again!", "Our train to Amsterdam was delayed by two hours.",
    "The meeting was fine, nothing special happened.", "The weather in London is rainy and grey today.",
]  # fmt: skip
FRONTEND = {"minWorkers": 1, "maxWorkers": 1, "batchSize": 8, "maxBatchDelay": 5, "responseTimeout": 30}


@pytest.fixture(scope="module")
def served(tmp_path_factory, sentiment_model):
    root = tmp_path_factory.mktemp("deploy")
    store = root / "store"
    document = {**FRONTEND, "handler": {}}
    archive(sentiment_model, "reviews", document=document, export_path=store, mapping=MAPPINGS / "sentiment_3way.json")
    german = archive(sentiment_model, "reviews", document=document, export_path=root / "v2", version="2.0",
                     mapping=MAPPINGS / "sentiment_3way.de.json").path  # fmt: skip
    config = config_with_free_ports(TORCHSERVE_CONFIG, root / "config.properties")
    server = start(config, store, ["reviews=reviews.mar"], root / "run", timeout=300)
    yield server, store, german, root
    stop(root / "run")


def ask(server, body, content_type="application/json"):
    data = body if isinstance(body, str) else json.dumps(body)
    headers = {"Content-Type": content_type, **server.auth(server.inference_token)}
    return requests.post(server.predictions_url("reviews"), data=data.encode(), headers=headers, timeout=60)


def broken_version(model_dir, tmp_path, version, breakage):
    """An archive built without the archive checks, so that it fails only when TorchServe loads it."""
    folder = shutil.copytree(model_dir, tmp_path / f"broken-{version}")
    handler = {}
    if breakage == "mapping":
        (folder / "index_to_name.json").write_text(json.dumps({"0": "only", "1": "two"}))
    else:
        handler = {"task": "token_classification"}
    mapping = folder / "index_to_name.json" if breakage == "mapping" else None
    return build(folder, "reviews", {**FRONTEND, "handler": handler}, mapping, tmp_path / f"out-{version}",
                 version=version)  # fmt: skip


def test_deploy_and_rollback_under_load_lose_nothing(served, sentiment_model, tmp_path):
    server, store, german, root = served
    broken = broken_version(sentiment_model, tmp_path, "9.0", "mapping")
    english = dict(zip(TEXTS, predictions(server, "reviews", "1.0", TEXTS)))
    shapes = [({"inputs": text}, "application/json") for text in TEXTS] + [
        ({"inputs": TEXTS[:3]}, "application/json"), (TEXTS[4], "text/plain"),
    ]  # fmt: skip
    answers: list[tuple[float, int, list[str], list[str]]] = []  # (time, status, labels, texts)
    done = threading.Event()

    def client(offset: int) -> None:
        k = offset
        while not done.is_set():
            body, content_type = shapes[k % len(shapes)]
            k += 1
            texts = body if isinstance(body, str) else body["inputs"]
            texts = [texts] if isinstance(texts, str) else texts
            response = ask(server, body, content_type)
            labels = []
            if response.status_code == 200:
                result = response.json()
                labels = [item["label"] for item in (result if isinstance(result, list) else [result])]
            answers.append((time.monotonic(), response.status_code, labels, texts))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2)
        # A version that cannot load, tried under the same traffic, must leave it untouched.
        with pytest.raises(DeployError, match="version 9.0 was not deployed"):
            deploy(server, "reviews", broken, store)
        refused = time.monotonic()
        deployed = deploy(server, "reviews", german, store)
        switched = time.monotonic()
        time.sleep(3)
        rolled = rollback(server, "reviews")
        rolled_back = time.monotonic()
        time.sleep(2)
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=60)
    assert deployed.version == "2.0" and deployed.previous == "1.0" and rolled.version == "1.0"
    assert len(answers) > 100
    assert [status for _, status, _, _ in answers if status != 200] == []
    versions = []
    for at, _, labels, texts in answers:
        if labels == [english[text] for text in texts]:
            versions.append((at, "1.0"))
        else:
            assert labels == [TO_GERMAN[english[text]] for text in texts], (labels, texts)
            versions.append((at, "2.0"))
    german_times = [at for at, version in versions if version == "2.0"]
    assert german_times, "the new version answered"
    # The switch point: German answers only once it was the default, none after the rollback settled.
    assert min(german_times) >= switched - 1.0 and max(german_times) <= rolled_back + 1.0
    assert sum(1 for at, _, _, _ in answers if at <= refused) > 20, "traffic flowed while the bad version was tried"
    assert versions[-1][1] == "1.0"


@pytest.mark.parametrize(("breakage", "version"), [("mapping", "3.0"), ("task", "3.1")])
def test_a_version_that_cannot_load_never_takes_traffic(served, sentiment_model, tmp_path, breakage, version):
    server, store, _, _ = served
    broken = broken_version(sentiment_model, tmp_path, version, breakage)
    assert archive_version(broken) == version
    with pytest.raises(DeployError, match=f"version {version} was not deployed: .*; 1.0 still serves"):
        deploy(server, "reviews", broken, store)
    assert ask(server, {"inputs": TEXTS[0]}).json()["label"] in TO_GERMAN
    listed = requests.get(f"{server.management_url}/models/reviews/all",
                          headers=server.auth(server.management_token), timeout=10).json()  # fmt: skip
    assert version not in [v["modelVersion"] for v in listed]


def test_a_version_that_fails_its_probe_is_unregistered(served, sentiment_model, tmp_path):
    from safetensors.torch import load_file, save_file

    server, store, _, _ = served
    english = predictions(server, "reviews", "1.0", TEXTS)
    probe = tmp_path / "probe.csv"
    probe.write_text("text,label\n" + "".join(f'"{t}",{label}\n' for t, label in zip(TEXTS, english)))
    flipped_dir = shutil.copytree(sentiment_model, tmp_path / "flipped")
    weights = load_file(flipped_dir / "model.safetensors")
    weights = {k: (-v if k.startswith("classifier.") else v) for k, v in weights.items()}
    save_file(weights, flipped_dir / "model.safetensors", metadata={"format": "pt"})
    flipped = archive(flipped_dir, "reviews", document={**FRONTEND, "handler": {}}, export_path=tmp_path / "out",
                      version="4.0", mapping=MAPPINGS / "sentiment_3way.json").path  # fmt: skip
    with pytest.raises(DeployError, match=r"accuracy 0\.\d+ is below 0\.900"):
        deploy(server, "reviews", flipped, store, probe_file=probe, min_accuracy=0.9)
    with pytest.raises(DeployError, match="probe labels differ from version 1.0"):
        deploy(server, "reviews", flipped, store, probe_file=probe, expect_same=True)
    assert predictions(server, "reviews", "1.0", TEXTS) == english
    same = archive(sentiment_model, "reviews", document={**FRONTEND, "handler": {}}, export_path=tmp_path / "out",
                   version="5.0", mapping=MAPPINGS / "sentiment_3way.json").path  # fmt: skip
    done = deploy(server, "reviews", same, store, probe_file=probe, min_accuracy=1.0, expect_same=True)
    assert done.probe is not None and done.probe.accuracy == 1.0 and done.probe.changed == 0
    assert rollback(server, "reviews").version == "1.0"


def test_the_command_line_says_why_in_one_line(served, tmp_path, capsys):
    server, store, german, root = served
    serve = script("serve")
    config, run_dir = root / "config.properties", root / "run"
    base = ["--config", str(config), "--run-dir", str(run_dir)]
    assert serve([*base, "rollback", "nothing-here"]) == 1
    assert "nothing-here has no earlier deployed version" in capsys.readouterr().err
    assert serve([*base, "deploy", "reviews", str(german), "--model-store", str(store)]) == 1
    assert "version 2.0 is already registered" in capsys.readouterr().err
