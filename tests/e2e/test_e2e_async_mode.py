"""The async worker mode (``asyncCommunication: true``) against a real torchserve: answers equal to
the classic mode's, a bad request a 4xx while the requests beside it are served, kept-alive
connections that go on working (each answer ends its chunked response), overload answered 503,
and the frontend's job map left empty after thousands of requests (TorchServe 0.12.0 keeps every
answered job unless the worker ends it: handler/serving/async_worker.py)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess

import pytest
import requests
from support import assert_same_answers

from hflabels.archiving import archive
from hflabels.paths import TORCHSERVE_CONFIG
from hflabels.torchserve_config import config_with_free_ports
from hflabels.torchserve_control import start, stop
from lab.load import _closed_loop, bodies_run

pytestmark = pytest.mark.e2e

TEXTS = ["The staff were friendly and the room was spotless.", "Never again.", "It was fine, I guess.", "great"]
ASYNC = {"asyncCommunication": True, "batchSize": 1, "jobQueueSize": 16, "handler": {"loading": {"dtype": "float32"}}}
CLASSIC = {"batchSize": 8, "maxBatchDelay": 5, "handler": {"loading": {"dtype": "float32"}}}


@pytest.fixture(scope="module")
def servers(tmp_path_factory, sentiment_model):
    """The same model served in the async mode and in the classic mode, side by side."""
    root = tmp_path_factory.mktemp("async-mode")
    store = root / "store"
    archive(sentiment_model, "fast", document=ASYNC, export_path=store)
    archive(sentiment_model, "classic", document=CLASSIC, export_path=store)
    config = config_with_free_ports(TORCHSERVE_CONFIG, root / "config.properties")
    server = start(config, store, ["fast=fast.mar", "classic=classic.mar"], root / "run", timeout=300)
    try:
        yield server
    finally:
        stop(root / "run")


def post(server, model, body, session=None):
    headers = {"Content-Type": "application/json", **server.auth(server.inference_token)}
    return (session or requests).post(server.predictions_url(model), data=json.dumps(body), headers=headers, timeout=30)


def test_answers_equal_the_classic_modes_and_a_bad_request_fails_alone(servers):
    bodies = [{"inputs": text} for text in TEXTS] + [{"inputs": 5}, {"inputs": TEXTS[:2]}, {"inputs": ""}]

    async def together(model):
        return await asyncio.gather(*(asyncio.to_thread(post, servers, model, body) for body in bodies))

    fast, classic = asyncio.run(together("fast")), asyncio.run(together("classic"))
    for mine, theirs in zip(fast, classic):
        # Scores to the fp32 bar: the two modes batch the requests differently (other pass shapes).
        assert mine.status_code == theirs.status_code
        assert_same_answers(mine.json(), theirs.json())
        assert mine.headers["Content-Type"].startswith("application/json")
    statuses = [response.status_code for response in fast]
    assert statuses.count(200) == len(TEXTS) + 1 and set(statuses[len(TEXTS):]) - {200} == {400}
    assert all("error" in response.json() for response in fast if response.status_code != 200)


def test_a_kept_alive_connection_serves_request_after_request_and_survives_an_error(servers):
    session = requests.Session()
    answers = [post(servers, "fast", {"inputs": TEXTS[i % len(TEXTS)]}, session) for i in range(200)]
    assert {response.status_code for response in answers} == {200}
    assert post(servers, "fast", {"inputs": 5}, session).status_code == 400
    assert post(servers, "fast", {"inputs": "and after the error"}, session).status_code == 200


def test_beyond_job_queue_size_requests_are_answered_503_and_the_rest_200(servers):
    body = [json.dumps({"inputs": "The staff were friendly and the room was spotless. " * 20}).encode()]
    headers_token = servers.inference_token
    storm = asyncio.run(_closed_loop(servers.predictions_url("fast"), headers_token, body, 96, duration=4.0))
    statuses = {status for _, status in storm["timeline"]}
    assert statuses <= {200, 503}, f"statuses {statuses} (0: no HTTP answer)"
    assert 200 in statuses and 503 in statuses
    assert post(servers, "fast", {"inputs": "calm again"}).status_code == 200


@pytest.mark.skipif(shutil.which("jcmd") is None, reason="jcmd (the JDK's) counts the frontend's live jobs")
def test_the_frontend_keeps_no_job_once_its_request_is_answered(servers):
    bodies = [json.dumps({"inputs": text}).encode() for text in TEXTS] + [json.dumps({"inputs": 5}).encode()]
    run = bodies_run(servers.predictions_url("fast"), servers.inference_token, bodies, 8, 6.0)
    assert run["requests"] > 500
    # A class histogram runs a full GC first: what it counts is what the frontend still holds.
    histogram = subprocess.run(["jcmd", str(servers.frontend_pid()), "GC.class_histogram"], capture_output=True,
                               text=True, timeout=60, check=True).stdout  # fmt: skip
    jobs = sum(int(line.split()[1]) for line in histogram.splitlines() if line.rstrip().endswith("job.RestJob"))
    assert jobs < 20, f"{jobs} RestJob objects alive after {run['requests']} answered requests"
