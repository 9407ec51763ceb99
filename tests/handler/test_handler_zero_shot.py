"""Zero-shot classification through TorchServe's Context, against transformers'
ZeroShotClassificationPipeline on the same tiny NLI model."""

from __future__ import annotations

import pytest
from support import assert_same_answers, call, call_one, load_handler
from transformers import pipeline

from handler.api.errors import ConfigurationError
from handler.api.request_parsing import RequestBody
from handler.torchserve_handler import TransformersLabelHandler

TEXTS = ["The package arrived on Tuesday in Paris.", "I hated the food, it was cold and bland."]
LABELS = ["travel", "food", "weather", "shipping", "music", "sport", "politics", "money", "health", "art"]


@pytest.fixture(scope="module")
def zero_shot(nli_model):
    return load_handler(nli_model, {"task": "zero_shot_classification"})


@pytest.fixture(scope="module")
def reference(nli_model):
    return pipeline("zero-shot-classification", model=str(nli_model), tokenizer=str(nli_model))


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("template", ["This example is {}.", "The topic is {}"])
def test_answers_equal_the_pipeline(zero_shot, reference, multi_label, template):
    handler, context = zero_shot
    for text in TEXTS:
        parameters = {"candidate_labels": LABELS[:4], "multi_label": multi_label, "hypothesis_template": template}
        status, answer = call_one(handler, context, {"inputs": text, "parameters": parameters})
        assert status == 200, answer
        expected = reference(text, candidate_labels=LABELS[:4], multi_label=multi_label, hypothesis_template=template)
        assert_same_answers({**answer, "scores": None}, {**expected, "scores": None})
        assert max(abs(a - b) for a, b in zip(answer["scores"], expected["scores"])) <= 1e-5


def test_one_label_and_comma_separated_labels_and_lists(zero_shot, reference):
    handler, context = zero_shot
    _, one = call_one(handler, context, {"inputs": TEXTS[0], "parameters": {"candidate_labels": "travel"}})
    expected = reference(TEXTS[0], candidate_labels="travel")
    assert one["labels"] == expected["labels"] and abs(one["scores"][0] - expected["scores"][0]) <= 1e-5
    _, many = call_one(handler, context, {"inputs": TEXTS, "parameters": {"candidate_labels": "travel, food , money"}})
    expected = reference(TEXTS, candidate_labels=["travel", "food", "money"])
    for ours, theirs in zip(many, expected):
        assert ours["sequence"] == theirs["sequence"] and ours["labels"] == theirs["labels"]
        assert max(abs(a - b) for a, b in zip(ours["scores"], theirs["scores"])) <= 1e-5


def test_ten_labels_for_one_text_are_one_pass_of_ten_rows(zero_shot):
    handler, _ = zero_shot
    runner = handler.runner
    request = runner.parse(RequestBody(TEXTS[0], {"candidate_labels": LABELS}, True))
    stats = runner.run([request]).stats
    assert stats.forward_passes == 1
    assert len(request.params.candidate_labels) == 10


def test_labels_from_the_model_config(nli_model, reference):
    handler, context = load_handler(
        nli_model, {"task": "zero_shot_classification", "parameters": {"candidate_labels": ["food", "travel"]}}
    )
    _, answer = call_one(handler, context, {"inputs": TEXTS[1]})
    assert answer["labels"] == reference(TEXTS[1], candidate_labels=["food", "travel"])["labels"]


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({}, "needs parameters.candidate_labels"),
        ({"candidate_labels": []}, "must name at least one label"),
        ({"candidate_labels": ["a", " "]}, "must name at least one label, none empty"),
        ({"candidate_labels": ["a", "b", "a"]}, "repeats ['a']"),
        ({"candidate_labels": [f"l{i}" for i in range(65)]}, "may hold at most 64 strings, got 65"),
        ({"candidate_labels": ["a"], "hypothesis_template": "no slot"}, "must hold exactly one {}"),
        ({"candidate_labels": ["a"], "hypothesis_template": "{x} is {}"}, "must hold exactly one {}"),
    ],
)
def test_bad_label_requests_get_a_400_naming_the_problem(zero_shot, parameters, message):
    handler, context = zero_shot
    bad = ("application/json", {"inputs": "x", "parameters": parameters})
    good = ("application/json", {"inputs": "x", "parameters": {"candidate_labels": "a"}})
    results = call(handler, context, [bad, good])
    assert results[0][0] == 400 and message in results[0][1]["error"]
    assert results[1][0] == 200


def test_a_model_without_an_entailment_label_fails_at_load(sentiment_model):
    from support import make_context

    with pytest.raises(
        ConfigurationError, match=r"needs an NLI model .* labels are \['negative', 'neutral', 'positive'\]"
    ):
        TransformersLabelHandler().initialize(make_context(sentiment_model, {"task": "zero_shot_classification"}))


def test_the_cap_is_a_setting(nli_model):
    handler, context = load_handler(nli_model, {"task": "zero_shot_classification", "max_candidate_labels": 2})
    status, answer = call_one(handler, context, {"inputs": "x", "parameters": {"candidate_labels": ["a", "b", "c"]}})
    assert status == 400 and "at most 2" in answer["error"]
