"""Loading a model and its tokenizer from the archive's folder, and nothing else.

No hub names and no network: everything comes from ``model_dir`` with ``local_files_only``.
Weights load from safetensors; pickled ``.bin`` files can execute code when unpickled, so they
load only when ``allow_pickle_weights`` is set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoTokenizer, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as transformers_logging

from handler.api.errors import ConfigurationError
from handler.api.settings import HandlerSettings, Quantization

logger = logging.getLogger(__name__)

PICKLED_WEIGHT_PATTERNS = ("pytorch_model*.bin", "*.pt", "*.pth")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")


@dataclass(frozen=True)
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    config: PretrainedConfig
    device: torch.device


def select_device(gpu_id: Any) -> torch.device:
    """TorchServe's ``gpu_id`` for this worker, if it has one and CUDA is there; else the CPU."""
    if gpu_id is not None and torch.cuda.is_available():
        return torch.device(f"cuda:{int(gpu_id)}")
    return torch.device("cpu")


def weights_format(model_dir: Path, allow_pickle: bool) -> str:
    """``"safetensors"`` or ``"pickle"``; raises ConfigurationError when no usable weights exist."""
    if any(model_dir.glob("*.safetensors")):
        return "safetensors"
    pickled = sorted(path.name for pattern in PICKLED_WEIGHT_PATTERNS for path in model_dir.glob(pattern))
    if pickled and allow_pickle:
        return "pickle"
    if pickled:
        raise ConfigurationError(
            f"{model_dir.name}: only pickled weights ({', '.join(pickled)}), which can run code when loaded; "
            "re-save the model with save_pretrained(..., safe_serialization=True), or set "
            "handler.allow_pickle_weights: true if you trust the file"
        )
    raise ConfigurationError(f"{model_dir}: no model weights (expected model.safetensors)")


def has_tokenizer_files(model_dir: Path) -> bool:
    return any((model_dir / name).exists() for name in TOKENIZER_FILES)


def load_config(model_dir: Path) -> PretrainedConfig:
    if not (model_dir / "config.json").exists():
        raise ConfigurationError(f"{model_dir}: no config.json (is this a save_pretrained folder?)")
    try:
        return AutoConfig.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
    except Exception as error:  # transformers raises many types for unreadable configs
        raise ConfigurationError(f"{model_dir}/config.json cannot be read: {error}") from error


def load_tokenizer(model_dir: Path, require_fast: bool) -> PreTrainedTokenizerBase:
    if not has_tokenizer_files(model_dir):
        raise ConfigurationError(
            f"{model_dir}: no tokenizer files (expected tokenizer.json; save the tokenizer with "
            "tokenizer.save_pretrained into the model folder)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
    except Exception as error:
        raise ConfigurationError(f"{model_dir}: the tokenizer cannot be loaded: {error}") from error
    if require_fast and not tokenizer.is_fast:
        raise ConfigurationError(
            f"{model_dir}: this task needs a fast tokenizer (tokenizer.json) for character offsets"
        )
    return tokenizer


def load_model(
    model_dir: Path,
    model_class: Any,
    config: PretrainedConfig,
    settings: HandlerSettings,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
) -> PreTrainedModel:
    use_safetensors = weights_format(model_dir, settings.loading.allow_pickle_weights) == "safetensors"
    if not use_safetensors:
        logger.warning("loading pickled weights from %s because allow_pickle_weights is set", model_dir)
    extra: dict[str, Any] = {}
    # Progress bars would land in the model log as noise on every worker start.
    transformers_logging.disable_progress_bar()
    if settings.loading.attn_implementation is not None:
        extra["attn_implementation"] = settings.loading.attn_implementation.value
    try:
        model = model_class.from_pretrained(
            model_dir,
            config=config,
            local_files_only=True,
            trust_remote_code=False,
            use_safetensors=use_safetensors,
            dtype=dtype,
            **extra,
        )
    except Exception as error:
        raise ConfigurationError(f"{model_dir}: the model cannot be loaded: {error}") from error
    model.to(device)
    model.eval()
    if settings.loading.quantization is not Quantization.NONE:
        if device.type != "cpu":
            raise ConfigurationError(
                f"handler.loading.quantization {settings.loading.quantization.value} runs on CPU only"
            )
        model = quantized(model)
    if settings.loading.torch_compile:
        # Freezing folds the weights into the graph as constants, so inductor prepacks them for
        # oneDNN (a worker serves one model, so the global setting is this model's). Measured on a
        # MiniLM, Intel Xeon with AMX: bf16 autocast 1.72x faster than without it, fp32 1.13x over eager.
        import torch._inductor.config

        torch._inductor.config.freezing = True
        model.forward = torch.compile(model.forward, dynamic=True)
    return model


def quantized(model: Any) -> Any:
    """``model`` with dynamic int8 linear layers, one scale per weight matrix (``dynamic_int8``,
    the one served scheme; the variants measured and not offered live in hflabels)."""
    from torch.ao.quantization import default_dynamic_qconfig

    return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear: default_dynamic_qconfig}, dtype=torch.qint8)


def threads_per_worker(setting: int | None, default_threads: int, workers: int) -> int | None:
    """One worker's torch threads: the setting where given; else, with several workers of the model,
    torch's default (one per physical core) divided among them, at least 1; None keeps torch's default.

    Why divide: each worker is a process of its own, and torch gives each every core. Two workers
    of two threads on two cores preempt each other's threads in the middle of a parallel region, and
    the whole region waits for the slowest (measured on 2 cores: 69 answers/s at 32 clients against
    219 with one thread each; docs: performance, serving modes)."""
    if setting is not None:
        return setting
    if workers <= 1:
        return None
    return max(1, default_threads // workers)


def apply_thread_settings(settings: HandlerSettings, workers: int = 1) -> int | None:
    """Set this worker's torch threads (see threads_per_worker); returns the number set, or None."""
    threads = threads_per_worker(settings.loading.torch_num_threads, torch.get_num_threads(), workers)
    if threads is None:
        return None
    torch.set_num_threads(threads)
    if settings.loading.torch_num_threads is not None:
        logger.info("torch uses %d threads in this worker", threads)
    else:
        logger.info("torch uses %d threads in this worker: the cores' threads shared by %d workers", threads, workers)
    return threads
