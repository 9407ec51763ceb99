"""Loading from the archive's folder only: weights formats, tokenizer files, config, device, dtype."""

from __future__ import annotations

import shutil

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from handler.api.errors import ConfigurationError
from handler.api.settings import HandlerSettings
from handler.engine.execution import ExecutionPolicy
from handler.engine.model_loading import (
    has_tokenizer_files,
    load_config,
    load_model,
    load_tokenizer,
    select_device,
    weights_format,
)


@pytest.fixture
def folder(sentiment_model, tmp_path):
    return shutil.copytree(sentiment_model, tmp_path / "model")


def test_the_cpu_serves_without_a_gpu_id_or_without_cuda():
    assert select_device(None) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert select_device(0) == torch.device("cpu")


def test_safetensors_are_preferred_and_pickles_need_consent(folder):
    assert weights_format(folder, allow_pickle=False) == "safetensors"
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"pickled")
    with pytest.raises(ConfigurationError, match=r"only pickled weights \(pytorch_model.bin\), which can run code"):
        weights_format(folder, allow_pickle=False)
    assert weights_format(folder, allow_pickle=True) == "pickle"
    (folder / "pytorch_model.bin").unlink()
    with pytest.raises(ConfigurationError, match="no model weights"):
        weights_format(folder, allow_pickle=True)


def test_missing_config_and_tokenizer_are_named(folder):
    assert has_tokenizer_files(folder)
    for name in ("tokenizer.json", "vocab.txt"):
        (folder / name).unlink(missing_ok=True)
    assert not has_tokenizer_files(folder)
    with pytest.raises(ConfigurationError, match="no tokenizer files"):
        load_tokenizer(folder, require_fast=False)
    (folder / "config.json").unlink()
    with pytest.raises(ConfigurationError, match=r"no config.json \(is this a save_pretrained folder\?\)"):
        load_config(folder)


def test_a_fast_tokenizer_is_loaded_from_the_folder(folder):
    tokenizer = load_tokenizer(folder, require_fast=True)
    assert tokenizer.is_fast and tokenizer("hello")["input_ids"]


def test_float16_on_cpu_is_refused_and_the_model_loads_in_eval_mode(folder):
    config = load_config(folder)
    cpu = torch.device("cpu")
    with pytest.raises(ConfigurationError, match="float16 needs a GPU"):
        ExecutionPolicy.from_settings(HandlerSettings.from_mapping({"dtype": "float16"}), cpu)
    model = load_model(folder, AutoModelForSequenceClassification, config, HandlerSettings(), cpu)
    assert not model.training and next(model.parameters()).dtype is torch.float32


@pytest.mark.parametrize(
    "scheme",
    ["dynamic_int8", "dynamic_int8_per_channel", "dynamic_int8_fp32_head", "dynamic_int8_per_channel_fp32_head"],
)
def test_int8_schemes_quantize_what_they_say(sentiment_model, scheme):
    import torch
    from transformers import AutoModelForSequenceClassification

    from lab.quantization import quantized_variant

    model = quantized_variant(AutoModelForSequenceClassification.from_pretrained(sentiment_model).eval(), scheme)
    linear = {name: module for name, module in model.named_modules() if "Linear" in type(module).__name__}
    quantized_names = {name for name, module in linear.items() if type(module) is not torch.nn.Linear}
    assert any(".layer.0.attention" in name for name in quantized_names)
    head = {"classifier", "bert.pooler.dense"}
    assert (head & quantized_names == set()) is scheme.endswith("fp32_head")
    weight = model.bert.encoder.layer[0].intermediate.dense.weight()
    per_channel = weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric)
    assert per_channel is ("per_channel" in scheme)


def test_the_served_int8_setting_answers_close_to_fp32(sentiment_model):
    from support import call, load_handler

    handler, context = load_handler(sentiment_model, {"quantization": "dynamic_int8", "parameters": {"top_k": None}})
    reference, reference_context = load_handler(sentiment_model, {"parameters": {"top_k": None}})
    body = [("application/json", {"inputs": "I loved it"})]
    [(status, answer)] = call(handler, context, body)
    [(_, expected)] = call(reference, reference_context, body)
    assert status == 200 and {item["label"] for item in answer} == {item["label"] for item in expected}
    assert handler.runner.packed is None  # int8 scales activations per tensor: never packed


def test_several_workers_of_a_model_share_the_cores_threads_unless_a_setting_fixes_them():
    from handler.engine.model_loading import threads_per_worker
    from handler.torchserve_handler import model_workers

    assert threads_per_worker(None, 2, 1) is None  # one worker: torch's default, untouched
    assert threads_per_worker(None, 2, 2) == 1
    assert threads_per_worker(None, 16, 3) == 5
    assert threads_per_worker(None, 2, 4) == 1  # never below one
    assert threads_per_worker(3, 2, 4) == 3  # a setting wins
    assert model_workers({"minWorkers": 2, "maxWorkers": 4}) == 4
    assert model_workers({"minWorkers": 2}) == 2
    assert model_workers({}) == model_workers({"maxWorkers": 0}) == model_workers({"maxWorkers": "2"}) == 1


def test_a_worker_of_two_takes_half_the_threads_through_torchserves_context(sentiment_model):
    from support import make_context

    from handler.torchserve_handler import TransformersLabelHandler

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        context = make_context(sentiment_model)
        context.model_yaml_config.update({"minWorkers": 2, "maxWorkers": 2})
        TransformersLabelHandler().initialize(context)
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        TransformersLabelHandler().initialize(make_context(sentiment_model))  # one worker: left as it was
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
