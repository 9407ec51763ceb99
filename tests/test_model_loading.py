"""Loading from the archive's folder only: weights formats, tokenizer files, config, device, dtype."""

from __future__ import annotations

import shutil

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from handler.api.errors import ConfigurationError
from handler.api.settings import HandlerSettings
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
        load_model(folder, AutoModelForSequenceClassification, config, HandlerSettings(dtype="float16"), cpu)
    model = load_model(folder, AutoModelForSequenceClassification, config, HandlerSettings(), cpu)
    assert not model.training and next(model.parameters()).dtype is torch.float32
