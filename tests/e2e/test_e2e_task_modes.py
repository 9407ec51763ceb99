"""Token classification, question answering and text generation through a real torchserve."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import CONLL_LABELS
from qa_cases import brute_force_best
from support import assert_same_answers, post
from transformers import pipeline

pytestmark = pytest.mark.e2e

TEXT = "Alice Johnson works for Acme Corporation in Berlin. Marie Curie moved to Amsterdam!"


def conll_pipeline(model_dir, **kwargs):
    ner = pipeline("token-classification", model=str(model_dir), tokenizer=str(model_dir), **kwargs)
    ner.model.config.id2label = dict(enumerate(CONLL_LABELS))  # the names mappings/ner_conll.json gives
    return ner


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_ner_with_the_label_list_mapping_equals_the_pipeline(torchserve, conll_ner_model, strategy):
    response = post(
        torchserve, "ner", {"inputs": TEXT, "parameters": {"aggregation_strategy": strategy, "ignore_labels": []}}
    )
    assert response.status_code == 200, response.text
    kwargs = {} if strategy == "none" else {"stride": 8}
    expected = conll_pipeline(conll_ner_model, aggregation_strategy=strategy, ignore_labels=[], **kwargs)(TEXT)
    assert_same_answers(response.json(), expected)
    names = {e.get("entity") or e.get("entity_group") for e in response.json()}
    assert names <= set(CONLL_LABELS) | {label.split("-")[-1] for label in CONLL_LABELS}


def test_ner_list_of_texts_keeps_order(torchserve, conll_ner_model):
    texts = ["Bob moved to New York City.", TEXT, "hi"]
    response = post(torchserve, "ner", {"inputs": texts, "parameters": {"ignore_labels": []}})
    expected = [
        conll_pipeline(conll_ner_model, aggregation_strategy="simple", stride=8, ignore_labels=[])(t) for t in texts
    ]
    assert_same_answers(response.json(), expected)


def test_an_entity_far_past_the_model_max_length_is_found_over_http(torchserve):
    filler = "The weather in London is rainy and grey today. " * 20
    text = filler + "Alice Johnson moved to Paris."
    entities = post(torchserve, "keyword_ner", {"inputs": text}).json()
    assert [(e["entity_group"], text[e["start"] : e["end"]]) for e in entities] == [
        ("PER", "Alice Johnson"),
        ("LOC", "Paris"),
    ]


def test_qa_answers_follow_the_pipeline_rules(torchserve, qa_model):
    context = "The treaty was signed in Versailles in 1919 after long talks."
    answer = post(
        torchserve,
        "qa",
        {"inputs": {"question": "Where?", "context": context}, "parameters": {"align_to_words": False}},
    ).json()
    score, start, end = brute_force_best(qa_model, "Where?", context)
    assert (answer["start"], answer["end"], answer["answer"]) == (start, end, context[start:end])
    assert answer["score"] == pytest.approx(score, abs=1e-5)


def test_qa_finds_the_answer_in_a_later_window_and_lists_top_k(torchserve):
    context = "The weather in London is rainy and grey today. " * 15 + "Then Marie Curie won the Nobel Prize."
    answer = post(torchserve, "keyword_qa", {"inputs": {"question": "Who?", "context": context}}).json()
    assert answer["answer"] == "Marie Curie" == context[answer["start"] : answer["end"]]
    several = post(
        torchserve, "keyword_qa", {"inputs": [{"question": "Who?", "context": context}] * 2, "parameters": {"top_k": 3}}
    ).json()
    assert len(several) == 2 and all(isinstance(item, list) and item[0]["answer"] == "Marie Curie" for item in several)


def test_generation_equals_the_pipeline_and_batches_match_single_prompts(torchserve, lm_model):
    reference = pipeline("text-generation", model=str(lm_model), tokenizer=str(lm_model))
    prompts = ["The weather in", "Alice Johnson works for Acme Corporation in", "Our"]
    body = {"inputs": prompts, "parameters": {"max_new_tokens": 10}}
    together = post(torchserve, "lm", body).json()
    assert together == [reference(p, max_new_tokens=10, do_sample=False) for p in prompts]
    with ThreadPoolExecutor(3) as pool:
        alone = list(
            pool.map(
                lambda p: post(torchserve, "lm", {"inputs": p, "parameters": {"max_new_tokens": 10}}).json(), prompts
            )
        )
    assert alone == together


@pytest.mark.parametrize(
    ("model", "bad", "message"),
    [
        ("qa", {"inputs": {"question": "Where?"}}, "inputs is missing context"),
        ("lm", {"inputs": "x", "parameters": {"temperature": "hot"}}, "parameters.temperature must be a number"),
        ("lm", {"inputs": "x", "parameters": {"max_new_tokens": 10**9}}, "<= 64, got 1000000000"),
        ("ner", {"inputs": "x", "parameters": {"stride": 1000}}, "parameters.stride=1000 must be below"),
        ("keyword_qa", {"inputs": {"question": "q", "context": "c", "extra": 1}}, "unknown field(s) extra"),
    ],
)
def test_a_bad_item_gets_its_400_while_good_ones_are_served(torchserve, model, bad, message):
    good = {
        "qa": {"inputs": {"question": "Where?", "context": "In Paris."}},
        "keyword_qa": {"inputs": {"question": "Who?", "context": "Marie Curie did."}},
        "lm": {"inputs": "The weather", "parameters": {"max_new_tokens": 3}},
        "ner": {"inputs": TEXT},
    }[model]
    with ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda body: post(torchserve, model, body), [good, bad, good]))
    assert [r.status_code for r in responses] == [200, 400, 200]
    assert message in responses[1].json()["error"]
    assert responses[0].json() == responses[2].json()


def test_qa_over_http_equals_the_4x_pipeline(torchserve, qa_reference):
    """The parity cases of test_qa_parity, sent concurrently so windows of several requests share passes."""
    cases, expected = qa_reference

    def ask(case):
        body = {"inputs": {"question": case["question"], "context": case["context"]}, "parameters": case["parameters"]}
        return post(torchserve, "qa", body)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(ask, cases))
    for case, response, reference in zip(cases, responses, expected):
        assert response.status_code == 200, (case["parameters"], response.text)
        assert_same_answers(response.json(), reference)


def test_zero_shot_over_http_equals_the_pipeline_for_a_batch_of_requests(torchserve, nli_model):
    reference = pipeline("zero-shot-classification", model=str(nli_model), tokenizer=str(nli_model))
    cases = [
        ("The package arrived on Tuesday in Paris.", ["travel", "shipping", "food"], False),
        ("I hated the food, it was cold and bland.", ["food", "weather"], True),
        ("Our train to Amsterdam was delayed by two hours.", ["travel", "music", "sport", "money"], False),
    ]

    def ask(case):
        text, labels, multi_label = case
        return post(torchserve, "zeroshot", {"inputs": text, "parameters": {"candidate_labels": labels,
                                                                            "multi_label": multi_label}})  # fmt: skip

    with ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(ask, cases))
    for (text, labels, multi_label), response in zip(cases, responses):
        assert response.status_code == 200, response.text
        expected = reference(text, candidate_labels=labels, multi_label=multi_label)
        answer = response.json()
        assert answer["sequence"] == text and answer["labels"] == expected["labels"]
        assert max(abs(a - b) for a, b in zip(answer["scores"], expected["scores"])) <= 1e-5
