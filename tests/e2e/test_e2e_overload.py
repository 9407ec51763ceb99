"""Past capacity, TorchServe must say "busy" quickly: at 512 concurrent clients against a worker
that serves a fraction of that, every request gets a 200 or a 503 within responseTimeout, none
hangs or loses its connection, the worker's memory stays bounded, and right after the storm the
server answers normally. Bounded: about 10 s of load."""

from __future__ import annotations

import asyncio
import json
import time

import psutil
import pytest
import requests

from hflabels.archiving import archive
from hflabels.paths import TORCHSERVE_CONFIG
from hflabels.torchserve_config import config_with_free_ports, read_properties, write_properties
from hflabels.torchserve_control import start, stop
from lab.load import _closed_loop

pytestmark = pytest.mark.e2e

CLIENTS = 512
QUEUE = 64
RESPONSE_TIMEOUT = 20


def worker_rss(server) -> float:
    pid = int((server.run_dir / "tmp" / ".model_server.pid").read_text().strip())
    workers = [
        p for p in psutil.Process(pid).children(recursive=True) if "model_service_worker" in " ".join(p.cmdline())
    ]
    return sum(worker.memory_info().rss for worker in workers) / 2**20


def test_512_clients_get_answers_or_busy_and_the_server_recovers(tmp_path, sentiment_model):
    store = tmp_path / "store"
    document = {"minWorkers": 1, "maxWorkers": 1, "batchSize": 32, "maxBatchDelay": 1,
                "responseTimeout": RESPONSE_TIMEOUT, "handler": {}}  # fmt: skip
    archive(sentiment_model, "busy", document=document, export_path=store)
    config = config_with_free_ports(TORCHSERVE_CONFIG, tmp_path / "config.properties")
    properties = read_properties(config)
    properties["job_queue_size"] = str(QUEUE)
    write_properties(config, properties)
    server = start(config, store, ["busy=busy.mar"], tmp_path / "run", timeout=300)
    try:
        url, token = server.predictions_url("busy"), server.inference_token
        body = [json.dumps({"inputs": "The staff were friendly and the room was spotless."}).encode()]
        memory_before = worker_rss(server)
        storm = asyncio.run(_closed_loop(url, token, body, CLIENTS, duration=10.0))
        statuses = {status for _, status in storm["timeline"]}
        assert statuses <= {200, 503}, f"statuses {statuses} (0: no HTTP answer at all)"
        assert 503 in statuses and 200 in statuses, "the queue overflowed and requests were still served"
        assert max(storm["latencies_ms"]) < RESPONSE_TIMEOUT * 1000
        assert worker_rss(server) < memory_before + 300
        started = time.monotonic()
        after = requests.post(url, data=body[0], headers={"Content-Type": "application/json", **server.auth(token)},
                              timeout=30)  # fmt: skip
        assert after.status_code == 200 and time.monotonic() - started < 2.0
    finally:
        stop(tmp_path / "run")
