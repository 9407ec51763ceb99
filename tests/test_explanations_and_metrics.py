"""/explanations (integrated gradients) and the custom metrics, in-process and over HTTP."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import torch
from support import JSON, load_handler, post
from ts.context import RequestProcessor

from handler.postprocess.scoring import softmax


def explain(handler, context, bodies):
    context.request_processor = [RequestProcessor({"Content-Type": JSON, "explain": "True"}) for _ in bodies]
    responses = handler.handle([{"body": body} for body in bodies], context)
    return [(context.get_response_status(i)[0], json.loads(body)) for i, body in enumerate(responses)]


def served_scores(runner, ids, position=None):
    """The served softmax scores for token ids, computed without the explainer."""
    with torch.no_grad():
        logits = runner.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()
    logits = logits[0] if position is None else logits[0, position]
    return softmax(logits.numpy())


def baseline_of(runner, ids):
    special = runner.tokenizer.get_special_tokens_mask(ids[0].tolist(), already_has_special_tokens=True)
    return torch.tensor([[i if s else runner.pad_id for i, s in zip(ids[0].tolist(), special)]])


def test_sequence_attributions_add_up_to_the_score_change(sentiment_model):
    handler, context = load_handler(sentiment_model, {"explain_steps": 64})
    text = "The package arrived on Tuesday in Paris."
    [(status, answer)] = explain(handler, context, [{"inputs": text}])
    assert status == 200
    runner = handler.runner
    ids = runner.tokenizer(text, return_tensors="pt")["input_ids"]
    target = runner.labels.index(answer["target"])
    at_input, at_baseline = served_scores(runner, ids)[target], served_scores(runner, baseline_of(runner, ids))[target]
    assert answer["target_score"] == pytest.approx(float(at_input), abs=1e-5)
    assert answer["target"] == runner.labels[int(served_scores(runner, ids).argmax())]
    assert abs(sum(answer["attributions"]) - (at_input - at_baseline)) <= abs(answer["delta"]) + 1e-5
    assert answer["tokens"] == runner.tokenizer.tokenize(text)
    assert [text[s:e].lower() for s, e in answer["offsets"]] == answer["tokens"]


def test_token_attributions_add_up_for_the_chosen_token_and_label(ner_model):
    handler, context = load_handler(ner_model)
    text = "Alice Johnson works in Berlin"
    [(status, answer)] = explain(
        handler, context, [{"inputs": text, "parameters": {"token_index": 2, "target": "I-PER"}}]
    )
    assert status == 200 and answer["token_index"] == 2 and answer["target"] == "I-PER"
    runner = handler.runner
    ids = runner.tokenizer(text, return_tensors="pt")["input_ids"]
    target = runner.labels.index("I-PER")
    change = served_scores(runner, ids, 2)[target] - served_scores(runner, baseline_of(runner, ids), 2)[target]
    assert abs(sum(answer["attributions"]) - change) <= abs(answer["delta"]) + 1e-5


def test_every_request_of_a_batch_gets_its_own_explanation(sentiment_model):
    handler, context = load_handler(sentiment_model)
    results = explain(
        handler,
        context,
        [{"inputs": "I loved it"}, {"inputs": ["meh", "a fantastic movie"], "parameters": {"target": "neutral"}},
         {"inputs": "x", "parameters": {"target": "angry"}}],
    )  # fmt: skip
    assert [status for status, _ in results] == [200, 200, 400]
    tokenize = handler.runner.tokenizer.tokenize
    assert results[0][1]["tokens"] == tokenize("I loved it")
    assert [item["target"] for item in results[1][1]] == ["neutral", "neutral"]
    assert [item["tokens"] for item in results[1][1]] == [tokenize("meh"), tokenize("a fantastic movie")]
    assert "parameters.target must be one of 'negative', 'neutral', 'positive'" in results[2][1]["error"]


def test_explanations_of_other_tasks_are_refused_clearly(qa_model):
    handler, context = load_handler(qa_model)
    [(status, answer)] = explain(handler, context, [{"inputs": {"question": "q", "context": "c"}}])
    assert status == 501
    assert answer["error"] == "explanations are not available for question_answering"


# ---- over HTTP ---------------------------------------------------------------------------------


@pytest.mark.e2e
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


def metric_values(server) -> dict[tuple[str, str], float]:
    """Prometheus samples of the sentiment model, keyed by (name, reason)."""
    values: dict[tuple[str, str], float] = {}
    text = requests.get(f"{server.metrics_url}/metrics", timeout=10).text
    for line in text.splitlines():
        match = re.match(r"(\w+)\{(.*)\} ([0-9.eE+-]+)$", line)
        if match and 'ModelName="sentiment"' in match.group(2):
            reason = re.search(r'Reason="(\w+)"', match.group(2))
            values[(match.group(1), reason.group(1) if reason else "")] = float(match.group(3))
    return values


@pytest.mark.e2e
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
