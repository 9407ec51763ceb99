"""Sequence classification through a real torchserve over HTTP: shapes, parity, batching, errors."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from conftest import REPO_ROOT
from support import JSON, TEXT, assert_same_answers, batch_count, post
from transformers import pipeline

pytestmark = pytest.mark.e2e

TEXTS = ["I loved it", "The package arrived on Tuesday in Paris.", "What a fantastic movie, I would watch it again!"]


@pytest.fixture(scope="module")
def sentiment_pipeline(sentiment_model):
    return pipeline("text-classification", model=str(sentiment_model), tokenizer=str(sentiment_model))


def test_raw_text_bodies_get_the_best_label(torchserve, sentiment_pipeline):
    for content_type in (TEXT, "application/octet-stream", "text/plain; charset=utf-8"):
        response = post(torchserve, "sentiment", TEXTS[0], content_type=content_type)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert_same_answers(response.json(), sentiment_pipeline(TEXTS[0])[0])


def test_json_single_list_and_top_k_equal_the_pipeline(torchserve, sentiment_pipeline):
    single = post(torchserve, "sentiment", {"inputs": TEXTS[1]}).json()
    assert_same_answers(single, sentiment_pipeline(TEXTS[1])[0])
    listed = post(torchserve, "sentiment", {"inputs": TEXTS}).json()
    assert_same_answers(listed, [sentiment_pipeline(text)[0] for text in TEXTS])
    for top_k in (2, None):
        answer = post(torchserve, "sentiment", {"inputs": TEXTS, "parameters": {"top_k": top_k}}).json()
        assert_same_answers(answer, sentiment_pipeline(TEXTS, top_k=top_k))
    softmaxless = post(
        torchserve, "sentiment", {"inputs": TEXTS[2], "parameters": {"top_k": None, "function_to_apply": "none"}}
    )
    assert_same_answers(softmaxless.json(), sentiment_pipeline(TEXTS[2], top_k=None, function_to_apply="none"))


def test_sentence_pairs_with_the_nli_mapping(torchserve, nli_model):
    reference = pipeline("text-classification", model=str(nli_model), tokenizer=str(nli_model))
    pairs = [{"text": "A man plays a guitar.", "text_pair": "Someone makes music."}, {"text": "a", "text_pair": "b"}]
    answer = post(torchserve, "nli", {"inputs": pairs, "parameters": {"top_k": None}}).json()
    assert_same_answers(answer, [reference(pair, top_k=None) for pair in pairs])
    assert {item["label"] for item in answer[0]} == {"entailment", "neutral", "contradiction"}
    one = post(torchserve, "nli", {"inputs": pairs[0]}).json()
    assert_same_answers(one, reference(pairs[0]))


def test_multi_label_thresholds_over_http(torchserve, topics_model):
    reference = pipeline("text-classification", model=str(topics_model), tokenizer=str(topics_model))
    text = "I was charged twice and the app crashes"
    scores = {item["label"]: item["score"] for item in reference(text, top_k=None)}
    answer = post(torchserve, "topics", {"inputs": text}).json()
    expected = [
        label for label in sorted(scores, key=lambda name: -scores[name]) if scores[label] >= 0.5 or label == "praise"
    ]
    assert [item["label"] for item in answer] == expected
    assert post(torchserve, "topics", {"inputs": text, "parameters": {"threshold": 1.0}}).json() == []


def test_curl_dash_d_is_refused_with_the_command_to_use(torchserve):
    response = requests.post(
        torchserve.predictions_url("sentiment"),
        data="I loved it",  # requests, like curl -d, sends this form-encoded
        headers={
            "Authorization": f"Bearer {torchserve.inference_token}",
            "Content-Type": "application/x-www-form-urlencoded",
        },
        timeout=30,
    )
    assert response.status_code == 400
    assert "curl -H 'Content-Type: text/plain' --data-binary 'your text' URL" in response.json()["error"]


def test_long_text_is_truncated_and_flagged_in_a_header(torchserve):
    response = post(torchserve, "sentiment", {"inputs": ["great " * 500, "fine"]})
    assert response.status_code == 200
    assert response.headers["x-truncated-inputs"] == "1"
    assert len(response.json()) == 2


def test_a_bad_request_in_a_batch_gets_its_400_and_the_others_their_own_answers(torchserve, sentiment_pipeline):
    requests_in_batch = [
        ({"inputs": TEXTS[0]}, JSON),
        ({"inputs": TEXTS[1], "parameters": {"top_k": 0}}, JSON),
        (b'{"inputs": ', JSON),
        ({"inputs": TEXTS[2], "parameters": {"top_k": 2}}, JSON),
    ]
    before = batch_count(torchserve, "batched")
    with ThreadPoolExecutor(len(requests_in_batch)) as pool:
        responses = list(pool.map(lambda r: post(torchserve, "batched", r[0], content_type=r[1]), requests_in_batch))
    assert batch_count(torchserve, "batched") - before == 1, "the four requests must have shared one batch"
    assert [response.status_code for response in responses] == [200, 400, 400, 200]
    assert_same_answers(responses[0].json(), sentiment_pipeline(TEXTS[0])[0])
    assert_same_answers(responses[3].json(), sentiment_pipeline(TEXTS[2], top_k=2))
    assert responses[1].json() == {"error": "parameters.top_k must be an integer >= 1 or null, got 0"}
    assert responses[2].json()["error"].startswith("malformed JSON: Expecting value")


def test_concurrent_requests_each_get_the_answer_for_their_own_text(torchserve, sentiment_pipeline):
    texts = [f"review number {i}: " + "good " * (i % 7) + "bad " * (i % 3) for i in range(40)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda t: post(torchserve, "sentiment", {"inputs": t, "parameters": {"top_k": None}}), texts)
        )
    for text, response in zip(texts, answers):
        assert response.status_code == 200
        assert_same_answers(response.json(), sentiment_pipeline(text, top_k=None))


def test_archive_script_refuses_a_bad_mapping_with_one_line(sentiment_model, tmp_path):
    mapping = tmp_path / "index_to_name.json"
    mapping.write_text('{"0": "negative", "2": "positive"}')
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "archive.py"), str(sentiment_model), "--name", "x",
         "--mapping", str(mapping), "--export-path", str(tmp_path / "store")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "archive.py: error: index_to_name.json: indices must be 0..1 without gaps; missing [1], unexpected [2]"
    )
    assert not (tmp_path / "store" / "x.mar").exists()


def test_label_sets_over_http(torchserve):
    text = "The staff were friendly."
    main = post(torchserve, "sentiment", {"inputs": text, "parameters": {"top_k": None}}).json()
    french = post(torchserve, "sentiment", {"inputs": text, "parameters": {"top_k": None, "label_set": "fr"}}).json()
    to_french = {"negative": "négatif", "neutral": "neutre", "positive": "positif"}
    assert french == [{"label": to_french[item["label"]], "score": item["score"]} for item in main]
    unknown = post(torchserve, "sentiment", {"inputs": text, "parameters": {"label_set": "es"}})
    assert unknown.status_code == 400 and unknown.json()["error"].endswith("available: de, fr")


def test_a_long_document_is_read_whole_over_http(torchserve):
    document = "The weather in London is rainy and grey today. " * 20
    response = post(torchserve, "sentiment", {"inputs": document, "parameters": {"long_text": "mean"}})
    assert response.status_code == 200 and int(response.headers["x-windows-read"]) > 1
    truncated = post(torchserve, "sentiment", {"inputs": document})
    assert "x-windows-read" not in truncated.headers and truncated.headers["x-truncated-inputs"] == "1"
