"""Load without loss: every one of many concurrent requests gets the answer for its own input."""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from support import JSON, TEXT, assert_same_answers, call_one, load_handler
from tiny_models import CORPUS

pytestmark = pytest.mark.e2e

REQUESTS = 1200
CLIENTS = 32


def workload(seed: int = 7) -> list[tuple[str, object]]:
    """Unique inputs of 5-60 words in five request shapes: (content type, body)."""
    rng = random.Random(seed)
    words = " ".join(CORPUS).split()

    def text(i: int) -> str:
        return f"request {i}: " + " ".join(rng.choice(words) for _ in range(rng.randint(5, 60)))

    bodies: list[tuple[str, object]] = []
    for i in range(REQUESTS):
        shape = i % 5
        if shape == 0:
            bodies.append((TEXT, text(i)))
        elif shape == 1:
            bodies.append((JSON, {"inputs": text(i)}))
        elif shape == 2:
            bodies.append((JSON, {"inputs": [text(i) + f" part {k}" for k in range(rng.randint(1, 3))]}))
        elif shape == 3:
            bodies.append((JSON, {"inputs": text(i), "parameters": {"top_k": None}}))
        else:
            bodies.append(
                (JSON, {"inputs": {"text": text(i), "text_pair": text(i + REQUESTS)}, "parameters": {"top_k": 2}})
            )
    return bodies


def test_many_concurrent_requests_lose_nothing_and_mix_nothing_up(torchserve, sentiment_model):
    bodies = workload()
    handler, context = load_handler(sentiment_model)
    expected = [call_one(handler, context, body, content_type) for content_type, body in bodies]
    assert all(status == 200 for status, _ in expected)

    sessions = threading.local()
    url = torchserve.predictions_url("sentiment")
    token = torchserve.inference_token

    def send(item: tuple[str, object]) -> tuple[int, object]:
        content_type, body = item
        if not hasattr(sessions, "session"):
            sessions.session = requests.Session()
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        response = sessions.session.post(
            url, data=data, headers={"Content-Type": content_type, "Authorization": f"Bearer {token}"}, timeout=60
        )
        return response.status_code, response.json()

    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        answers = list(pool.map(send, bodies))
    elapsed = time.monotonic() - started

    assert len(answers) == REQUESTS, "lost responses"
    server_errors = [i for i, (status, _) in enumerate(answers) if status >= 500]
    assert server_errors == []
    assert [status for status, _ in answers] == [200] * REQUESTS
    for (_, answer), (_, reference) in zip(answers, expected):
        assert_same_answers(answer, reference)  # its own input's answer: nothing misrouted
    assert elapsed < 60
