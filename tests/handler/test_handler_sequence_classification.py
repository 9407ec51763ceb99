"""The handler in-process (TorchServe's Context, no server) on tiny sequence classifiers."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import NLI_LABELS, SENTIMENT_LABELS
from support import JSON, TEXT, assert_same_answers, call, call_one, load_handler, make_context, write_json
from transformers import pipeline

from handler.api.errors import ConfigurationError
from handler.torchserve_handler import TransformersLabelHandler

TEXTS = [
    "I loved it",
    "The package arrived on Tuesday in Paris.",
    "What a fantastic movie, I would watch it again and again with all of my friends!",
    "meh",
]


@pytest.fixture(scope="module")
def sentiment(sentiment_model):
    return load_handler(sentiment_model)


@pytest.fixture(scope="module")
def sentiment_pipeline(sentiment_model):
    return pipeline("text-classification", model=str(sentiment_model), tokenizer=str(sentiment_model))


def test_default_answer_is_the_best_label_like_the_pipeline(sentiment, sentiment_pipeline):
    handler, context = sentiment
    for text in TEXTS:
        status, answer = call_one(handler, context, {"inputs": text})
        assert status == 200
        assert answer["label"] in SENTIMENT_LABELS
        assert_same_answers(answer, sentiment_pipeline(text)[0])


@pytest.mark.parametrize("top_k", [1, 2, None])
def test_top_k_equals_the_pipeline(sentiment, sentiment_pipeline, top_k):
    handler, context = sentiment
    status, answers = call_one(handler, context, {"inputs": TEXTS, "parameters": {"top_k": top_k}})
    assert status == 200
    assert_same_answers(answers, sentiment_pipeline(TEXTS, top_k=top_k))
    if top_k is None:
        assert all(len(answer) == len(SENTIMENT_LABELS) for answer in answers)


@pytest.mark.parametrize("function", ["sigmoid", "none", "softmax"])
def test_function_to_apply_equals_the_pipeline(sentiment, sentiment_pipeline, function):
    handler, context = sentiment
    _, answer = call_one(
        handler, context, {"inputs": TEXTS[0], "parameters": {"top_k": None, "function_to_apply": function}}
    )
    assert_same_answers(answer, sentiment_pipeline(TEXTS[0], top_k=None, function_to_apply=function))


def test_raw_text_body_is_one_text(sentiment, sentiment_pipeline):
    handler, context = sentiment
    status, answer = call_one(handler, context, TEXTS[1].encode(), content_type=TEXT)
    assert status == 200
    assert_same_answers(answer, sentiment_pipeline(TEXTS[1])[0])


def test_answers_in_a_padded_batch_equal_answers_alone(sentiment):
    handler, context = sentiment
    alone = [call_one(handler, context, {"inputs": text, "parameters": {"top_k": None}})[1] for text in TEXTS]
    together = call(handler, context, [(JSON, {"inputs": text, "parameters": {"top_k": None}}) for text in TEXTS])
    for (status, answer), expected in zip(together, alone):
        assert status == 200
        assert_same_answers(answer, expected)


def test_one_bad_request_fails_alone_and_the_others_get_their_own_answers(sentiment, sentiment_pipeline):
    handler, context = sentiment
    results = call(
        handler,
        context,
        [
            (JSON, {"inputs": TEXTS[0]}),
            (JSON, {"inputs": TEXTS[1], "parameters": {"top_k": 0}}),
            (TEXT, bytearray(b"\xff\xfe")),
            (JSON, {"inputs": TEXTS[2], "parameters": {"top_k": 2}}),
            (JSON, {"inputs": [TEXTS[3], ""]}),
        ],
    )
    assert [status for status, _ in results] == [200, 400, 400, 200, 400]
    assert_same_answers(results[0][1], sentiment_pipeline(TEXTS[0])[0])
    assert_same_answers(results[3][1], sentiment_pipeline(TEXTS[2], top_k=2))
    assert results[1][1] == {"error": "parameters.top_k must be an integer >= 1 or null, got 0"}
    assert "not valid UTF-8" in results[2][1]["error"]
    assert results[4][1] == {"error": "inputs[1] is empty"}
    assert context.get_response_status(1)[1].startswith("parameters.top_k must be")


def test_unknown_parameters_and_thresholds_on_single_label_are_refused(sentiment):
    handler, context = sentiment
    status, answer = call_one(handler, context, {"inputs": "x", "parameters": {"topk": 1}})
    assert (status, answer["error"]) == (
        400,
        "unknown parameters: topk "
        "(allowed: abstain, coverage, function_to_apply, label_set, long_text, raw_scores, return_all_scores, "
        "threshold, top_k, truncate)",
    )
    status, answer = call_one(handler, context, {"inputs": "x", "parameters": {"threshold": 0.3}})
    assert status == 400 and "threshold applies to multi-label models" in answer["error"]


def test_long_texts_are_truncated_and_the_response_says_so(sentiment, sentiment_model):
    handler, context = sentiment
    long_text = "the service was wonderful " * 200
    results = call(handler, context, [(JSON, {"inputs": [long_text, "short", long_text]})])
    assert results[0][0] == 200
    assert context.get_response_headers(0)["x-truncated-inputs"] == "2"
    reference = pipeline("text-classification", model=str(sentiment_model), tokenizer=str(sentiment_model))
    assert_same_answers(results[0][1][0], reference(long_text, truncation=True, max_length=64)[0])


def test_sentence_pairs_equal_the_pipeline(nli_model):
    handler, context = load_handler(nli_model)
    reference = pipeline("text-classification", model=str(nli_model), tokenizer=str(nli_model))
    pairs = [
        {"text": "A man is playing a guitar.", "text_pair": "Someone makes music."},
        {"text": "The cat sleeps.", "text_pair": "The cat is running through the garden."},
    ]
    status, answers = call_one(handler, context, {"inputs": pairs + ["a single text"], "parameters": {"top_k": None}})
    assert status == 200
    assert all(answer[0]["label"] in NLI_LABELS for answer in answers)
    assert_same_answers(answers[:2], [reference(pair, top_k=None) for pair in pairs])
    assert_same_answers(answers[2], reference("a single text", top_k=None))


def test_multi_label_answers_every_label_over_its_threshold(topics_model):
    handler, context = load_handler(topics_model, {"label_thresholds": {"praise": 0.0}})
    reference = pipeline("text-classification", model=str(topics_model), tokenizer=str(topics_model))
    text = "The invoice was charged twice"
    all_scores = {item["label"]: item["score"] for item in reference(text, top_k=None)}
    status, answer = call_one(handler, context, {"inputs": text})
    assert status == 200
    expected = sorted(
        (label for label, score in all_scores.items() if score >= 0.5 or label == "praise"),
        key=lambda label: -all_scores[label],
    )
    assert [item["label"] for item in answer] == expected
    assert "praise" in expected  # the per-label threshold of 0 always reaches
    for item in answer:
        assert item["score"] == pytest.approx(all_scores[item["label"]], abs=1e-5)


def test_multi_label_request_threshold_applies_to_every_label(topics_model):
    handler, context = load_handler(topics_model, {"label_thresholds": {"praise": 0.0}})
    _, nothing = call_one(handler, context, {"inputs": "anything", "parameters": {"threshold": 1.0}})
    _, everything = call_one(handler, context, {"inputs": "anything", "parameters": {"threshold": 0.0}})
    assert nothing == []
    assert len(everything) == 4
    assert [item["score"] for item in everything] == sorted((item["score"] for item in everything), reverse=True)


def test_multi_label_top_k_null_equals_the_pipeline(topics_model):
    handler, context = load_handler(topics_model)
    reference = pipeline("text-classification", model=str(topics_model), tokenizer=str(topics_model))
    _, answer = call_one(handler, context, {"inputs": TEXTS[0], "parameters": {"top_k": None}})
    assert_same_answers(answer, reference(TEXTS[0], top_k=None))


def test_one_label_model_answers_its_label_with_a_sigmoid_score(one_label_model):
    handler, context = load_handler(one_label_model)
    reference = pipeline("text-classification", model=str(one_label_model), tokenizer=str(one_label_model))
    _, answer = call_one(handler, context, {"inputs": "you are wonderful"})
    assert answer["label"] == "toxic"
    assert_same_answers(answer, reference("you are wonderful")[0])


def test_a_mapping_file_names_the_labels(unnamed_sentiment_model, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(unnamed_sentiment_model, model_dir)
    write_json(model_dir / "index_to_name.json", {"0": "negative", "1": "neutral", "2": "positive"})
    handler, context = load_handler(model_dir)
    _, answer = call_one(handler, context, {"inputs": "fine", "parameters": {"top_k": None}})
    assert sorted(item["label"] for item in answer) == list(SENTIMENT_LABELS)


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"0": "a", "2": "c"}, "index_to_name.json: indices must be 0..1 without gaps"),
        ({"0": "a", "1": "b"}, "index_to_name.json: has 2 labels but the model has num_labels=3"),
        ({"0": "a", "1": "a", "2": "c"}, "index_to_name.json: duplicate label 'a'"),
    ],
)
def test_a_bad_mapping_fails_initialize_with_one_clear_message(unnamed_sentiment_model, tmp_path, mapping, message):
    model_dir = tmp_path / "model"
    shutil.copytree(unnamed_sentiment_model, model_dir)
    write_json(model_dir / "index_to_name.json", mapping)
    with pytest.raises(ConfigurationError, match=message):
        TransformersLabelHandler().initialize(make_context(model_dir))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_lenght": 3}, "unknown key(s) max_lenght"),
        ({"label_thresholds": {"positive": 0.2}}, "thresholds apply to multi-label models"),
        ({"label_thresholds": {"bug": 0.2}}, "handler.label_thresholds names unknown label(s) ['bug']"),
        ({"parameters": {"top_k": 0}}, "handler.parameters.top_k must be an integer >= 1"),
        ({"parameters": {"temperature": 1}}, "unknown handler.parameters: temperature"),
        ({"task": "question_answering"}, "declares BertForSequenceClassification"),
    ],
)
def test_bad_settings_fail_initialize_naming_them(sentiment_model, settings, message):
    with pytest.raises(ConfigurationError) as raised:
        TransformersLabelHandler().initialize(make_context(sentiment_model, settings))
    assert message in str(raised.value)


def test_config_default_parameters_apply_and_requests_override_them(sentiment_model):
    handler, context = load_handler(sentiment_model, {"parameters": {"top_k": 2}})
    assert len(call_one(handler, context, {"inputs": "x"})[1]) == 2
    assert len(call_one(handler, context, {"inputs": "x", "parameters": {"top_k": None}})[1]) == 3


def test_pickled_weights_are_refused_unless_allowed(sentiment_model, tmp_path):
    model_dir = tmp_path / "pickled"
    shutil.copytree(sentiment_model, model_dir)
    from safetensors.torch import load_file

    torch.save(load_file(model_dir / "model.safetensors"), model_dir / "pytorch_model.bin")
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(ConfigurationError, match="only pickled weights .*pytorch_model.bin"):
        TransformersLabelHandler().initialize(make_context(model_dir))
    handler, context = load_handler(model_dir, {"allow_pickle_weights": True})
    assert call_one(handler, context, {"inputs": "x"})[0] == 200


def test_nan_scores_become_a_500_for_that_request_only(sentiment_model):
    handler, context = load_handler(sentiment_model)
    with torch.no_grad():
        handler.runner.model.classifier.bias.fill_(float("nan"))
    status, answer = call_one(handler, context, {"inputs": "x"})
    assert status == 500 and "non-finite" in answer["error"]
    assert json.dumps(answer)
