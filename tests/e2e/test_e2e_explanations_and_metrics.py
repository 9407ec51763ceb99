"""/explanations and the handler's metrics over HTTP, against a real torchserve."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from support import JSON, assert_same_answers, post

pytestmark = pytest.mark.e2e


def test_explanations_endpoint_answers_each_request(torchserve):
    url = f"{torchserve.inference_url}/explanations/sentiment"
    headers = {"Authorization": f"Bearer {torchserve.inference_token}", "Content-Type": JSON}
    bodies = [{"inputs": "I loved it"}, {"inputs": "The package arrived on Tuesday in Paris."}]
    with ThreadPoolExecutor(2) as pool:
        responses = list(
            pool.map(lambda b: requests.post(url, data=json.dumps(b), headers=headers, timeout=120), bodies)
        )
    assert [r.status_code for r in responses] == [200, 200]
    first, second = (r.json() for r in responses)
    assert first["tokens"][0] == "i" and second["tokens"][:2] == ["the", "package"]
    assert {"target", "target_score", "tokens", "offsets", "attributions", "delta"} <= set(first)


def metric_values(server, model: str = "sentiment") -> dict[tuple[str, str], float]:
    """Prometheus samples of one model, keyed by (name, reason)."""
    values: dict[tuple[str, str], float] = {}
    text = requests.get(f"{server.metrics_url}/metrics", timeout=10).text
    for line in text.splitlines():
        match = re.match(r"(\w+)\{(.*)\} ([0-9.eE+-]+)$", line)
        if match and f'ModelName="{model}"' in match.group(2):
            reason = re.search(r'Reason="(\w+)"', match.group(2))
            values[(match.group(1), reason.group(1) if reason else "")] = float(match.group(3))
    return values


def test_custom_metrics_count_what_the_handler_did(torchserve, sentiment_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(sentiment_model)
    texts = ["I loved it", "The package arrived on Tuesday in Paris.", "great " * 200]
    before = metric_values(torchserve)
    assert post(torchserve, "sentiment", {"inputs": texts[:2]}).status_code == 200
    assert post(torchserve, "sentiment", {"inputs": texts[2]}).status_code == 200
    assert post(torchserve, "sentiment", b'{"inputs": ').status_code == 400
    assert post(torchserve, "sentiment", {"inputs": "x", "parameters": {"top_k": 0}}).status_code == 400
    after = metric_values(torchserve)

    def grew(name, reason=""):
        return after.get((name, reason), 0.0) - before.get((name, reason), 0.0)

    tokens = sum(len(ids) for ids in tokenizer(texts, truncation=True, max_length=64)["input_ids"])
    assert grew("RequestsTotal") == 4
    assert grew("InputsTotal") == 3
    assert grew("TokensTotal") == tokens
    assert grew("PaddedTokensTotal") >= tokens
    assert grew("TruncatedInputsTotal") == 1
    assert grew("ClientErrorsTotal", "malformed_json") == 1
    assert grew("ClientErrorsTotal", "invalid_parameter") == 1
    assert 2 <= grew("BatchesTotal") <= 4


def test_the_measured_execution_is_exposed_as_gauges(torchserve):
    assert post(torchserve, "sentiment", {"inputs": "I loved it"}).status_code == 200
    values = metric_values(torchserve)
    assert values[("PackedForward", "")] in (0.0, 1.0)
    assert values[("BatchOverheadTokens", "")] >= 0


def test_a_repeated_request_is_served_from_the_cache_and_counted(torchserve):
    body = {"inputs": ["The cache keeps this answer.", "And this one."], "parameters": {"top_k": None}}
    before = metric_values(torchserve, "cached")
    first = post(torchserve, "cached", body)
    second = post(torchserve, "cached", body)
    fresh = post(torchserve, "cached", {**body, "options": {"use_cache": False}})
    assert first.status_code == second.status_code == fresh.status_code == 200
    assert second.content == first.content == fresh.content
    # The same model without a cache computes the same answer. Not the same bytes: each worker
    # chooses packed or padded passes at load by timing them, and the two agree to float32
    # rounding, not bit for bit (CI once saw one choose each).
    assert_same_answers(post(torchserve, "sentiment", body).json(), first.json(), tolerance=1e-6)

    def growth():
        after = metric_values(torchserve, "cached")
        return tuple(after.get((name, ""), 0.0) - before.get((name, ""), 0.0)
                     for name in ("CacheHitsTotal", "CacheMissesTotal"))  # fmt: skip

    # The frontend reads the worker's metric lines as they come: give it a moment.
    deadline = time.monotonic() + 10
    while growth() != (1, 1) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert growth() == (1, 1)
