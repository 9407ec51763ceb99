"""Padding-free execution: the same outputs as the model's own padded forward, in one pass."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from conftest import SENTIMENT_LABELS
from support import assert_same_answers, call, load_handler
from transformers import (
    AutoModelForQuestionAnswering,
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    BertConfig,
    DistilBertConfig,
    ElectraConfig,
    RobertaConfig,
    XLMRobertaConfig,
)

from handler.api.request_parsing import RequestBody
from handler.engine.batching import plan_packed_passes
from handler.engine.packed_encoder import PACKABLE, PackedEncoder, packing_unsupported

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
    packed = PackedEncoder(model)
    texts = list(SENTENCES)
    random.Random(0).shuffle(texts)
    rows = tokenizer(texts)["input_ids"]
    assert len({len(row) for row in rows}) > 4, "the test needs inputs of many lengths"
    with torch.inference_mode():
        ours = packed.logits(rows, None)
    reference = padded_logits(model, tokenizer, texts)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference.numpy(), atol=1e-5, rtol=0)
    # Rows come back in the order given, not sorted: swapping two inputs swaps their logits.
    with torch.inference_mode():
        swapped = packed.logits([rows[1], rows[0], *rows[2:]], None)
    np.testing.assert_allclose(swapped[0], ours[1], atol=1e-6, rtol=0)


def test_sentence_pairs_use_their_token_types(nli_model):
    model = AutoModelForSequenceClassification.from_pretrained(nli_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(nli_model)
    premises, hypotheses = SENTENCES[:4], SENTENCES[4:]
    encoding = tokenizer(premises, hypotheses)
    packed = PackedEncoder(model)
    with torch.inference_mode():
        ours = packed.logits(encoding["input_ids"], encoding["token_type_ids"])
        without_types = packed.logits(encoding["input_ids"], None)
    reference = padded_logits(model, tokenizer, premises, hypotheses)
    np.testing.assert_allclose(ours, reference.numpy(), atol=1e-5, rtol=0)
    assert not np.allclose(without_types, reference.numpy(), atol=1e-4)


def test_one_input_and_equal_lengths_need_no_attention_mask(sentiment):
    model, tokenizer = sentiment
    packed = PackedEncoder(model)
    first = tokenizer("I loved it")["input_ids"]
    second = [first[0], *reversed(first[1:-1]), first[-1]]
    with torch.inference_mode():
        for chosen in ([first], [first, second]):
            ours = packed.logits(chosen, None)
            reference = model(input_ids=torch.tensor(chosen)).logits
            np.testing.assert_allclose(ours, reference.numpy(), atol=1e-5, rtol=0)


def test_models_without_a_packed_implementation_or_with_eager_attention_are_not_packed(sentiment_model, lm_model):
    from transformers import AutoModelForCausalLM

    assert "has no padding-free implementation" in packing_unsupported(AutoModelForCausalLM.from_pretrained(lm_model))
    eager = AutoModelForSequenceClassification.from_pretrained(sentiment_model, attn_implementation="eager")
    assert "eager" in packing_unsupported(eager)
    with pytest.raises(ValueError, match="cannot pack this model"):
        PackedEncoder(eager)
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
    packed_handler, packed_context = load_handler(
        sentiment_model, {"parameters": {"top_k": None}, "packed_forward": True}
    )
    padded_handler, padded_context = load_handler(
        sentiment_model, {"parameters": {"top_k": None}, "packed_forward": False, "batch_overhead_tokens": 32}
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
    handler, context = load_handler(sentiment_model, {"packed_forward": True})
    runner = handler.runner
    packed_calls = []
    original = runner.packed.outputs

    def counting(*args, **kwargs):
        packed_calls.append(len(args[0]))
        return original(*args, **kwargs)

    runner.packed.outputs = counting
    same_length = [("application/json", {"inputs": "I loved it"})] * 4
    assert [status for status, _ in call(handler, context, same_length)] == [200] * 4
    assert packed_calls == []
    mixed = [("application/json", {"inputs": text}) for text in SENTENCES]
    assert [status for status, _ in call(handler, context, mixed)] == [200] * len(SENTENCES)
    assert packed_calls == [len(SENTENCES)]


# ---- every packable architecture and head, against its own padded forward ----------------------

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 48}
CONFIGS = {
    "bert": lambda: BertConfig(vocab_size=120, max_position_embeddings=96, type_vocab_size=2, **TINY),
    "roberta": lambda: RobertaConfig(vocab_size=120, max_position_embeddings=98, pad_token_id=1, **TINY),
    "xlm-roberta": lambda: XLMRobertaConfig(vocab_size=120, max_position_embeddings=98, pad_token_id=1, **TINY),
    # embedding_size below hidden_size: the embeddings are projected up, as in ELECTRA-small.
    "electra": lambda: ElectraConfig(vocab_size=120, max_position_embeddings=96, embedding_size=16, **TINY),
    "distilbert": lambda: DistilBertConfig(
        vocab_size=120, max_position_embeddings=96, dim=32, n_layers=2, n_heads=4, hidden_dim=48
    ),
}
HEADS = {
    "sequence": (AutoModelForSequenceClassification, ("logits",)),
    "tokens": (AutoModelForTokenClassification, ("logits",)),
    "spans": (AutoModelForQuestionAnswering, ("start_logits", "end_logits")),
}


def tiny_model(architecture: str, head: str) -> torch.nn.Module:
    torch.manual_seed(0)
    config = CONFIGS[architecture]()
    config.num_labels = 2 if head == "spans" else 3
    return HEADS[head][0].from_config(config, attn_implementation="sdpa").eval()


def padded_outputs(model, rows, token_types, names) -> list[dict[str, np.ndarray]]:
    width = max(len(row) for row in rows)
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    feed = {"input_ids": ids, "attention_mask": mask}
    if token_types is not None:
        types = torch.zeros_like(ids)
        for i, row in enumerate(token_types):
            types[i, : len(row)] = torch.tensor(row)
        feed["token_type_ids"] = types
    with torch.inference_mode():
        output = model(**feed)
    answers = []
    for i, row in enumerate(rows):
        answer = {}
        for name in names:
            value = output[name][i].numpy()
            sequence_level = name == "logits" and output[name].ndim == 2
            answer[name] = value if sequence_level else value[: len(row)]
        answers.append(answer)
    return answers


@pytest.mark.parametrize("head", sorted(HEADS))
@pytest.mark.parametrize("architecture", sorted(CONFIGS))
def test_every_packable_head_equals_its_own_padded_forward(architecture, head):
    model = tiny_model(architecture, head)
    assert packing_unsupported(model) is None
    generator = random.Random(len(architecture) * 7 + len(head))
    lengths = [3, 17, 9, 40, 1, 9, 25, 2]
    rows = [[generator.randrange(3, 120) for _ in range(n)] for n in lengths]
    uses_types = architecture in ("bert", "electra")
    token_types = [[0] * (n // 2) + [1] * (n - n // 2) for n in lengths] if uses_types else None
    packed = PackedEncoder(model)
    names = HEADS[head][1]
    assert packed.output_fields == names
    with torch.inference_mode():
        ours = packed.outputs(rows, token_types)
    reference = padded_outputs(model, rows, token_types, names)
    for row, (mine, theirs) in enumerate(zip(ours, reference)):
        assert set(mine) == set(names)
        for name in names:
            assert mine[name].shape == theirs[name].shape, (row, name)
            np.testing.assert_allclose(mine[name], theirs[name], atol=1e-5, rtol=0, err_msg=f"row {row} {name}")


def test_the_table_covers_three_heads_of_five_architectures():
    names = {cls.__name__ for cls in PACKABLE}
    for prefix in ("Bert", "Roberta", "XLMRoberta", "Electra", "DistilBert"):
        for suffix in ("ForSequenceClassification", "ForTokenClassification", "ForQuestionAnswering"):
            assert prefix + suffix in names


def test_roberta_positions_skip_pad_tokens_inside_a_row_as_its_own_forward_does():
    model = tiny_model("roberta", "sequence")
    # A pad id inside the text: RoBERTa gives it the padding position and does not count it.
    rows = [[5, 6, 1, 7, 8], [9, 10]]
    with torch.inference_mode():
        ours = PackedEncoder(model).outputs(rows, None)
        own = model(input_ids=torch.tensor([rows[0]])).logits[0].numpy()
    np.testing.assert_allclose(ours[0]["logits"], own, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("model_fixture", "bodies"),
    [
        ("ner_model", [{"inputs": ["Alice Johnson works for Acme in Berlin.", "Bob"]}, {"inputs": "Marie Curie"}]),
        ("qa_model", [
            {"inputs": {"question": "Where did she move?", "context": "Marie Curie moved to Paris in 1891."}},
            {"inputs": {"question": "Who?", "context": "Bob."}},
        ]),
        ("nli_model", [
            {"inputs": {"text": "A man is eating a large sandwich at the table.", "text_pair": "Someone eats."}},
            {"inputs": {"text": "Rain.", "text_pair": "It is wet."}},
        ]),
    ],
)  # fmt: skip
def test_token_span_and_pair_heads_answer_the_same_packed_or_padded(request, model_fixture, bodies):
    model_dir = request.getfixturevalue(model_fixture)
    packed_handler, packed_context = load_handler(model_dir, {"packed_forward": True})
    padded_handler, padded_context = load_handler(model_dir, {"packed_forward": False})
    assert packed_handler.runner.packed is not None and padded_handler.runner.packed is None
    requests = [("application/json", body) for body in bodies]
    # Inputs of different lengths in one batch: the packed path runs (one length would not).
    parsed = [packed_handler.runner.parse(RequestBody(body["inputs"], None, True)) for body in bodies]
    assert packed_handler.runner.run(parsed).stats.padded_tokens == packed_handler.runner.run(parsed).stats.real_tokens
    for (status, answer), (reference_status, reference) in zip(
        call(packed_handler, packed_context, requests), call(padded_handler, padded_context, requests)
    ):
        assert status == reference_status == 200, answer
        assert_same_answers(answer, reference)
