"""GPU paths: the worker's CUDA device and fp16/bf16 weights. Skipped where there is no GPU."""

from __future__ import annotations

import pytest
import torch
from support import call_one, load_handler, make_context

from handler.torchserve_handler import TransformersLabelHandler

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

TEXTS = ["I loved it", "The package arrived on Tuesday in Paris.", "What a fantastic movie, I would watch it again!"]


def gpu_handler(model_dir, settings):
    context = make_context(model_dir, settings)
    context.system_properties["gpu_id"] = 0
    handler = TransformersLabelHandler()
    handler.initialize(context)
    return handler, context


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_answers_on_the_gpu_match_the_cpu(sentiment_model, dtype):
    cpu, cpu_context = load_handler(sentiment_model)
    gpu, gpu_context = gpu_handler(sentiment_model, {"dtype": dtype})
    assert gpu.runner.device.type == "cuda"
    assert next(gpu.runner.model.parameters()).dtype == getattr(torch, dtype)
    tolerance = 1e-5 if dtype == "float32" else 2e-2
    for text in TEXTS:
        _, expected = call_one(cpu, cpu_context, {"inputs": text, "parameters": {"top_k": None}})
        _, answer = call_one(gpu, gpu_context, {"inputs": text, "parameters": {"top_k": None}})
        assert {item["label"] for item in answer} == {item["label"] for item in expected}
        scores = {item["label"]: item["score"] for item in expected}
        assert all(abs(item["score"] - scores[item["label"]]) <= tolerance for item in answer)


def test_token_classification_on_the_gpu_matches_the_cpu(ner_model):
    cpu, cpu_context = load_handler(ner_model)
    gpu, gpu_context = gpu_handler(ner_model, {})
    body = {"inputs": TEXTS[1], "parameters": {"aggregation_strategy": "none", "ignore_labels": []}}
    _, expected = call_one(cpu, cpu_context, body)
    _, answer = call_one(gpu, gpu_context, body)
    assert [e["entity"] for e in answer] == [e["entity"] for e in expected]
