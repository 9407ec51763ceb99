"""Measure the handler's opt-in accelerations on a model: speed-up and effect on answers.

    python -m lab accelerations [--model-dir DIR] [--data data/sentiment/test.csv]

For each variant (fp32 baseline, SDPA and eager attention, dynamic int8 quantization,
int8 per channel and with the head kept in fp32, torch.compile, bf16 weights, bf16 autocast with and
without torch.compile, OpenVINO fp32 and bf16; fp16 on a GPU; ONNX Runtime fp32 and int8 when installed)
the model is loaded through the handler's own loader with
that setting, timed in-process on mixed inputs (sorted batches, tokenization included, median of
rounds), and its predictions on the labelled file compared with fp32's: label agreement and the
largest score difference. Writes build/accelerations.json. Measures and reports; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from handler.api.settings import Backend, Float32Linear, HandlerSettings
from handler.engine.encoder_runner import encoder_inputs
from handler.engine.execution import ExecutionPolicy
from handler.engine.linear_kernels import OneDnnLinears
from handler.engine.model_loading import load_config, load_model, load_tokenizer
from handler.engine.openvino_backend import OpenVinoEncoder
from handler.engine.weight_copies import WeightCopies, own_linear_layers
from hflabels.demo import model_or_demo
from hflabels.paths import BUILD, SENTIMENT_DATA
from hflabels.training.data import load_examples
from lab import onnx_runtime
from lab.load import mixed_inputs, word_stream
from lab.quantization import quantized_variant
from lab.results import write_results

AGREEMENT_NEEDED = 0.99
# Variant keys that are not settings: an int8 scheme measured but not offered, and bf16 autocast
# around the forward (what dtype auto chooses where it is fast and agrees).
QUANTIZE = "int8 scheme"
AUTOCAST = "bf16 autocast"


def openvino_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def variants() -> dict[str, dict[str, Any]]:
    found = {
        "fp32 (torch's own linear kernel: the reference)": {"float32_linear": "torch"},
        "fp32, oneDNN linear (float32_linear: onednn)": {"float32_linear": "onednn"},
        "fp32, eager attention": {"attn_implementation": "eager"},
        "fp32, SDPA attention": {"attn_implementation": "sdpa"},
        "dynamic int8 (CPU)": {"quantization": "dynamic_int8"},
        # Measured, not offered as settings: quantized here from the fp32 model.
        "dynamic int8, per channel": {QUANTIZE: "dynamic_int8_per_channel"},
        "dynamic int8, fp32 head": {QUANTIZE: "dynamic_int8_fp32_head"},
        "dynamic int8, per channel, fp32 head": {QUANTIZE: "dynamic_int8_per_channel_fp32_head"},
        "torch.compile (weights frozen)": {"torch_compile": True},
        "bf16": {"dtype": "bfloat16"},
        # dtype auto's candidate: bf16 autocast over bf16 copies of the linear weights, outputs in float32.
        "bf16 autocast": {AUTOCAST: True},
        "torch.compile (weights frozen), bf16 autocast": {"torch_compile": True, AUTOCAST: True},
        "OpenVINO fp32 (backend: openvino)": {"backend": "openvino"},
        "OpenVINO bf16 (backend: openvino, dtype auto's candidate)": {"backend": "openvino", AUTOCAST: True},
    }
    if not openvino_installed():
        found = {name: value for name, value in found.items() if value.get("backend") != "openvino"}
    if torch.cuda.is_available():
        found["fp16 (GPU)"] = {"dtype": "float16"}
        found = {name: value for name, value in found.items() if "int8" not in name}
    return found


def scores(
    model: Any, tokenizer: Any, texts: list[str], device: torch.device, batch: int = 16, autocast: bool = False
) -> np.ndarray:
    rows = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        for start in range(0, len(texts), batch):
            encoded = tokenizer(texts[start : start + batch], truncation=True, padding=True, return_tensors="pt")
            logits = model(**{k: v.to(device) for k, v in encoded.items()})["logits"]
            rows.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    return np.concatenate(rows)


def throughput(
    model: Any, tokenizer: Any, texts: list[str], device: torch.device, rounds: int, autocast: bool = False
) -> float:
    ordered = sorted(texts, key=lambda text: len(tokenizer(text)["input_ids"]))
    scores(model, tokenizer, ordered[:64], device, autocast=autocast)  # warm-up (and compilation)
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        scores(model, tokenizer, ordered, device, autocast=autocast)
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings.append(len(ordered) / (time.perf_counter() - started))
    return statistics.median(timings)


def measure_onnx(
    args: argparse.Namespace,
    tokenizer: Any,
    timing_texts: list[str],
    labelled: list[str],
    baseline: tuple[float, np.ndarray],
    results: dict[str, Any],
) -> None:
    """ONNX Runtime fp32 and int8 (per tensor, per channel) beside the torch variants."""
    from transformers import AutoModelForSequenceClassification

    settings = HandlerSettings()
    config = load_config(args.model_dir)
    model = load_model(args.model_dir, AutoModelForSequenceClassification, config, settings, torch.device("cpu"))
    exported = onnx_runtime.export(model, tokenizer, args.output.parent / "onnx")
    candidates = {
        "ONNX Runtime fp32": lambda: exported,
        "ONNX Runtime int8": lambda: onnx_runtime.quantize_int8(exported, per_channel=False),
        "ONNX Runtime int8, per channel": lambda: onnx_runtime.quantize_int8(exported, per_channel=True),
    }
    for name, path_of in candidates.items():
        try:
            classifier = onnx_runtime.OnnxClassifier(path_of(), torch.get_num_threads())
            speed = classifier.throughput(tokenizer, timing_texts, args.rounds)
            predicted = classifier.scores(tokenizer, labelled)
        except Exception as error:
            results["variants"][name] = {"error": str(error)[:300]}
            print(f"{name:<44} failed: {str(error)[:120]}")
            continue
        agreement = float(np.mean(predicted.argmax(1) == baseline[1].argmax(1)))
        entry = {
            "inputs_per_s": round(speed, 1),
            "speedup": round(speed / baseline[0], 3),
            "label_agreement": agreement,
            "max_score_difference": float(np.abs(predicted - baseline[1]).max()),
            # Adopted as a backend only at >= 15% faster than torch with equal answers.
            "adopt": speed >= 1.15 * baseline[0] and agreement >= AGREEMENT_NEEDED,
        }
        results["variants"][name] = entry
        print(f"{name:<44} {speed:7.1f} inputs/s  x{entry['speedup']:.2f}  agreement {agreement:.3f}  "
              f"max |score diff| {entry['max_score_difference']:.2e}")  # fmt: skip


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model-dir", type=Path, help="the model folder to measure")
    parser.add_argument(
        "--data", type=Path, default=SENTIMENT_DATA / "test.csv", help="texts to time and compare answers on"
    )
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds per variant")
    parser.add_argument("--output", type=Path, default=BUILD / "accelerations.json", help="the results file")


def run(args: argparse.Namespace) -> int:
    args.model_dir = model_or_demo(args.model_dir)
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    config = load_config(args.model_dir)
    tokenizer = load_tokenizer(args.model_dir, require_fast=False)
    from transformers import AutoModelForSequenceClassification

    labelled = [example.text for example in load_examples(args.data, "single_label")]
    timing_texts = mixed_inputs(word_stream(1234), 512, 1234)
    results: dict[str, Any] = {
        "model": str(args.model_dir),
        "device": str(device),
        "data": str(args.data),
        "variants": {},
    }
    baseline = None
    for name, overrides in variants().items():
        scheme, autocast = overrides.get(QUANTIZE), bool(overrides.get(AUTOCAST))
        settings = HandlerSettings.from_mapping({k: v for k, v in overrides.items() if k not in (QUANTIZE, AUTOCAST)})
        try:
            dtype = ExecutionPolicy.from_settings(settings, device).weight_dtype
            model = load_model(args.model_dir, AutoModelForSequenceClassification, config, settings, device, dtype)
            if scheme is not None:
                model = quantized_variant(model, scheme)
            if settings.loading.backend is Backend.OPENVINO:
                model = OpenVinoEncoder(model, encoder_inputs(tokenizer))
            elif autocast and not settings.loading.torch_compile:
                # As dtype auto runs it: the linear weights cast to bf16 once, not on every call.
                WeightCopies(own_linear_layers(model), torch.bfloat16).use(True)
            elif settings.loading.float32_linear is Float32Linear.ONEDNN:
                OneDnnLinears(own_linear_layers(model)).use(True)
            speed = throughput(model, tokenizer, timing_texts, device, args.rounds, autocast)
            predicted = scores(model, tokenizer, labelled, device, autocast=autocast)
        except Exception as error:  # a variant this machine cannot run is reported, not fatal
            results["variants"][name] = {"settings": overrides, "error": str(error)[:300]}
            print(f"{name:<44} not available here: {str(error)[:120]}")
            continue
        if baseline is None:
            baseline = (speed, predicted)
        agreement = float(np.mean(predicted.argmax(1) == baseline[1].argmax(1)))
        entry = {
            "settings": overrides,
            "inputs_per_s": round(speed, 1),
            "speedup": round(speed / baseline[0], 3),
            "label_agreement": agreement,
            "max_score_difference": float(np.abs(predicted - baseline[1]).max()),
            "offered": agreement >= AGREEMENT_NEEDED,
        }
        results["variants"][name] = entry
        print(f"{name:<44} {speed:7.1f} inputs/s  x{entry['speedup']:.2f}  agreement {agreement:.3f}  "
              f"max |score diff| {entry['max_score_difference']:.2e}")  # fmt: skip
    if onnx_runtime.available() and baseline is not None and device.type == "cpu":
        measure_onnx(args, tokenizer, timing_texts, labelled, baseline, results)
    else:
        print("ONNX Runtime not measured: install it with `make onnx` (CPU only)")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_results(args.output, results)
    print(f"wrote {args.output}")
    return 0
