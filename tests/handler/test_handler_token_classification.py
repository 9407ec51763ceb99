"""Token classification through the handler, against transformers' pipeline and known answers."""

from __future__ import annotations

import pytest
from conftest import NER_LABELS
from support import JSON, assert_same_answers, call, call_one, load_handler
from transformers import pipeline

STRATEGIES = ["none", "simple", "first", "average", "max"]
TEXT = "Alice Johnson works for Acme Corporation in Berlin. Unbelievably, Marie Curie moved to Amsterdam!"
# Longer than one 24-token window of the tiny tokenizer: needs several.
LONG_TEXT = " ".join(["The weather in London is rainy and grey today."] * 4 + [TEXT])


@pytest.fixture(scope="module")
def reference(ner_model):
    def run(text, strategy, **kwargs):
        return pipeline(
            "token-classification",
            model=str(ner_model),
            tokenizer=str(ner_model),
            aggregation_strategy=strategy,
            **kwargs,
        )(text)

    return run


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_equals_the_pipeline_within_one_window(ner_model, reference, strategy):
    handler, context = load_handler(ner_model, {"parameters": {"aggregation_strategy": strategy}})
    short = "Alice Johnson works for Acme in Berlin."
    for ignore in (["O"], []):
        status, entities = call_one(handler, context, {"inputs": short, "parameters": {"ignore_labels": ignore}})
        assert status == 200
        expected = pipeline(
            "token-classification", model=str(ner_model), tokenizer=str(ner_model),
            aggregation_strategy=strategy, ignore_labels=ignore,
        )(short)  # fmt: skip
        assert_same_answers(entities, expected)
    assert (
        all("entity" in e and "index" in e for e in entities)
        if strategy == "none"
        else all("entity_group" in e and "index" not in e for e in entities)
    )


@pytest.mark.parametrize("strategy", ["simple", "first", "average", "max"])
def test_windowed_long_text_equals_the_pipeline_with_stride(ner_model, reference, strategy):
    handler, context = load_handler(ner_model, {"stride": 6})
    status, entities = call_one(
        handler, context, {"inputs": LONG_TEXT, "parameters": {"aggregation_strategy": strategy, "ignore_labels": []}}
    )
    assert status == 200
    expected = pipeline(
        "token-classification", model=str(ner_model), tokenizer=str(ner_model),
        aggregation_strategy=strategy, stride=6, ignore_labels=[],
    )(LONG_TEXT)  # fmt: skip
    assert_same_answers(entities, expected)
    first_window = handler.runner.tokenizer(LONG_TEXT, truncation=True, max_length=24, return_offsets_mapping=True)
    first_window_end = max(end for _, end in first_window["offset_mapping"])
    assert max(e["end"] for e in entities) > 2 * first_window_end, "later windows must be read too"
    assert context.get_response_headers(0).get("x-truncated-inputs") is None


def test_offsets_point_into_the_original_text(ner_model):
    handler, context = load_handler(ner_model)
    _, entities = call_one(handler, context, {"inputs": TEXT, "parameters": {"ignore_labels": []}})
    for entity in entities:
        assert TEXT[entity["start"] : entity["end"]].lower().replace(" ", "") == entity["word"].replace(" ", "")


def test_special_and_padding_tokens_never_appear(ner_model):
    handler, context = load_handler(ner_model)
    results = call(
        handler,
        context,
        [
            (JSON, {"inputs": text, "parameters": {"aggregation_strategy": "none", "ignore_labels": []}})
            for text in ("Paris", TEXT)
        ],
    )
    for _, entities in results:
        assert not any(e["word"] in ("[CLS]", "[SEP]", "[PAD]") for e in entities)
    assert len(results[0][1]) == 1  # "paris": one token, although the batch padded it to TEXT's length


def test_an_entity_beyond_the_model_max_length_is_found(keyword_ner_model):
    handler, context = load_handler(keyword_ner_model, {"stride": 4})
    filler = "The weather in London is rainy and grey today. " * 10
    text = filler + "Alice Johnson moved to Paris."
    status, entities = call_one(handler, context, {"inputs": text})
    assert status == 200
    position = len(filler)
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in entities] == [
        ("PER", "alice johnson", position, position + 13),
        ("LOC", "paris", position + 23, position + 28),
    ]
    assert text[entities[0]["start"] : entities[0]["end"]] == "Alice Johnson"
    assert entities[0]["score"] == pytest.approx(1.0, abs=1e-3)


def test_none_strategy_indices_count_tokens_of_the_whole_text(keyword_ner_model):
    handler, context = load_handler(keyword_ner_model, {"stride": 4})
    filler = "the weather " * 30
    _, entities = call_one(
        handler, context, {"inputs": filler + "berlin", "parameters": {"aggregation_strategy": "none"}}
    )
    assert [(e["entity"], e["word"]) for e in entities] == [("B-LOC", "berlin")]
    whole = handler.runner.tokenizer(filler + "berlin")["input_ids"]
    assert entities[0]["index"] == len(whole) - 2  # its position in the unwindowed sequence ([CLS] is 0)


def test_windows_beyond_the_cap_are_cut_and_the_response_says_so(keyword_ner_model):
    handler, context = load_handler(keyword_ner_model, {"stride": 4, "max_windows_per_input": 2})
    status, entities = call_one(handler, context, {"inputs": "the weather " * 40 + "paris"})
    assert status == 200 and entities == []
    assert context.get_response_headers(0)["x-truncated-inputs"] == "1"


def test_bad_parameters_are_refused(ner_model):
    handler, context = load_handler(ner_model)
    status, answer = call_one(handler, context, {"inputs": "x", "parameters": {"aggregation_strategy": "longest"}})
    assert status == 400
    assert "aggregation_strategy must be one of 'none', 'simple', 'first', 'average', 'max'" in answer["error"]
    status, answer = call_one(handler, context, {"inputs": "x", "parameters": {"ignore_labels": "O"}})
    assert status == 400 and "ignore_labels must be a list" in answer["error"]


def test_label_list_mapping_names_the_tags(ner_model, tmp_path):
    import shutil

    model_dir = tmp_path / "ner"
    shutil.copytree(ner_model, model_dir)
    renamed = [label.replace("PER", "PERSON") for label in NER_LABELS]
    (model_dir / "index_to_name.json").write_text('{"label_list": "[' + ", ".join(renamed) + ']"}')
    handler, context = load_handler(model_dir)
    _, entities = call_one(
        handler, context, {"inputs": TEXT, "parameters": {"aggregation_strategy": "none", "ignore_labels": []}}
    )
    assert {e["entity"] for e in entities} <= set(renamed)
    assert not any(e["entity"].endswith("-PER") for e in entities)
