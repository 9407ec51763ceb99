"""int8 schemes measured by ``hflabels accelerations`` and not offered as settings (they moved
scores as much as the served one and ran slower: docs: performance). The served scheme,
``dynamic_int8``, is ``handler.engine.model_loading.quantized``; these stay out of the archive."""

from __future__ import annotations

import re
from typing import Any

import torch

from handler.engine.model_loading import quantized

# The encoder's own layers (BERT-like ``encoder.layer.N``, DistilBERT ``transformer.layer.N``): the
# linear layers quantized when the head stays in float32.
_ENCODER_LAYER = re.compile(r"(^|\.)layers?\.\d+\.")
SCHEMES = ("dynamic_int8", "dynamic_int8_per_channel", "dynamic_int8_fp32_head", "dynamic_int8_per_channel_fp32_head")


def quantized_variant(model: Any, scheme: str) -> Any:
    """``model`` with dynamic int8 linear layers: ``_per_channel`` gives each output row its own
    scale, ``_fp32_head`` keeps what is outside the encoder layers (pooler, classifier) in float32."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown int8 scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    if scheme == "dynamic_int8":
        return quantized(model)
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

    qconfig = per_channel_dynamic_qconfig if "per_channel" in scheme else default_dynamic_qconfig
    if scheme.endswith("fp32_head"):
        spec: Any = {
            name: qconfig
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and _ENCODER_LAYER.search(name)
        }
    else:
        spec = {torch.nn.Linear: qconfig}
    return torch.ao.quantization.quantize_dynamic(model, spec, dtype=torch.qint8)
