"""ONNX Runtime as a candidate backend: the model exported with ``torch.onnx``, fp32 and int8.

Measured by ``hflabels accelerations`` when onnxruntime is installed (``make onnx``): speed on the
same inputs and batching as the torch variants, and agreement with torch fp32's answers. ONNX
Runtime would be adopted as an opt-in backend only if it beat torch by 15% at equal answers;
the README records the figures.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch


def available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def export(model: Any, tokenizer: Any, folder: Path) -> Path:
    """The fp32 model as ONNX with dynamic batch and sequence axes."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    sample = tokenizer(["a short text", "a somewhat longer text to export with"], padding=True, return_tensors="pt")
    names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in sample]
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes["logits"] = {0: "batch"}

    class LogitsOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, inputs))).logits

    with torch.inference_mode():
        torch.onnx.export(
            LogitsOnly().eval(), tuple(sample[name] for name in names), str(path), input_names=names,
            output_names=["logits"], dynamic_axes=axes, opset_version=17, dynamo=False,
        )  # fmt: skip
    return path


def quantize_int8(path: Path, per_channel: bool) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = path.with_name(f"model.int8{'.per_channel' if per_channel else ''}.onnx")
    quantize_dynamic(str(path), str(target), weight_type=QuantType.QInt8, per_channel=per_channel)
    return target


class OnnxClassifier:
    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = {item.name for item in self.session.get_inputs()}

    def scores(self, tokenizer: Any, texts: list[str], batch: int = 16) -> np.ndarray:
        rows = []
        for start in range(0, len(texts), batch):
            encoded = tokenizer(texts[start : start + batch], truncation=True, padding=True, return_tensors="np")
            feed = {name: encoded[name].astype(np.int64) for name in self.inputs}
            logits = self.session.run(["logits"], feed)[0]
            rows.append(torch.softmax(torch.from_numpy(logits).float(), dim=-1).numpy())
        return np.concatenate(rows)

    def throughput(self, tokenizer: Any, texts: list[str], rounds: int) -> float:
        ordered = sorted(texts, key=lambda text: len(tokenizer(text)["input_ids"]))
        self.scores(tokenizer, ordered[:64])
        timings = []
        for _ in range(rounds):
            started = time.perf_counter()
            self.scores(tokenizer, ordered)
            timings.append(len(ordered) / (time.perf_counter() - started))
        return statistics.median(timings)
