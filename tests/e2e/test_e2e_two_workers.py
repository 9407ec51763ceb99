"""Two workers sharing the cores, served by a real torchserve whose OpenMP threads sleep soon
(GOMP_SPINCOUNT=10000): each worker takes its share of the threads, a lone request borrows the
idle worker's where torch sees more than one core (loading.borrow_idle_cores auto,
handler/engine/core_sharing.py), and lone and
concurrent requests alike are answered as the model folder answers in-process."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import torch
from support import call, load_handler

from hflabels.archiving import archive
from hflabels.paths import TORCHSERVE_CONFIG
from hflabels.torchserve_config import config_with_free_ports
from hflabels.torchserve_control import start, stop

pytestmark = pytest.mark.e2e

EXACT = {"loading": {"dtype": "float32", "float32_linear": "torch"}, "batching": {"packed_forward": False}}
BORROWING = "a batch of one request runs on all"
TEXTS = [f"Review {index}: the plot was {'gripping' if index % 2 else 'dull'} and the cast {word}."
         for index, word in enumerate(["shone", "slept", "tried", "sang", "waited", "won", "lost", "laughed"] * 2)]


def workers_borrowing(log, wanted: int, timeout: float = 120.0) -> int:
    """How many workers said at load that a lone request borrows (waits for ``wanted``)."""
    deadline = time.monotonic() + timeout
    while True:
        said = log.read_text(encoding="utf-8", errors="replace").count(BORROWING) if log.exists() else 0
        if said >= wanted or time.monotonic() > deadline:
            return said
        time.sleep(0.5)


def test_two_workers_borrow_idle_cores_and_answer_as_the_folder(tmp_path, sentiment_model):
    # Where torch sees one core the two workers have nothing to share, and must still answer alike.
    sharing = torch.get_num_threads() >= 2
    handler, context = load_handler(sentiment_model, EXACT)
    expected = [body for _, body in call(handler, context, [("application/json", {"inputs": text}) for text in TEXTS])]
    store = tmp_path / "store"
    document = {"minWorkers": 2, "maxWorkers": 2, "batchSize": 8, "maxBatchDelay": 1, "handler": EXACT}
    archive(sentiment_model, "pair", document=document, export_path=store)
    config = config_with_free_ports(TORCHSERVE_CONFIG, tmp_path / "config.properties")
    server = start(config, store, ["pair=pair.mar"], tmp_path / "run", environment={"GOMP_SPINCOUNT": "10000"})
    try:
        log = tmp_path / "run" / "logs" / "model_log.log"
        if sharing:
            assert workers_borrowing(log, 2) == 2
        url, headers = server.predictions_url("pair"), server.auth(server.inference_token)

        def ask(text: str) -> tuple[int, object]:
            response = requests.post(url, json={"inputs": text}, headers=headers, timeout=60)
            return response.status_code, response.json()

        lone = [ask(text) for text in TEXTS[:4]]
        with ThreadPoolExecutor(len(TEXTS)) as clients:
            together = list(clients.map(ask, TEXTS))
        for (status, body), wanted in zip(lone + together, expected[:4] + expected):
            assert status == 200
            assert body["label"] == wanted["label"] and body["score"] == pytest.approx(wanted["score"], abs=1e-5)
        if not sharing:
            assert workers_borrowing(log, 1, timeout=0) == 0
    finally:
        stop(tmp_path / "run")
