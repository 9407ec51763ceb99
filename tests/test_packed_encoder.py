"""Padding-free execution: the same logits as the model's own padded forward, in one pass."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from conftest import SENTIMENT_LABELS
from support import assert_same_answers, call, load_handler
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from handler.api.request_parsing import RequestBody
from handler.engine.batching import plan_packed_passes
from handler.engine.packed_encoder import PackedBertClassifier, packing_unsupported

SENTENCES = [
    "ok",
    "The package arrived on Tuesday in Paris.",
    "What a fantastic movie, I would watch it again and again with all of my friends and family!",
    "meh",
    "I loved it",
    "The service was slow but the food was excellent and the staff were kind to us all evening long.",
    "no",
    "The package arrived on Tuesday in Paris.",
]


def padded_logits(model, tokenizer, texts, pairs=None) -> torch.Tensor:
    with torch.inference_mode():
        return model(**tokenizer(texts, pairs, padding=True, return_tensors="pt")).logits


@pytest.fixture(scope="module")
def sentiment(sentiment_model):
    model = AutoModelForSequenceClassification.from_pretrained(sentiment_model).eval()
    return model, AutoTokenizer.from_pretrained(sentiment_model)


def test_logits_equal_the_padded_forward_for_mixed_lengths_in_any_order(sentiment):
    model, tokenizer = sentiment
    packed = PackedBertClassifier(model)
    texts = list(SENTENCES)
    random.Random(0).shuffle(texts)
    rows = tokenizer(texts)["input_ids"]
    assert len({len(row) for row in rows}) > 4, "the test needs inputs of many lengths"
    with torch.inference_mode():
        ours = packed.logits(rows, None)
    reference = padded_logits(model, tokenizer, texts)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours.numpy(), reference.numpy(), atol=1e-5, rtol=0)
    # Rows come back in the order given, not sorted: swapping two inputs swaps their logits.
    with torch.inference_mode():
        swapped = packed.logits([rows[1], rows[0], *rows[2:]], None)
    np.testing.assert_allclose(swapped[0].numpy(), ours[1].numpy(), atol=1e-6, rtol=0)


def test_sentence_pairs_use_their_token_types(nli_model):
    model = AutoModelForSequenceClassification.from_pretrained(nli_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(nli_model)
    premises, hypotheses = SENTENCES[:4], SENTENCES[4:]
    encoding = tokenizer(premises, hypotheses)
    packed = PackedBertClassifier(model)
    with torch.inference_mode():
        ours = packed.logits(encoding["input_ids"], encoding["token_type_ids"])
        without_types = packed.logits(encoding["input_ids"], None)
    reference = padded_logits(model, tokenizer, premises, hypotheses)
    np.testing.assert_allclose(ours.numpy(), reference.numpy(), atol=1e-5, rtol=0)
    assert not np.allclose(without_types.numpy(), reference.numpy(), atol=1e-4)


def test_one_input_and_equal_lengths_need_no_attention_mask(sentiment):
    model, tokenizer = sentiment
    packed = PackedBertClassifier(model)
    first = tokenizer("I loved it")["input_ids"]
    second = [first[0], *reversed(first[1:-1]), first[-1]]
    with torch.inference_mode():
        for chosen in ([first], [first, second]):
            ours = packed.logits(chosen, None)
            reference = model(input_ids=torch.tensor(chosen)).logits
            np.testing.assert_allclose(ours.numpy(), reference.numpy(), atol=1e-5, rtol=0)


def test_only_bert_sequence_classifiers_with_sdpa_attention_are_packed(sentiment_model, ner_model):
    from transformers import AutoModelForTokenClassification

    token_model = AutoModelForTokenClassification.from_pretrained(ner_model)
    assert "BertForTokenClassification" in packing_unsupported(token_model)
    eager = AutoModelForSequenceClassification.from_pretrained(sentiment_model, attn_implementation="eager")
    assert "eager" in packing_unsupported(eager)
    with pytest.raises(ValueError, match="cannot pack this model"):
        PackedBertClassifier(eager)
    assert packing_unsupported(AutoModelForSequenceClassification.from_pretrained(sentiment_model)) is None


def test_quantized_models_keep_the_padded_forward(sentiment):
    model, _ = sentiment
    quantized = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    assert "quantized" in packing_unsupported(quantized)


def test_packed_passes_are_sorted_and_capped():
    lengths = [5, 40, 3, 12, 100, 7, 7]
    passes = plan_packed_passes(lengths, max_batch_size=3, max_batch_tokens=60)
    assert sorted(i for group in passes for i in group) == list(range(len(lengths)))
    flat = [lengths[i] for group in passes for i in group]
    assert flat == sorted(lengths)
    for group in passes:
        assert len(group) <= 3
        assert len(group) == 1 or sum(lengths[i] for i in group) <= 60
    assert [4] in passes  # longer than the budget: alone
    assert plan_packed_passes([9, 8], 32, 10_000) == [[1, 0]]


def test_handler_runs_a_mixed_batch_in_one_pass_with_the_padded_answers(sentiment_model):
    packed_handler, packed_context = load_handler(sentiment_model, {"parameters": {"top_k": None}})
    padded_handler, padded_context = load_handler(
        sentiment_model, {"parameters": {"top_k": None}, "packed_forward": False}
    )
    assert packed_handler.runner.packed is not None
    assert padded_handler.runner.packed is None
    requests = [("application/json", {"inputs": text}) for text in SENTENCES]
    ours = call(packed_handler, packed_context, requests)
    bodies = [RequestBody(text, None, True) for text in SENTENCES]
    stats = packed_handler.runner.run([packed_handler.runner.parse(body) for body in bodies]).stats
    assert stats.forward_passes == 1
    assert stats.padded_tokens == stats.real_tokens
    theirs = call(padded_handler, padded_context, requests)
    padded_stats = padded_handler.runner.run([padded_handler.runner.parse(body) for body in bodies]).stats
    assert padded_stats.forward_passes > 1
    assert padded_stats.padded_tokens > padded_stats.real_tokens
    for (status, answer), (reference_status, reference) in zip(ours, theirs):
        assert status == reference_status == 200
        assert_same_answers(answer, reference)
        assert {item["label"] for item in answer} == set(SENTIMENT_LABELS)


def test_torch_compile_keeps_the_compiled_padded_forward(sentiment_model):
    handler, _ = load_handler(sentiment_model, {"torch_compile": True})
    assert handler.runner.packed is None


def test_passes_without_padding_to_remove_take_the_models_own_forward(sentiment_model):
    handler, context = load_handler(sentiment_model)
    runner = handler.runner
    packed_calls = []
    original = runner.packed.logits

    def counting(*args, **kwargs):
        packed_calls.append(len(args[0]))
        return original(*args, **kwargs)

    runner.packed.logits = counting
    same_length = [("application/json", {"inputs": "I loved it"})] * 4
    assert [status for status, _ in call(handler, context, same_length)] == [200] * 4
    assert packed_calls == []
    mixed = [("application/json", {"inputs": text}) for text in SENTENCES]
    assert [status for status, _ in call(handler, context, mixed)] == [200] * len(SENTENCES)
    assert packed_calls == [len(SENTENCES)]
