"""The groups of the ``handler:`` section, every key defined once: its type, its default (what an
absent key means), its check and its documentation (the configuration reference is generated from
these fields)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from handler.api.choices import enum_member, enum_values
from handler.api.client_shapes import ResponseFormatSetting
from handler.api.parameters import ParamSpec
from handler.api.settings.checks import Check, auto_or, choice, mapping, scalar, setting
from handler.api.settings.fitted import (
    Calibration,
    DriftReference,
    read_calibration,
    read_drift_reference,
    read_label_thresholds,
)
from handler.api.settings.options import (
    MAX_EXPLAIN_STEPS,
    AttentionImplementation,
    Backend,
    Float32Linear,
    Precision,
    Quantization,
)


def _bool() -> Check:
    return scalar(ParamSpec("bool"))


def _int(minimum: int, maximum: int | None = None, nullable: bool = False) -> Check:
    return scalar(ParamSpec("int", minimum=minimum, maximum=maximum, nullable=nullable))


def _positive(maximum: float) -> Check:
    return scalar(ParamSpec("float", minimum=0.0, exclusive_minimum=True, maximum=maximum))


def _response_format(key: str, value: Any) -> ResponseFormatSetting:
    chosen = enum_member(ResponseFormatSetting, value)
    if chosen is None:
        raise ValueError(f"{key} must be one of {enum_values(ResponseFormatSetting)}, got {value!r}")
    return chosen


@dataclass(frozen=True)
class LoadingSettings:
    """How the weights are loaded and run."""

    dtype: Precision = setting(Precision.AUTO, choice(Precision), (
        "The precision the weights run in. `auto`: float32 weights, with bf16 passes where this CPU or GPU "
        "runs them faster and their answers agree with float32 on probe texts (`dtype_tolerance`); "
        "the worker logs what it chose."))
    dtype_tolerance: float = setting(0.02, _positive(1.0), (
        "dtype auto: the largest change low precision may make to a served score on the probe texts "
        "(classification: after the calibration, whose top-label curve can amplify it), and labels must agree."))
    quantization: Quantization = setting(Quantization.NONE, choice(Quantization), (
        "`dynamic_int8`: int8 linear layers on CPU (faster, answers move; measured on the performance page)."))
    torch_compile: bool = setting(False, _bool(), "Compile the forward with `torch.compile` (weights frozen).")
    backend: Backend = setting(Backend.TORCH, choice(Backend), (
        "What runs an encoder's forward: torch, or OpenVINO (`pip install .[openvino]`)."))
    float32_linear: Float32Linear = setting(Float32Linear.AUTO, choice(Float32Linear), (
        "The CPU kernel of float32 linear layers: torch's own, oneDNN over weights reordered at load, or "
        "`auto`: oneDNN where it measures at least 1.2x faster on this model's layers at load."))
    attn_implementation: AttentionImplementation | None = setting(
        None, choice(AttentionImplementation, nullable=True), "null: transformers' default (sdpa).")
    allow_pickle_weights: bool = setting(False, _bool(), (
        "Pickled weights (.bin/.pt) can run code when loaded; safetensors only unless this is true."))
    torch_num_threads: int | None = setting(None, _int(1, 1024, nullable=True), (
        "Threads per worker for torch; null: torch's default (one per physical core) divided among the "
        "model's workers (`maxWorkers`), so two workers on two cores take one thread each."))
    borrow_idle_cores: bool | None = setting(None, auto_or(ParamSpec("bool")), (
        "With several workers on shares of the cores (`torch_num_threads` null): a batch of one request runs "
        "on every core's thread when no other such worker of the machine is in a pass (a file lock between "
        "them). `auto`: where torch's OpenMP threads sleep soon after a pass (`GOMP_SPINCOUNT` at most 10000, "
        "or `OMP_WAIT_POLICY=passive`, in the server's environment); with the default spin they keep the "
        "borrowed core busy into the other worker's pass."))
    measure_budget_seconds: float = setting(30.0, scalar(ParamSpec("float", minimum=0.0, maximum=3600.0)), (
        "Seconds a loading worker may spend on its load-time timings, waiting for the machine included "
        "(one worker of the machine times at a time; results are remembered per machine, model and "
        "versions). Past it, what is not yet timed serves the safe choice, which the live tuner "
        "corrects from traffic."))


@dataclass(frozen=True)
class BatchingSettings:
    """How the inputs of a TorchServe batch are cut into forward passes."""

    micro_batch_size: int = setting(32, _int(1, 4096), "At most this many inputs in one forward pass.")
    max_batch_requests: int = setting(32, _int(1, 4096), (
        "With TorchServe's `asyncCommunication: true`, where the handler forms its own batches: at most this "
        "many requests in one, taken from those waiting when the model is free (TorchServe's `batchSize` "
        "bounds a batch in the classic mode)."))
    max_batch_tokens: int = setting(2048, _int(1), (
        "At most this many tokens in one pass: rows x longest row when padded, real tokens when packed."))
    sort_by_length: bool = setting(True, _bool(), (
        "Sort a batch by length before cutting it into passes (false: arrival order)."))
    packed_forward: bool | None = setting(None, auto_or(ParamSpec("bool")), (
        "Padding-free passes for the encoders that have them. `auto`: timed against padded passes at "
        "load, the faster serves."))
    batch_overhead_tokens: int | None = setting(None, auto_or(ParamSpec("int", minimum=0, maximum=1_000_000)), (
        "The fixed cost of one padded pass, in tokens' worth of compute: a batch sorted by length is cut "
        "where padding would cost more than another pass. `auto`: measured at load."))


@dataclass(frozen=True)
class LimitSettings:
    """What one request may ask, and where long inputs are cut."""

    max_length: int = setting(512, _int(2, 1_000_000), (
        "Inputs are truncated (or windowed) at min(max_length, the model's own limit)."))
    max_inputs_per_request: int = setting(64, _int(1, 100_000), "At most this many inputs in one request (else 413).")
    max_windows_per_input: int = setting(32, _int(1, 100_000), (
        "Long texts beyond this many windows are cut (the response header says so)."))
    stride: int | None = setting(None, _int(0, nullable=True), (
        "Overlap in tokens between the windows of long texts (token classification, and documents read "
        "whole with long_text); null: a quarter of a window."))


@dataclass(frozen=True)
class ClassificationSettings:
    """What a classification head's outputs mean."""

    multi_label: bool | None = setting(None, scalar(ParamSpec("bool", nullable=True)), (
        "null: multi-label exactly when config.json says problem_type `multi_label_classification`."))
    label_thresholds: Mapping[str, float] = setting({}, mapping(
        "a mapping of label names to numbers between 0 and 1", read_label_thresholds), (
        "Per-label sigmoid thresholds for multi-label models (`hflabels train` tunes them); other labels "
        "use parameters.threshold."))
    calibration: Calibration | None = setting(None, mapping(
        "a mapping: temperature (a number, or one per label), logit_adjustment (label -> number), "
        "top_label (confidence and accuracy: lists of knots)", read_calibration), (
        "Calibrated scores: activation((logits - logit_adjustment) / temperature); single-label, the "
        "top score then mapped through the top_label curve (held-out accuracy against confidence) and "
        "the others rescaled, the answer unchanged. Written by `hflabels train` and `hflabels calibrate`; "
        "null: the model's own scores."))


@dataclass(frozen=True)
class ZeroShotSettings:
    """Zero-shot classification."""

    max_candidate_labels: int = setting(64, _int(1, 10_000), (
        "At most this many candidate labels per request (each is a row of the batch)."))


@dataclass(frozen=True)
class GenerationSettings:
    """Text generation."""

    max_new_tokens_limit: int = setting(256, _int(1, 1_000_000), (
        "Hard cap on generated tokens, so no request can exceed TorchServe's responseTimeout or "
        "max_response_size (a response over that kills the worker)."))


@dataclass(frozen=True)
class ExplanationSettings:
    """`/explanations` (integrated gradients)."""

    steps: int = setting(32, _int(1, MAX_EXPLAIN_STEPS), "Integrated-gradients steps for /explanations.")


@dataclass(frozen=True)
class ServingSettings:
    """What the server around the model does."""

    cache_size_mb: float = setting(0.0, scalar(ParamSpec("float", minimum=0.0, maximum=1_000_000.0)), (
        "A response cache of this many MB per worker (0: off)."))
    profile: bool = setting(False, _bool(), (
        "TorchServe's own switch: ts_handler_preprocess/inference/postprocess timings as metrics."))
    response_format: ResponseFormatSetting = setting(ResponseFormatSetting.AUTO, mapping(
        f"one of {', '.join(repr(m.value) for m in ResponseFormatSetting)}", _response_format), (
        "Answer shapes: the pipelines', the inference API's, or `auto`: the inference API's for requests "
        "whose User-Agent is huggingface_hub's. A request's `x-response-format` header wins."))


@dataclass(frozen=True)
class MonitoringSettings:
    """What the metrics say about the predictions (handler/serving/metrics.py)."""

    metrics_label_limit: int = setting(50, _int(1, 10_000), (
        "The Label dimension names at most this many labels (by index); the rest count as `__other__`."))
    drift_window: int = setting(200, _int(10, 1_000_000), (
        "Drift tests each consecutive window of this many computed answers against the reference; the workers "
        "of a model (maxWorkers above 1) fill common windows."))
    drift_level: float = setting(0.01, _positive(0.5), (
        "The false-alarm rate: a window of traffic drawn like the reference raises DriftAlarm with probability "
        "at most this (split evenly over the window's tests)."))
    drift_permutations: int = setting(500, _int(20, 100_000), (
        "Permutations of the input test; its smallest p-value is 1 / (1 + this), so it must be able to go "
        "below the level of each test."))
    drift_clear_windows: int = setting(2, _int(1, 1_000), (
        "DriftAlarm, once raised, clears after this many consecutive windows in which no test rejects."))
    reference: DriftReference | None = setting(None, mapping(
        "a mapping: labels (label -> share), confidence (a list of shares), examples, inputs (file, examples, "
        "bandwidth)", read_drift_reference), (
        "What the model predicted on held-out data and, in `inputs`, the file of its representations of them "
        "(written by `hflabels train` and `hflabels calibrate`); null: no drift tests."))

    def __post_init__(self) -> None:
        # The input test's smallest p-value must be able to reject at its share of the level.
        tests = 3 if self.reference is not None and self.reference.inputs is not None else 2
        if 1.0 / (1 + self.drift_permutations) > self.drift_level / tests:
            needed = int(tests / self.drift_level)
            raise ValueError(
                f"handler.monitoring.drift_permutations {self.drift_permutations} cannot reject at drift_level "
                f"{self.drift_level:g} split over {tests} tests: use at least {needed}"
            )
