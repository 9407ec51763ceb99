"""Whole documents (long_text: mean | max): every window the tokenizer makes is scored and the
scores aggregated; checked against the model's own forward over those windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import assert_same_answers, call, call_one, load_handler
from transformers import AutoModelForSequenceClassification, AutoTokenizer

FILLER = "The weather in London is rainy and grey today. "


@pytest.fixture(scope="module")
def keyword_model(tmp_path_factory):
    from tiny_models import build_keyword_sequence_classifier

    return build_keyword_sequence_classifier(tmp_path_factory.mktemp("keyword") / "model", "wonderful")


def reference_scores(model_dir, text, max_length, stride, how):
    """Softmax of the model's own forward on each tokenizer window, then the mean or max per label."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    encoding = tokenizer(text, truncation=True, max_length=max_length, stride=stride, return_overflowing_tokens=True)
    rows = []
    with torch.no_grad():
        for ids in encoding["input_ids"]:
            logits = model(
                input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long)
            ).logits
            rows.append(torch.softmax(logits[0], -1).numpy())
    rows = np.stack(rows)
    return (rows.max(axis=0) if how == "max" else rows.mean(axis=0)), len(rows)


def test_the_decisive_last_window_decides_with_mean_and_max_but_not_truncated(keyword_model):
    document = FILLER * 3 + "and yet the day was wonderful"
    handler, context = load_handler(keyword_model)
    _, truncated = call_one(handler, context, {"inputs": document})
    assert truncated["label"] == "neutral"
    for how in ("mean", "max"):
        status, answer = call_one(handler, context, {"inputs": document, "parameters": {"long_text": how}})
        assert status == 200 and answer["label"] == "positive", (how, answer)
        assert context.get_response_headers(0)["x-windows-read"] in ("2", "3")


@pytest.mark.parametrize("how", ["mean", "max"])
def test_aggregated_scores_equal_the_models_own_windows(sentiment_model, how):
    document = FILLER * 20 + "Marie Curie won the Nobel Prize in Physics and Chemistry."
    handler, context = load_handler(sentiment_model, {"long_text": how, "stride": 8})
    status, answer = call_one(handler, context, {"inputs": document, "parameters": {"top_k": None}})
    assert status == 200
    expected, windows = reference_scores(sentiment_model, document, handler.runner.max_length, 8, how)
    assert windows > 3
    labels = handler.runner.labels
    for item in answer:
        assert abs(item["score"] - float(expected[labels.index(item["label"])])) <= 1e-5
    assert context.get_response_headers(0)["x-windows-read"] == str(windows)
    _, best = call_one(handler, context, {"inputs": document})
    # Single-label: the label whose aggregate is highest, with that aggregate as its score.
    assert best["label"] == labels[int(expected.argmax())] and abs(best["score"] - float(expected.max())) <= 1e-5


def test_a_request_overrides_the_setting_and_short_texts_are_unchanged(sentiment_model):
    handler, context = load_handler(sentiment_model, {"long_text": "max"})
    plain_handler, plain_context = load_handler(sentiment_model)
    short = "The staff were friendly."
    # Two loads: the fp32 bar, as each times its own pass shapes at load.
    assert_same_answers(
        call_one(handler, context, {"inputs": short}), call_one(plain_handler, plain_context, {"inputs": short})
    )
    document = FILLER * 9
    cut = call_one(handler, context, {"inputs": document, "parameters": {"long_text": "truncate"}})
    assert_same_answers(cut, call_one(plain_handler, plain_context, {"inputs": document}))
    assert "x-windows-read" not in context.get_response_headers(0)


def test_pairs_keep_truncating_and_windows_join_the_batch_passes(sentiment_model):
    handler, context = load_handler(sentiment_model, {"long_text": "mean"})
    plain_handler, plain_context = load_handler(sentiment_model)
    pair = {"inputs": {"text": FILLER * 9, "text_pair": "It rained."}}
    assert_same_answers(call_one(handler, context, pair), call_one(plain_handler, plain_context, pair))
    requests = [("application/json", {"inputs": FILLER * 6}), ("application/json", {"inputs": "Short one."})]
    answers = call(handler, context, requests)
    assert [status for status, _ in answers] == [200, 200]
    from handler.api.request_parsing import RequestBody

    runner = handler.runner
    stats = runner.run(
        [runner.parse(RequestBody(FILLER * 6, None, True)), runner.parse(RequestBody("x", None, True))]
    ).stats
    assert stats.forward_passes == 1  # the document's windows and the short text share one packed pass


def test_bad_long_text_values_are_named(sentiment_model):
    from handler.api.errors import ConfigurationError
    from handler.api.settings import HandlerSettings

    with pytest.raises(ConfigurationError, match="handler.long_text must be one of 'truncate', 'mean', 'max'"):
        HandlerSettings.from_mapping({"long_text": "sum"})
    handler, context = load_handler(sentiment_model)
    status, answer = call_one(handler, context, {"inputs": "x", "parameters": {"long_text": "sum"}})
    assert status == 400 and "parameters.long_text must be one of" in answer["error"]
