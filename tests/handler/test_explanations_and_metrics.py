"""/explanations (integrated gradients) in-process, through TorchServe's Context.

Over HTTP: test_e2e_explanations_and_metrics.py.
"""

from __future__ import annotations

import pytest
import torch
from support import explain, load_handler

from handler.postprocess.scoring import softmax


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


def test_regression_models_explain_their_raw_output(tmp_path):
    from tiny_models import build_sequence_classifier

    folder = build_sequence_classifier(tmp_path / "regressor", labels=("rating",), problem_type="regression")
    handler, context = load_handler(folder, {"explain_steps": 16})
    text = "The package arrived on Tuesday in Paris."
    [(status, answer)] = explain(handler, context, [{"inputs": text}])
    assert status == 200
    runner = handler.runner
    ids = runner.tokenizer(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        raw = runner.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, 0].item()
    # A softmax over one label would be 1.0 whatever the input; the served value is the raw output.
    assert answer["target_score"] == pytest.approx(raw, abs=1e-5)


def test_the_steps_limit_is_the_same_for_the_setting_and_the_request(sentiment_model):
    from handler.api.errors import ConfigurationError
    from handler.api.settings import MAX_EXPLAIN_STEPS, HandlerSettings

    with pytest.raises(
        ConfigurationError, match=f"handler.explain_steps must be an integer >= 1 and <= {MAX_EXPLAIN_STEPS}"
    ):
        HandlerSettings.from_mapping({"explain_steps": MAX_EXPLAIN_STEPS + 1})
    handler, context = load_handler(sentiment_model, {"explain_steps": MAX_EXPLAIN_STEPS})
    [(status, answer)] = explain(handler, context, [{"inputs": "ok", "parameters": {"n_steps": MAX_EXPLAIN_STEPS + 1}}])
    assert status == 400 and f"<= {MAX_EXPLAIN_STEPS}" in answer["error"]


def test_the_explained_score_is_the_served_score_through_the_top_label_curve(sentiment_model):
    from support import call_one

    calibration = {"temperature": 0.5, "top_label": {"confidence": [0.4, 0.7, 0.9], "accuracy": [0.3, 0.8, 0.85]}}
    handler, context = load_handler(sentiment_model, {"explain_steps": 32, "calibration": calibration,
                                                      "parameters": {"top_k": None}})  # fmt: skip
    for text in ["The package arrived on Tuesday in Paris.", "I loved it"]:
        [(status, answer)] = explain(handler, context, [{"inputs": text}])
        assert status == 200
        _, served = call_one(handler, context, {"inputs": text})
        assert answer["target"] == served[0]["label"]
        assert answer["target_score"] == pytest.approx(served[0]["score"], abs=1e-5)
