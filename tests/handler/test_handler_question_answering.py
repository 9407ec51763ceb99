"""Extractive QA through the handler: the 4.x pipeline's rules, checked against a brute force."""

from __future__ import annotations

import pytest
from qa_cases import brute_force_best
from support import JSON, call, call_one, load_handler

CONTEXTS = [
    "Marie Curie won the Nobel Prize in Physics and Chemistry.",
    "The treaty was signed in Versailles in 1919 after long talks.",
    "Our train to Amsterdam was delayed by two hours on Tuesday.",
]
QUESTION = "Where was it?"


def test_best_span_equals_a_brute_force_over_all_spans(qa_model):
    handler, context = load_handler(qa_model)
    for text in CONTEXTS:
        status, answer = call_one(
            handler,
            context,
            {"inputs": {"question": QUESTION, "context": text}, "parameters": {"align_to_words": False}},
        )
        assert status == 200
        score, start, end = brute_force_best(qa_model, QUESTION, text)
        assert (answer["start"], answer["end"]) == (start, end)
        assert answer["score"] == pytest.approx(score, abs=1e-5)
        assert answer["answer"] == text[start:end]


def test_answers_are_exact_substrings_of_the_context(qa_model):
    handler, context = load_handler(qa_model)
    _, answers = call_one(
        handler, context, {"inputs": {"question": QUESTION, "context": CONTEXTS[1]}, "parameters": {"top_k": 5}}
    )
    assert isinstance(answers, list) and 1 <= len(answers) <= 5
    assert [a["score"] for a in answers] == sorted((a["score"] for a in answers), reverse=True)
    for answer in answers:
        assert set(answer) == {"score", "start", "end", "answer"}
        assert answer["answer"] == CONTEXTS[1][answer["start"] : answer["end"]]
        # Aligned to words: an answer never starts or ends inside a word.
        assert answer["start"] == 0 or not CONTEXTS[1][answer["start"] - 1].isalnum()
        assert answer["end"] == len(CONTEXTS[1]) or not CONTEXTS[1][answer["end"]].isalnum()


def test_an_answer_in_a_later_window_of_a_long_context_is_found(keyword_qa_model):
    handler, context = load_handler(keyword_qa_model)
    filler = "The weather in London is rainy and grey today. " * 12
    text = filler + "In the end Marie Curie won the Nobel Prize."
    status, answer = call_one(handler, context, {"inputs": {"question": "Who won?", "context": text}})
    assert status == 200
    assert answer["answer"] == "Marie Curie"
    assert (answer["start"], answer["end"]) == (len(filler) + 11, len(filler) + 22)
    assert handler.runner.max_length == 32  # the whole context is far longer than one window


def test_impossible_answer_uses_the_lowest_null_score(qa_model):
    handler, context = load_handler(qa_model)
    _, answers = call_one(
        handler,
        context,
        {
            "inputs": {"question": QUESTION, "context": CONTEXTS[0]},
            "parameters": {"handle_impossible_answer": True, "top_k": 20},
        },
    )
    null = [a for a in answers if a["answer"] == ""]
    assert len(null) == 1 and (null[0]["start"], null[0]["end"]) == (0, 0)
    assert 0 < null[0]["score"] < 1


def test_bad_qa_requests_fail_alone(qa_model):
    handler, context = load_handler(qa_model)
    good = {"inputs": {"question": QUESTION, "context": CONTEXTS[2]}}
    results = call(
        handler,
        context,
        [
            (JSON, {"inputs": {"question": QUESTION}}),
            (JSON, good),
            ("text/plain", "just a text"),
            (JSON, {"inputs": {"question": "why " * 200, "context": CONTEXTS[0]}, "parameters": {"max_seq_len": 32}}),
            (
                JSON,
                {"inputs": {"question": QUESTION, "context": "x"}, "parameters": {"doc_stride": 64, "max_seq_len": 64}},
            ),
            (JSON, {"inputs": [good["inputs"], {"question": "q", "context": ""}]}),
        ],
    )
    assert [status for status, _ in results] == [400, 200, 400, 400, 400, 400]
    assert results[0][1]["error"] == "inputs is missing context"
    assert results[1][1]["answer"] == CONTEXTS[2][results[1][1]["start"] : results[1][1]["end"]]
    assert "question answering needs JSON" in results[2][1]["error"]
    assert "the question is too long" in results[3][1]["error"]
    assert "doc_stride (64) must be smaller than max_seq_len (64)" in results[4][1]["error"]
    assert results[5][1]["error"] == "inputs[1].context is empty"
