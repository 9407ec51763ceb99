"""Property-based tests: whatever arrives, a request gets an answer or a 4xx, never a failed batch."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from support import JSON, call, load_handler

from handler.api.errors import RequestError
from handler.api.request_parsing import RequestBody, read_request_body
from handler.postprocess.qa_spans import NO_NULL_SCORE, rank_answers, select_spans
from handler.postprocess.scoring import (
    Activation,
    activate,
    best_label,
    labels_reaching,
    ranked_labels,
    zero_shot_scores,
)
from handler.postprocess.token_aggregation import (
    AggregationStrategy,
    TokenPrediction,
    aggregate,
    drop_ignored,
    merge_overlapping,
)
from handler.serving.envelopes import v1_instance_body, v2_input_body

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

json_scalars = (
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
# Bodies shaped like requests often enough to get past the first checks.
plausible_inputs = st.one_of(
    st.text(max_size=80),
    st.lists(st.text(max_size=40), max_size=4),
    st.fixed_dictionaries({"text": st.text(max_size=40)}, optional={"text_pair": st.text(max_size=40)}),
    st.fixed_dictionaries({"question": st.text(max_size=30), "context": st.text(max_size=80)}),
    json_values,
)
parameter_values = st.one_of(json_scalars, st.lists(st.text(max_size=8), max_size=3))
parameter_names = st.sampled_from(
    ["top_k", "threshold", "function_to_apply", "aggregation_strategy", "ignore_labels", "max_answer_len",
     "handle_impossible_answer", "doc_stride", "max_seq_len", "align_to_words", "max_new_tokens", "do_sample",
     "temperature", "top_p", "repetition_penalty", "seed", "return_full_text", "stop", "bogus"]
)  # fmt: skip
documents = st.one_of(
    st.fixed_dictionaries(
        {"inputs": plausible_inputs},
        optional={"parameters": st.dictionaries(parameter_names, parameter_values, max_size=3) | json_values},
    ),
    json_values,
)
raw_bodies = st.one_of(
    st.binary(max_size=200).map(lambda b: ("text/plain", b)),
    st.text(max_size=200).map(lambda t: ("text/plain", t.encode("utf-8", "surrogatepass"))),
    documents.map(lambda d: (JSON, json.dumps(d).encode())),
    documents.map(lambda d: (JSON, d)),
)


@given(
    item=st.dictionaries(
        st.sampled_from(["body", "data", "file", "x"]), st.binary(max_size=60) | json_values, max_size=2
    ),
    content_type=st.sampled_from(["", "text/plain", JSON, "application/x-www-form-urlencoded", "multipart/form-data"]),
)
@FUZZ
def test_request_parsing_gives_a_body_or_a_request_error(item, content_type):
    try:
        body = read_request_body(item, content_type)
    except RequestError as error:
        assert 400 <= error.status < 500 and error.message
    else:
        assert isinstance(body, RequestBody)


@pytest.fixture(scope="module")
def handlers(sentiment_model, topics_model, ner_model, qa_model, lm_model):
    return {
        "sentiment": load_handler(sentiment_model),
        "topics": load_handler(topics_model),
        "ner": load_handler(ner_model),
        "qa": load_handler(qa_model),
        "lm": load_handler(lm_model, {"max_new_tokens_limit": 8}),
    }


@pytest.mark.parametrize("model", ["sentiment", "topics", "ner", "qa", "lm"])
@given(batch=st.lists(raw_bodies, min_size=1, max_size=4))
@FUZZ
def test_any_batch_gets_an_answer_or_a_4xx_per_request(handlers, model, batch):
    handler, context = handlers[model]
    results = call(handler, context, batch)
    for status, answer in results:
        assert status == 200 or 400 <= status < 500, answer
        if status != 200:
            assert isinstance(answer, dict) and set(answer) == {"error"} and answer["error"]


# Wide enough for calibrated logits: a temperature of 0.05 turns a logit of 5 into 100.
finite = st.floats(-400, 400, allow_nan=False, width=32)


@given(logits=arrays(np.float32, st.integers(1, 6), elements=finite), k=st.none() | st.integers(1, 8),
       threshold=st.floats(0, 1))  # fmt: skip
@FUZZ
def test_scoring_never_fails_and_stays_a_distribution(logits, k, threshold):
    labels = [f"label {i}" for i in range(len(logits))]
    for activation in Activation:
        scores = activate(logits, activation)
        assert np.all(np.isfinite(scores))
        assert best_label(scores, labels)["label"] in labels
        ranked = ranked_labels(scores, labels, k)
        assert [item["score"] for item in ranked] == sorted((item["score"] for item in ranked), reverse=True)
        reached = labels_reaching(scores, labels, np.full(len(labels), threshold))
        assert all(item["score"] >= threshold for item in reached)
    assert activate(logits, Activation.SOFTMAX).sum() == pytest.approx(1.0, abs=1e-5)
    # Zero-shot: each row a (text, hypothesis) pair's NLI logits (contradiction, neutral, entailment).
    pairs = np.stack([logits[: min(3, len(logits))]] * 2) if len(logits) >= 2 else np.stack([[logits[0], -logits[0]]])
    for multi_label in (False, True):
        zero_shot = zero_shot_scores(pairs, pairs.shape[1] - 1, multi_label)
        assert np.all(np.isfinite(zero_shot)) and np.all((zero_shot >= 0) & (zero_shot <= 1))
        if not multi_label and len(pairs) > 1:
            assert zero_shot.sum() == pytest.approx(1.0, abs=1e-5)


TAGS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")


@st.composite
def predictions(draw):
    count = draw(st.integers(0, 8))
    found, position = [], 0
    for index in range(count):
        length = draw(st.integers(1, 5))
        scores = draw(arrays(np.float32, len(TAGS), elements=st.floats(0.0625, 1, width=32)))
        found.append(TokenPrediction(f"w{index}", scores / scores.sum(), position, position + length, index + 1,
                                     draw(st.booleans()) and index > 0))  # fmt: skip
        position += length + draw(st.integers(0, 1))
    return found


@given(tokens=predictions(), strategy=st.sampled_from(list(AggregationStrategy)))
@FUZZ
def test_token_aggregation_keeps_entities_ordered_inside_the_text(tokens, strategy):
    entities = aggregate(tokens, strategy, TAGS, lambda words: " ".join(words))
    entities = merge_overlapping(drop_ignored(entities, ["O"]))
    for entity in entities:
        assert entity["start"] < entity["end"]
        assert entity.get("entity", entity.get("entity_group")) not in ("O", None)
    starts = [entity["start"] for entity in entities]
    assert starts == sorted(starts)


@given(
    length=st.integers(2, 24),
    data=st.data(),
    top_k=st.integers(1, 5),
    max_answer_len=st.integers(1, 10),
)
@FUZZ
def test_span_selection_only_picks_allowed_ordered_short_spans(length, data, top_k, max_answer_len):
    start = data.draw(arrays(np.float32, length, elements=finite))
    end = data.draw(arrays(np.float32, length, elements=finite))
    answerable = data.draw(arrays(np.bool_, length))
    answerable[0] = True  # the CLS position
    window = select_spans(start, end, answerable, top_k, max_answer_len)
    assert 0 <= window.null_score <= 1
    assert len(window.spans) <= top_k
    scores = [span.score for span in window.spans]
    assert scores == sorted(scores, reverse=True)
    for span in window.spans:
        assert answerable[span.start] and answerable[span.end]
        # As in the 4.x pipeline, a window short of scoring spans fills its count with zero-score
        # entries of the masked matrix (CLS, reversed or too long); every scoring span is valid.
        if span.score > 0:
            assert 0 < span.start <= span.end < span.start + max_answer_len
    context = "x" * (length * 3)
    answers = rank_answers([(s.start, s.end, s.score) for s in window.spans], context, top_k, True, NO_NULL_SCORE)
    assert [a.score for a in answers] == sorted((a.score for a in answers), reverse=True)
    assert all(context[a.start : a.end] == a.answer for a in answers)


@given(item=json_values | st.binary(max_size=40))
@FUZZ
def test_envelope_items_give_a_body_or_a_request_error(item):
    for translate in (v1_instance_body, v2_input_body):
        try:
            body = translate(item)
        except RequestError as error:
            assert 400 <= error.status < 500
        else:
            assert isinstance(body, RequestBody)
