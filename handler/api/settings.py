"""The ``handler:`` section of ``model-config.yaml``, read once at load into a frozen object."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from handler.api.choices import enum_member, enum_values
from handler.api.client_shapes import ResponseFormatSetting
from handler.api.errors import ConfigurationError
from handler.api.parameters import ParamSpec, check_value, json_type
from handler.api.tasks import Task

_DTYPES = ("float32", "float16", "bfloat16")
# Other int8 schemes (per-channel scales, a float32 head) were measured and not offered: they
# moved scores as much and ran slower (README, Performance; handler.engine.model_loading.quantized).
_QUANTIZATION = ("none", "dynamic_int8")
_ATTENTION = ("sdpa", "eager")
# Integrated gradients runs this many interpolated inputs in one batch: bounded for memory.
MAX_EXPLAIN_STEPS = 512


@dataclass(frozen=True)
class Calibration:
    """Served scores are activation((logits - logit_adjustment) / temperature), per label; what
    ``hflabels train`` fits on its validation split (prior correction, then temperature)."""

    # One temperature for every label (single-label), or one per label name (multi-label).
    temperature: float | Mapping[str, float] = 1.0
    # Subtracted from each label's logit: undoes class weights or resampling used in training.
    logit_adjustment: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class HandlerSettings:
    """Every key the ``handler:`` section accepts; the defaults are what an absent key means."""

    # The mode to serve; None infers it from config.json "architectures".
    task: Task | None = None
    # Inputs are truncated (or windowed) at min(max_length, the model's own limit).
    max_length: int = 512
    # None: multi-label exactly when config.json says problem_type "multi_label_classification".
    multi_label: bool | None = None
    # Per-label sigmoid thresholds for multi-label models; others use parameters.threshold.
    label_thresholds: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    # Defaults for the request "parameters" object; same names and rules as requests.
    parameters: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # Overlap in tokens between the windows of long texts (token classification, and documents
    # read whole with long_text); None: a quarter of a window.
    stride: int | None = None
    # Sequence classification of a text longer than one window: truncate (the pipeline's way), or
    # score every window and answer their mean or, per label, their max. parameters.long_text wins.
    long_text: str = "truncate"
    # The fixed cost of one forward pass, in tokens' worth of compute: a batch sorted by length is
    # cut into passes where padding would cost more than another pass. Larger favours fewer passes.
    # None ("auto"): measured at load on the serving device (handler/engine/pass_costs.py).
    batch_overhead_tokens: int | None = None
    # At most this many inputs in one forward pass.
    micro_batch_size: int = 32
    # At most this many tokens in one pass: rows x longest row when padded, real tokens when packed.
    max_batch_tokens: int = 8192
    # Sort a batch by length before cutting it into passes (false: arrival order).
    sort_by_length: bool = True
    # Padding-free passes for the encoders that have them (handler/engine/packed_encoder.py): the
    # per-token layers see only real tokens. None ("auto"): timed against padded passes at load,
    # the faster serves. True: whenever the model allows; false: the model's own padded forward.
    packed_forward: bool | None = None
    # Threads per worker for torch; None keeps torch's default (one per physical core).
    torch_num_threads: int | None = None
    max_inputs_per_request: int = 64
    # Zero-shot: at most this many candidate labels per request (each is a row of the batch).
    max_candidate_labels: int = 64
    # Long texts beyond this many windows are cut (the response header says so).
    max_windows_per_input: int = 32
    # Hard cap on generated tokens, so no request can exceed TorchServe's responseTimeout or
    # max_response_size (a response over that kills the worker).
    max_new_tokens_limit: int = 256
    # Pickled weights (.bin/.pt) can run code when loaded; safetensors only unless this is set.
    allow_pickle_weights: bool = False
    dtype: str = "float32"
    quantization: str = "none"
    torch_compile: bool = False
    attn_implementation: str | None = None
    # Integrated-gradients steps for /explanations.
    explain_steps: int = 32
    # Calibrated scores (sequence classification and tasks built on it); None: the model's own.
    calibration: Calibration | None = None
    # TorchServe's own switch: ts_handler_preprocess/inference/postprocess timings as metrics.
    profile: bool = False
    # A response cache of this many MB per worker (0: off): repeated requests are answered from
    # it without running the model (handler/serving/response_cache.py).
    cache_size_mb: float = 0.0
    # Answer shapes: the pipelines', the inference API's (InferenceClient), or auto: the inference
    # API's for requests whose User-Agent is huggingface_hub's. A request's x-response-format wins.
    response_format: ResponseFormatSetting = ResponseFormatSetting.AUTO

    @classmethod
    def from_mapping(cls, raw: Any) -> HandlerSettings:
        """Validate ``model_yaml_config["handler"]``; every problem is named in one error."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ConfigurationError(f"model-config.yaml: the handler section must be a mapping, got {json_type(raw)}")
        problems: list[str] = []
        unknown = sorted(str(key) for key in raw if key not in _VALIDATORS)
        if unknown:
            problems.append(f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_VALIDATORS))})")
        values: dict[str, Any] = {}
        for key, value in raw.items():
            if key in _VALIDATORS:
                try:
                    values[key] = _VALIDATORS[key](f"handler.{key}", value)
                except ValueError as error:
                    problems.append(str(error))
        if problems:
            raise ConfigurationError("model-config.yaml: " + "; ".join(problems))
        return cls(**values)

    def effective_max_length(self, model_limit: int | None) -> int:
        if model_limit is None or model_limit <= 0:
            return self.max_length
        return min(self.max_length, model_limit)


def _scalar(spec: ParamSpec) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        return check_value(name, value, spec)

    return check


def _auto_or(spec: ParamSpec) -> Callable[[str, Any], Any]:
    """A value of ``spec``, or "auto" (or null): None, measured at load."""

    def check(name: str, value: Any) -> Any:
        if value is None or value == "auto":
            return None
        try:
            return check_value(name, value, spec)
        except ValueError as error:
            raise ValueError(f'{error} (or "auto")') from None

    return check


def _task(name: str, value: Any) -> Task | None:
    if value is None:
        return None
    try:
        return Task.parse(value)
    except ConfigurationError as error:
        raise ValueError(f"{name}: {error}") from None


def _response_format(name: str, value: Any) -> ResponseFormatSetting:
    chosen = enum_member(ResponseFormatSetting, value)
    if chosen is None:
        raise ValueError(f"{name} must be one of {enum_values(ResponseFormatSetting)}, got {value!r}")
    return chosen


def _calibration(name: str, value: Any) -> Calibration | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must map temperature and/or logit_adjustment, got {json_type(value)}")
    unknown = sorted(str(key) for key in value if key not in ("temperature", "logit_adjustment"))
    if unknown:
        raise ValueError(f"{name} has unknown key(s) {', '.join(unknown)} (allowed: logit_adjustment, temperature)")
    temperature = value.get("temperature", 1.0)
    positive = ParamSpec("float", minimum=0.0, exclusive_minimum=True, maximum=10_000.0)
    if isinstance(temperature, Mapping):
        temperature = MappingProxyType(
            {str(label): check_value(f"{name}.temperature.{label}", t, positive) for label, t in temperature.items()}
        )
    else:
        temperature = check_value(f"{name}.temperature", temperature, positive)
    adjustment = value.get("logit_adjustment") or {}
    if not isinstance(adjustment, Mapping):
        raise ValueError(f"{name}.logit_adjustment must map label names to numbers, got {json_type(adjustment)}")
    number = ParamSpec("float", minimum=-1_000.0, maximum=1_000.0)
    checked = {
        str(label): check_value(f"{name}.logit_adjustment.{label}", v, number) for label, v in adjustment.items()
    }
    return Calibration(temperature, MappingProxyType(checked))


def _label_thresholds(name: str, value: Any) -> Mapping[str, float]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must map label names to thresholds, got {json_type(value)}")
    checked: dict[str, float] = {}
    for label, threshold in value.items():
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"{name}.{label} must be a number between 0 and 1, got {threshold!r}")
        checked[str(label)] = float(threshold)
    return MappingProxyType(checked)


def _parameters(name: str, value: Any) -> Mapping[str, Any]:
    # Contents are checked against the task's parameter schema once the task is known.
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a mapping of request parameter defaults, got {json_type(value)}")
    return MappingProxyType(dict(value))


_VALIDATORS = {
    "task": _task,
    "max_length": _scalar(ParamSpec("int", minimum=2, maximum=1_000_000)),
    "multi_label": _scalar(ParamSpec("bool", nullable=True)),
    "label_thresholds": _label_thresholds,
    "parameters": _parameters,
    "stride": _scalar(ParamSpec("int", minimum=0, nullable=True)),
    "long_text": _scalar(ParamSpec("choice", choices=("truncate", "mean", "max"))),
    "batch_overhead_tokens": _auto_or(ParamSpec("int", minimum=0, maximum=1_000_000)),
    "micro_batch_size": _scalar(ParamSpec("int", minimum=1, maximum=4096)),
    "max_batch_tokens": _scalar(ParamSpec("int", minimum=1)),
    "sort_by_length": _scalar(ParamSpec("bool")),
    "packed_forward": _auto_or(ParamSpec("bool")),
    "torch_num_threads": _scalar(ParamSpec("int", minimum=1, maximum=1024, nullable=True)),
    "max_inputs_per_request": _scalar(ParamSpec("int", minimum=1, maximum=100_000)),
    "max_candidate_labels": _scalar(ParamSpec("int", minimum=1, maximum=10_000)),
    "max_windows_per_input": _scalar(ParamSpec("int", minimum=1, maximum=100_000)),
    "max_new_tokens_limit": _scalar(ParamSpec("int", minimum=1, maximum=1_000_000)),
    "allow_pickle_weights": _scalar(ParamSpec("bool")),
    "dtype": _scalar(ParamSpec("choice", choices=_DTYPES)),
    "quantization": _scalar(ParamSpec("choice", choices=_QUANTIZATION)),
    "torch_compile": _scalar(ParamSpec("bool")),
    "attn_implementation": _scalar(ParamSpec("choice", choices=_ATTENTION, nullable=True)),
    "explain_steps": _scalar(ParamSpec("int", minimum=1, maximum=MAX_EXPLAIN_STEPS)),
    "profile": _scalar(ParamSpec("bool")),
    "cache_size_mb": _scalar(ParamSpec("float", minimum=0.0, maximum=1_000_000.0)),
    "calibration": _calibration,
    "response_format": _response_format,
}

assert set(_VALIDATORS) == {f.name for f in fields(HandlerSettings)}, "every setting needs a validator"
