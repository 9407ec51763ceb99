"""Text generation through the handler, against transformers' text-generation pipeline."""

from __future__ import annotations

import pytest
from support import JSON, call, call_one, load_handler, make_context
from transformers import pipeline

from handler.api.errors import ConfigurationError
from handler.torchserve_handler import TransformersLabelHandler

PROMPTS = ["The weather in", "Alice Johnson works for Acme Corporation in", "Our train"]


@pytest.fixture(scope="module")
def generator(lm_model):
    return load_handler(lm_model, {"max_new_tokens_limit": 64})


@pytest.fixture(scope="module")
def reference(lm_model):
    return pipeline("text-generation", model=str(lm_model), tokenizer=str(lm_model))


def test_greedy_output_equals_the_pipeline(generator, reference):
    handler, context = generator
    for prompt in PROMPTS:
        status, answer = call_one(handler, context, {"inputs": prompt, "parameters": {"max_new_tokens": 12}})
        assert status == 200
        assert answer == reference(prompt, max_new_tokens=12, do_sample=False)
        assert answer[0]["generated_text"].startswith(prompt)


def test_a_batch_of_different_lengths_gives_each_prompt_its_own_text(generator):
    handler, context = generator
    alone = [call_one(handler, context, {"inputs": p, "parameters": {"max_new_tokens": 10}})[1] for p in PROMPTS]
    _, together = call_one(handler, context, {"inputs": PROMPTS, "parameters": {"max_new_tokens": 10}})
    assert together == alone
    batched = call(handler, context, [(JSON, {"inputs": p, "parameters": {"max_new_tokens": 10}}) for p in PROMPTS])
    assert [answer for _, answer in batched] == alone


def test_return_full_text_false_gives_only_the_continuation(generator, reference):
    handler, context = generator
    _, answer = call_one(
        handler, context, {"inputs": PROMPTS[0], "parameters": {"max_new_tokens": 8, "return_full_text": False}}
    )
    assert answer == reference(PROMPTS[0], max_new_tokens=8, do_sample=False, return_full_text=False)


def test_stop_strings_end_the_text_where_they_appear(generator, reference):
    handler, context = generator
    _, free = call_one(
        handler, context, {"inputs": PROMPTS[1], "parameters": {"max_new_tokens": 20, "return_full_text": False}}
    )
    continuation = free[0]["generated_text"]
    stop = continuation[3:5]
    assert stop, "the free continuation must be long enough to pick a stop string from"
    _, stopped = call_one(
        handler,
        context,
        {"inputs": PROMPTS[1], "parameters": {"max_new_tokens": 20, "return_full_text": False, "stop": stop}},
    )
    text = stopped[0]["generated_text"]
    assert stop in text and len(text) < len(continuation)
    assert continuation.startswith(text)


def test_seeded_sampling_is_reproducible(generator):
    handler, context = generator
    body = {
        "inputs": PROMPTS[0],
        "parameters": {"do_sample": True, "seed": 7, "temperature": 1.5, "max_new_tokens": 10},
    }
    first, second = call_one(handler, context, body), call_one(handler, context, body)
    assert first == second and first[0] == 200


def test_max_new_tokens_is_capped_and_bad_parameters_are_refused(generator):
    handler, context = generator
    results = call(
        handler,
        context,
        [
            (JSON, {"inputs": "x", "parameters": {"max_new_tokens": 10**9}}),
            (JSON, {"inputs": "x", "parameters": {"temperature": "hot"}}),
            (JSON, {"inputs": "x", "parameters": {"beams": 4}}),
            (JSON, {"inputs": PROMPTS[0], "parameters": {"max_new_tokens": 4}}),
            (JSON, {"inputs": "x", "parameters": {"stop": [""]}}),
        ],
    )
    assert [status for status, _ in results] == [400, 400, 400, 200, 400]
    assert "parameters.max_new_tokens must be an integer >= 1 and <= 64, got 1000000000" in results[0][1]["error"]
    assert "parameters.temperature must be a number > 0 and <= 100, got a string" in results[1][1]["error"]
    assert "unknown parameters: beams" in results[2][1]["error"]
    assert results[3][1][0]["generated_text"].startswith(PROMPTS[0])


def test_a_prompt_longer_than_the_context_keeps_its_end(generator):
    handler, context = generator
    long_prompt = "The weather in London is rainy and grey today. " * 40
    status, answer = call_one(handler, context, {"inputs": long_prompt, "parameters": {"max_new_tokens": 5}})
    assert status == 200
    assert answer[0]["generated_text"].startswith(long_prompt)
    assert context.get_response_headers(0)["x-truncated-inputs"] == "1"


def test_generation_defaults_come_from_the_config(lm_model):
    handler, context = load_handler(lm_model, {"parameters": {"max_new_tokens": 3, "return_full_text": False}})
    _, answer = call_one(handler, context, {"inputs": PROMPTS[0]})
    assert len(handler.runner.tokenizer(answer[0]["generated_text"])["input_ids"]) <= 3
    # The cap is the smaller of max_new_tokens_limit (256) and the model's context less one (127).
    with pytest.raises(
        ConfigurationError, match="handler.parameters.max_new_tokens must be an integer >= 1 and <= 127"
    ):
        TransformersLabelHandler().initialize(make_context(lm_model, {"parameters": {"max_new_tokens": 10_000}}))
