"""The clients users already have, against a real torchserve: Hugging Face's InferenceClient for every
task mode (streaming included), curl's streaming, and the parameter names of neighbouring APIs."""

from __future__ import annotations

import json

import pytest
import requests
from conftest import CONLL_LABELS, TOPIC_LABELS
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError
from qa_cases import oracle_answers
from support import assert_same_answers, post
from transformers import pipeline

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def client_may_reach_loopback(monkeypatch):
    """The suite runs with HF_HUB_OFFLINE=1 (no hub), which also stops InferenceClient from calling
    our loopback server; only the client's switch is lifted, for these tests."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


TEXT = "Alice Johnson works for Acme Corporation in Berlin. Marie Curie moved to Amsterdam!"
REVIEW = "The service was wonderful and the staff were friendly."


def client(server, model: str) -> InferenceClient:
    return InferenceClient(model=server.predictions_url(model), token=server.inference_token)


def plain(elements) -> list[dict]:
    """InferenceClient's output elements as the JSON objects they were parsed from."""
    return [{key: value for key, value in dict(element).items() if value is not None} for element in elements]


def classifier(model_dir, labels=None):
    reference = pipeline("text-classification", model=str(model_dir), tokenizer=str(model_dir))
    if labels is not None:
        reference.model.config.id2label = dict(enumerate(labels))
    return reference


@pytest.mark.parametrize("top_k", [None, 1, 2])
def test_text_classification_equals_the_pipeline(torchserve, sentiment_model, top_k):
    answer = client(torchserve, "sentiment").text_classification(REVIEW, top_k=top_k)
    expected = classifier(sentiment_model)(REVIEW, top_k=top_k)
    assert_same_answers(plain(answer), expected)
    assert len(answer) == (3 if top_k is None else top_k)


def test_text_classification_function_to_apply_and_multi_label(torchserve, sentiment_model, topics_model):
    answer = client(torchserve, "sentiment").text_classification(REVIEW, function_to_apply="sigmoid")
    assert_same_answers(plain(answer), classifier(sentiment_model)(REVIEW, top_k=None, function_to_apply="sigmoid"))
    topics = client(torchserve, "topics").text_classification("the app crashes when I pay")
    expected = classifier(topics_model, TOPIC_LABELS)("the app crashes when I pay", top_k=None)
    assert_same_answers(plain(topics), expected)


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_token_classification_equals_the_pipeline(torchserve, conll_ner_model, strategy):
    stride = None if strategy == "none" else 8  # the pipeline refuses a stride without aggregation
    answer = client(torchserve, "ner").token_classification(
        TEXT, aggregation_strategy=strategy, ignore_labels=[], stride=stride
    )
    reference = pipeline("token-classification", model=str(conll_ner_model), tokenizer=str(conll_ner_model))
    reference.model.config.id2label = dict(enumerate(CONLL_LABELS))
    kwargs = {} if stride is None else {"stride": stride}
    assert_same_answers(plain(answer), reference(TEXT, aggregation_strategy=strategy, ignore_labels=[], **kwargs))


def test_a_per_request_stride_windows_like_the_pipeline(torchserve, conll_ner_model):
    long_text = " ".join([TEXT] * 4)
    answer = client(torchserve, "ner").token_classification(
        long_text, aggregation_strategy="simple", ignore_labels=[], stride=4
    )
    reference = pipeline("token-classification", model=str(conll_ner_model), tokenizer=str(conll_ner_model))
    reference.model.config.id2label = dict(enumerate(CONLL_LABELS))
    assert_same_answers(plain(answer), reference(long_text, aggregation_strategy="simple", ignore_labels=[], stride=4))


def test_question_answering_takes_every_client_parameter(torchserve, qa_model, tmp_path):
    context = "The treaty was signed in Versailles in 1919. " * 6 + "Marie Curie won the Nobel Prize."
    parameters = {"top_k": 3, "doc_stride": 16, "max_answer_len": 6, "max_seq_len": 48,
                  "max_question_len": 8, "handle_impossible_answer": True, "align_to_words": False}  # fmt: skip
    answer = client(torchserve, "qa").question_answering(question="Who won?", context=context, **parameters)
    served = post(torchserve, "qa", {"inputs": {"question": "Who won?", "context": context}, "parameters": parameters})
    assert_same_answers(plain(answer), served.json())
    [expected] = oracle_answers(qa_model, [{"question": "Who won?", "context": context, "parameters": parameters}],
                                tmp_path)  # fmt: skip
    assert_same_answers(plain(answer), expected)


def test_text_generation_equals_the_pipeline(torchserve, lm_model):
    reference = pipeline("text-generation", model=str(lm_model), tokenizer=str(lm_model))
    generate = client(torchserve, "lm").text_generation
    for return_full_text in (False, True):
        text = generate("The weather in", max_new_tokens=10, do_sample=False, return_full_text=return_full_text)
        expected = reference("The weather in", max_new_tokens=10, do_sample=False, return_full_text=return_full_text)
        assert text == expected[0]["generated_text"]
    stopped = generate("The weather in", max_new_tokens=20, stop=["a"], do_sample=False, return_full_text=False)
    expected = reference("The weather in", max_new_tokens=20, stop_strings=["a"], tokenizer=reference.tokenizer,
                         do_sample=False, return_full_text=False)  # fmt: skip
    assert stopped == expected[0]["generated_text"]


def test_text_generation_details(torchserve, lm_model):
    answer = client(torchserve, "lm").text_generation("The weather in", max_new_tokens=6, details=True,
                                                      return_full_text=False)  # fmt: skip
    details = answer.details
    assert details.finish_reason in ("length", "eos_token") and details.generated_tokens == len(details.tokens)
    assert all(token.logprob <= 0.0 for token in details.tokens)
    plain_text = client(torchserve, "lm").text_generation("The weather in", max_new_tokens=6, return_full_text=False)
    assert answer.generated_text == plain_text


def test_a_streamed_generation_adds_up_to_the_plain_one(torchserve):
    generate = client(torchserve, "lm").text_generation
    whole = generate("Alice Johnson works for", max_new_tokens=12, return_full_text=False)
    pieces = list(generate("Alice Johnson works for", max_new_tokens=12, return_full_text=False, stream=True))
    assert len(pieces) == 12 and "".join(pieces) == whole
    events = list(generate("Alice Johnson works for", max_new_tokens=12, stream=True, details=True,
                           return_full_text=False))  # fmt: skip
    assert [event.index for event in events] == list(range(1, 13))
    assert events[-1].generated_text == whole and events[-1].details.generated_tokens == 12
    assert all(event.generated_text is None for event in events[:-1])


def test_curl_users_can_stream_too(torchserve):
    response = requests.post(
        torchserve.predictions_url("lm"),
        data=json.dumps({"inputs": "The weather in", "parameters": {"max_new_tokens": 5}, "stream": True}),
        headers={"Content-Type": "application/json", **torchserve.auth(torchserve.inference_token)},
        stream=True,
        timeout=60,
    )
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = [json.loads(line[len("data:") :]) for line in response.iter_lines(decode_unicode=True) if line]
    assert len(events) == 5 and events[-1]["generated_text"].startswith("The weather in")


def test_errors_reach_the_client_as_its_exception_with_our_message(torchserve):
    with pytest.raises(HfHubHTTPError, match="parameters.top_k must be an integer >= 1") as raised:
        client(torchserve, "sentiment").text_classification(REVIEW, top_k=0)
    assert raised.value.response.status_code == 400
    refused = post(torchserve, "sentiment", {"inputs": "x", "stream": True})
    assert refused.status_code == 400
    assert refused.json() == {"error": '"stream": true is for text generation, not sequence_classification'}


def test_the_pipeline_shape_stays_for_curl_and_a_header_switches_it(torchserve):
    assert set(post(torchserve, "sentiment", {"inputs": REVIEW}).json()) == {"label", "score"}
    switched = requests.post(
        torchserve.predictions_url("sentiment"),
        data=json.dumps({"inputs": REVIEW}),
        headers={
            "Content-Type": "application/json",
            "x-response-format": "inference-api",
            **torchserve.auth(torchserve.inference_token),
        },  # fmt: skip
        timeout=60,
    ).json()
    assert isinstance(switched, list) and len(switched) == 1 and len(switched[0]) == 3


def test_old_inference_api_options_and_headers_are_accepted(torchserve):
    expected = post(torchserve, "sentiment", {"inputs": REVIEW}).json()
    body = {"inputs": REVIEW, "options": {"wait_for_model": True, "use_cache": False}}
    assert post(torchserve, "sentiment", body).json() == expected
    response = requests.post(
        torchserve.predictions_url("sentiment"),
        data=json.dumps({"inputs": REVIEW}),
        headers={
            "Content-Type": "application/json",
            "x-wait-for-model": "true",
            "x-use-cache": "false",
            **torchserve.auth(torchserve.inference_token),
        },  # fmt: skip
        timeout=60,
    )
    assert response.json() == expected
    bad = post(torchserve, "sentiment", {"inputs": REVIEW, "options": {"use_cache": "no"}})
    assert bad.status_code == 400 and "options.use_cache must be true or false" in bad.json()["error"]


def test_return_all_scores_answers_as_the_4x_pipeline(torchserve, sentiment_model, tmp_path):
    cases = [
        {"inputs": REVIEW, "parameters": {"return_all_scores": True}},
        {"inputs": REVIEW, "parameters": {"return_all_scores": False}},
        {"inputs": [REVIEW, "I hated the food."], "parameters": {"return_all_scores": True}},
    ]
    expected = oracle_answers(sentiment_model, cases, tmp_path, task="text-classification")
    for case, reference in zip(cases, expected):
        assert_same_answers(post(torchserve, "sentiment", case).json(), reference)


def test_tei_raw_scores_and_truncate(torchserve, sentiment_model):
    raw = post(torchserve, "sentiment", {"inputs": REVIEW, "parameters": {"raw_scores": True}}).json()
    # The pipeline wraps its default answer for one text in a list; the handler answers the object.
    assert_same_answers(raw, classifier(sentiment_model)(REVIEW, function_to_apply="none")[0])
    long_text = "great " * 200
    refused = post(torchserve, "sentiment", {"inputs": long_text, "parameters": {"truncate": False}})
    assert refused.status_code == 413 and "truncate is false" in refused.json()["error"]
    cut = post(torchserve, "sentiment", {"inputs": long_text, "parameters": {"truncate": True}})
    assert cut.status_code == 200 and cut.headers["x-truncated-inputs"] == "1"


@pytest.mark.parametrize("multi_label", [False, True])
def test_zero_shot_classification_equals_the_pipeline(torchserve, nli_model, multi_label):
    labels = ["travel", "food", "shipping"]
    template = "This text is about {}."
    answer = client(torchserve, "zeroshot").zero_shot_classification(
        REVIEW, candidate_labels=labels, multi_label=multi_label, hypothesis_template=template
    )
    reference = pipeline("zero-shot-classification", model=str(nli_model), tokenizer=str(nli_model))
    expected = reference(REVIEW, candidate_labels=labels, multi_label=multi_label, hypothesis_template=template)
    assert_same_answers(plain(answer), [{"label": label, "score": score}
                                        for label, score in zip(expected["labels"], expected["scores"])])  # fmt: skip
