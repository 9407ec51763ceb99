"""The pipeline parity checks again under ``dtype: auto`` with bf16 serving: every score within
the tolerance verified at load (``dtype_tolerance``), compared label by label with the pipeline.

The tiny test models are not faster in bf16, so the speed test is set aside (``MIN_SPEEDUP`` 0) and
the units reported present: auto then serves bf16 wherever the probe agreed, on any CPU (bf16
autocast runs everywhere, fast or not). The exact comparisons (1e-5) stay in the parity tests
proper, which pin ``dtype: float32``.
"""

from __future__ import annotations

import pytest
from support import call_one, load_handler
from transformers import pipeline

import handler.engine.encoder_runner as encoder_runner
import handler.engine.precision as precision

TOLERANCE = 0.02
TEXTS = ["I loved this film", "the service was slow and the food was cold", "meh", "x " * 40,
         "An okay evening, nothing more, nothing less, though the music was lovely."]  # fmt: skip


@pytest.fixture
def bf16_auto(monkeypatch):
    monkeypatch.setattr(encoder_runner, "fast_low_precision", lambda device: "avx512_bf16")
    monkeypatch.setattr(precision, "MIN_SPEEDUP", 0.0)

    def load(model_dir, settings=None, require_bf16=True):
        handler, context = load_handler(model_dir, {"dtype": "auto", "dtype_tolerance": TOLERANCE, **(settings or {})})
        assert handler.runner.precision.low_precision or not require_bf16, handler.runner.precision.describe()
        return handler, context

    return load


def by_label(labels, scores):
    return dict(zip(labels, scores))


def assert_scores_within(ours: dict[str, float], reference: dict[str, float]) -> None:
    assert set(ours) == set(reference)
    for label, expected in reference.items():
        assert abs(ours[label] - expected) <= TOLERANCE, (label, ours[label], expected)
    # The top label is the pipeline's wherever the pipeline's own margin exceeds what bf16 may move.
    ranked = sorted(reference.values(), reverse=True)
    if len(ranked) < 2 or ranked[0] - ranked[1] > 2 * TOLERANCE:
        assert max(ours, key=ours.get) == max(reference, key=reference.get)


@pytest.mark.parametrize("function", [None, "sigmoid"])
def test_sequence_classification_under_auto_is_the_pipeline_within_tolerance(sentiment_model, bf16_auto, function):
    handler, context = bf16_auto(sentiment_model)
    reference = pipeline("text-classification", model=str(sentiment_model), tokenizer=str(sentiment_model))
    parameters = {"top_k": None, **({"function_to_apply": function} if function else {})}
    _, answers = call_one(handler, context, {"inputs": TEXTS, "parameters": parameters})
    for text, answer in zip(TEXTS, answers):
        expected = reference(text, top_k=None, **({"function_to_apply": function} if function else {}))
        assert_scores_within(by_label([a["label"] for a in answer], [a["score"] for a in answer]),
                             by_label([e["label"] for e in expected], [e["score"] for e in expected]))  # fmt: skip


@pytest.mark.parametrize("multi_label", [False, True])
def test_zero_shot_under_auto_is_the_pipeline_within_tolerance(nli_model, bf16_auto, multi_label):
    handler, context = bf16_auto(nli_model, {"task": "zero_shot_classification"})
    reference = pipeline("zero-shot-classification", model=str(nli_model), tokenizer=str(nli_model))
    labels = ["travel", "cooking", "politics", "sports"]
    for text in TEXTS:
        parameters = {"candidate_labels": labels, "multi_label": multi_label}
        status, answer = call_one(handler, context, {"inputs": text, "parameters": parameters})
        assert status == 200, answer
        expected = reference(text, candidate_labels=labels, multi_label=multi_label)
        ours, theirs = by_label(answer["labels"], answer["scores"]), by_label(expected["labels"], expected["scores"])
        assert_scores_within(ours, theirs)


def test_token_classification_under_auto_is_the_pipeline_within_tolerance(ner_model, bf16_auto):
    handler, context = bf16_auto(ner_model, require_bf16=False)
    choice = handler.runner.precision
    # The tiny NER model's probe has a token whose label moves in bf16: auto keeps float32, and the
    # answers are then the pipeline's exactly; where bf16 is chosen, within the tolerance.
    tolerance = TOLERANCE if choice.low_precision else 1e-5
    assert choice.low_precision or not choice.labels_agree
    reference = pipeline("token-classification", model=str(ner_model), tokenizer=str(ner_model),
                         aggregation_strategy="none", ignore_labels=[])  # fmt: skip
    text = "Alice Johnson works for Acme in Berlin with Bob."
    parameters = {"aggregation_strategy": "none", "ignore_labels": []}
    _, answer = call_one(handler, context, {"inputs": text, "parameters": parameters})
    expected = reference(text)
    assert len(answer) == len(expected) > 5
    ours = {(item["start"], item["end"]): item for item in answer}
    for entity in expected:
        # Entities the pipeline is sure enough of that the precision cannot flip them.
        if entity["score"] > 0.5 + tolerance:
            mine = ours[(entity["start"], entity["end"])]
            assert mine["entity"] == entity["entity"] and abs(mine["score"] - entity["score"]) <= tolerance
