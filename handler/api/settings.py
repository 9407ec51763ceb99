"""The ``handler:`` section of ``model-config.yaml``, read once at load into a frozen object.

Settings come in groups, each a frozen dataclass: ``loading`` (how the weights are loaded and
run), ``batching`` (how a batch is cut into forward passes), ``limits`` (what one request may
ask), ``classification``, ``zero_shot``, ``generation`` and ``explanations`` (per task), and
``serving`` (what the server around the model does); ``task`` and ``parameters`` (request
defaults) stand alone. The grouped spelling is current::

    handler:
      loading: {dtype: bfloat16}
      batching: {micro_batch_size: 16}

The flat keys of earlier releases (``handler: {dtype: bfloat16, micro_batch_size: 16}``) are still
read, so an archive made before loads as it did; ``long_text`` is read as ``parameters.long_text``,
its one current spelling. A key given both ways is refused.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from handler.api.choices import enum_member, enum_values
from handler.api.client_shapes import ResponseFormatSetting
from handler.api.errors import ConfigurationError
from handler.api.parameters import ParamSpec, check_value, json_type
from handler.api.tasks import Task

# Integrated gradients runs this many interpolated inputs in one batch: bounded for memory.
MAX_EXPLAIN_STEPS = 512


class Precision(str, enum.Enum):
    """``loading.dtype``: the dtype the weights are loaded in; ``auto``: float32 weights, with bf16
    autocast where it is fast here and agrees with float32 on a probe (handler/engine/precision.py)."""

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"
    AUTO = "auto"


class Quantization(str, enum.Enum):
    """``loading.quantization``. Other int8 schemes (per-channel scales, a float32 head) were
    measured and not offered: they moved scores as much and ran slower (README, Performance)."""

    NONE = "none"
    DYNAMIC_INT8 = "dynamic_int8"


class Backend(str, enum.Enum):
    """``loading.backend``: what runs an encoder's forward (handler/engine/openvino_backend.py)."""

    TORCH = "torch"
    OPENVINO = "openvino"


class Float32Linear(str, enum.Enum):
    """``loading.float32_linear``: which CPU kernel runs float32 linear layers
    (handler/engine/linear_kernels.py); auto: the faster of the two, timed at load."""

    AUTO = "auto"
    TORCH = "torch"
    ONEDNN = "onednn"


class AttentionImplementation(str, enum.Enum):
    SDPA = "sdpa"
    EAGER = "eager"


class ConformalMethod(str, enum.Enum):
    """``conformal.method``: how prediction sets were fitted (handler/postprocess/conformal.py)."""

    LAC = "lac"
    APS = "aps"
    CLASS_CONDITIONAL = "class_conditional"
    FNR_CONTROL = "fnr_control"

    @property
    def per_label(self) -> bool:
        return self is ConformalMethod.CLASS_CONDITIONAL

    @property
    def multi_label(self) -> bool:
        return self is ConformalMethod.FNR_CONTROL


class LongText(str, enum.Enum):
    """``parameters.long_text``: a text longer than the window is cut (the pipeline's way), or
    read whole and its windows' scores averaged or maxed per label (sequence classification)."""

    TRUNCATE = "truncate"
    MEAN = "mean"
    MAX = "max"

    @property
    def windowed(self) -> bool:
        return self is not LongText.TRUNCATE


@dataclass(frozen=True)
class Calibration:
    """Served scores are activation((logits - logit_adjustment) / temperature), per label; what
    ``hflabels train`` fits on its validation split (prior correction, then temperature)."""

    # One temperature for every label (single-label), or one per label name (multi-label).
    temperature: float | Mapping[str, float] = 1.0
    # Subtracted from each label's logit: undoes class weights or resampling used in training.
    logit_adjustment: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))


def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class LoadingSettings:
    """How the weights are loaded and run."""

    dtype: Precision = Precision.AUTO
    # dtype auto: the largest probability change on the probe that low precision may make.
    dtype_tolerance: float = 0.02
    quantization: Quantization = Quantization.NONE
    torch_compile: bool = False
    backend: Backend = Backend.TORCH
    float32_linear: Float32Linear = Float32Linear.AUTO
    # None: transformers' default (sdpa).
    attn_implementation: AttentionImplementation | None = None
    # Pickled weights (.bin/.pt) can run code when loaded; safetensors only unless this is set.
    allow_pickle_weights: bool = False
    # Threads per worker for torch; None keeps torch's default (one per physical core).
    torch_num_threads: int | None = None


@dataclass(frozen=True)
class BatchingSettings:
    """How the inputs of a TorchServe batch are cut into forward passes."""

    # At most this many inputs in one forward pass.
    micro_batch_size: int = 32
    # At most this many tokens in one pass: rows x longest row when padded, real tokens when packed.
    max_batch_tokens: int = 8192
    # Sort a batch by length before cutting it into passes (false: arrival order).
    sort_by_length: bool = True
    # Padding-free passes for the encoders that have them (handler/engine/packed_encoder.py).
    # None ("auto"): timed against padded passes at load, the faster serves.
    packed_forward: bool | None = None
    # The fixed cost of one padded pass, in tokens' worth of compute: a batch sorted by length is
    # cut where padding would cost more than another pass. None ("auto"): measured at load.
    batch_overhead_tokens: int | None = None


@dataclass(frozen=True)
class LimitSettings:
    """What one request may ask, and where long inputs are cut."""

    # Inputs are truncated (or windowed) at min(max_length, the model's own limit).
    max_length: int = 512
    max_inputs_per_request: int = 64
    # Long texts beyond this many windows are cut (the response header says so).
    max_windows_per_input: int = 32
    # Overlap in tokens between the windows of long texts (token classification, and documents
    # read whole with long_text); None: a quarter of a window.
    stride: int | None = None


@dataclass(frozen=True)
class ClassificationSettings:
    """What a classification head's outputs mean."""

    # None: multi-label exactly when config.json says problem_type "multi_label_classification".
    multi_label: bool | None = None
    # Per-label sigmoid thresholds for multi-label models; others use parameters.threshold.
    label_thresholds: Mapping[str, float] = field(default_factory=_empty)
    # Calibrated scores (and the tasks built on them); None: the model's own.
    calibration: Calibration | None = None


@dataclass(frozen=True)
class ZeroShotSettings:
    # At most this many candidate labels per request (each is a row of the batch).
    max_candidate_labels: int = 64


@dataclass(frozen=True)
class GenerationSettings:
    # Hard cap on generated tokens, so no request can exceed TorchServe's responseTimeout or
    # max_response_size (a response over that kills the worker).
    max_new_tokens_limit: int = 256


@dataclass(frozen=True)
class ExplanationSettings:
    # Integrated-gradients steps for /explanations.
    steps: int = 32


@dataclass(frozen=True)
class ServingSettings:
    """What the server around the model does."""

    # A response cache of this many MB per worker (0: off; handler/serving/response_cache.py).
    cache_size_mb: float = 0.0
    # TorchServe's own switch: ts_handler_preprocess/inference/postprocess timings as metrics.
    profile: bool = False
    # Answer shapes: the pipelines', the inference API's, or auto: the inference API's for
    # requests whose User-Agent is huggingface_hub's. A request's x-response-format wins.
    response_format: ResponseFormatSetting = ResponseFormatSetting.AUTO


@dataclass(frozen=True)
class ConformalSettings:
    """``handler.conformal``: prediction-set thresholds fitted on held-out examples (``hflabels
    train`` or ``hflabels calibrate``), per coverage level."""

    method: ConformalMethod
    # Held-out examples the thresholds come from.
    examples: int
    # Coverage level -> threshold (class_conditional: label name -> threshold).
    thresholds: Mapping[float, float | Mapping[str, float]]

    def levels(self) -> tuple[float, ...]:
        return tuple(sorted(self.thresholds))


@dataclass(frozen=True)
class AbstentionSettings:
    """``handler.abstention``: answers whose top score is below ``threshold`` abstain (when asked);
    fitted so the error among answered inputs is at most ``max_error`` with ``confidence``."""

    threshold: float
    max_error: float | None = None
    confidence: float | None = None
    examples: int | None = None


@dataclass(frozen=True)
class DriftReference:
    """What the model predicted on held-out data: top-label shares by name, and the shares of
    top-label confidence in the buckets of handler/postprocess/monitoring.py."""

    labels: Mapping[str, float]
    confidence: tuple[float, ...]
    examples: int | None = None


@dataclass(frozen=True)
class MonitoringSettings:
    """What the metrics say about the predictions (handler/serving/metrics.py)."""

    # The Label dimension names at most this many labels (by index); the rest count as __other__.
    metrics_label_limit: int = 50
    # Drift compares the latest this-many predictions of a worker with the reference.
    drift_window: int = 500
    # The alarm (DriftAlarm 1, a warning in the log) when a PSI or a JS distance exceeds these.
    drift_psi_alarm: float = 0.25
    drift_js_alarm: float = 0.2
    # None: no drift gauges (hflabels train / calibrate write it).
    reference: DriftReference | None = None


@dataclass(frozen=True)
class HandlerSettings:
    """Every key the ``handler:`` section accepts; the defaults are what an absent key means."""

    # The mode to serve; None infers it from config.json "architectures".
    task: Task | None = None
    # Defaults for the request "parameters" object; same names and rules as requests.
    parameters: Mapping[str, Any] = field(default_factory=_empty)
    loading: LoadingSettings = LoadingSettings()
    batching: BatchingSettings = BatchingSettings()
    limits: LimitSettings = LimitSettings()
    classification: ClassificationSettings = ClassificationSettings()
    zero_shot: ZeroShotSettings = ZeroShotSettings()
    generation: GenerationSettings = GenerationSettings()
    explanations: ExplanationSettings = ExplanationSettings()
    serving: ServingSettings = ServingSettings()
    monitoring: MonitoringSettings = MonitoringSettings()
    conformal: ConformalSettings | None = None
    abstention: AbstentionSettings | None = None

    @classmethod
    def from_mapping(cls, raw: Any) -> HandlerSettings:
        """Validate ``model_yaml_config["handler"]``; every problem is named in one error."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ConfigurationError(f"model-config.yaml: the handler section must be a mapping, got {json_type(raw)}")
        problems: list[str] = []
        grouped = _grouped(raw, problems)
        values: dict[str, Any] = {}
        for name, value in grouped.items():
            if name in _GROUPS:
                values[name] = _group(_GROUPS[name], f"handler.{name}", value, problems)
            else:
                try:
                    values[name] = _TOP_LEVEL[name](f"handler.{name}", value)
                except ValueError as error:
                    problems.append(str(error))
        if problems:
            raise ConfigurationError("model-config.yaml: " + "; ".join(problems))
        return cls(**values)

    def effective_max_length(self, model_limit: int | None) -> int:
        if model_limit is None or model_limit <= 0:
            return self.limits.max_length
        return min(self.limits.max_length, model_limit)


def _scalar(spec: ParamSpec) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        return check_value(name, value, spec)

    return check


def _choice(kind: type[enum.Enum], nullable: bool = False) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if value is None and nullable:
            return None
        member = enum_member(kind, value)
        if member is None:
            choices = ", ".join(repr(str(m.value)) for m in kind)
            raise ValueError(f"{name} must be one of {choices}{' or null' if nullable else ''}, got {value!r}")
        return member

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


def _unknown_keys(name: str, value: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(str(key) for key in value if key not in allowed)
    if unknown:
        raise ValueError(f"{name} has unknown key(s) {', '.join(unknown)} (allowed: {', '.join(allowed)})")


def _coverage_level(name: str, value: Any) -> float:
    try:
        level = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: coverage levels must be numbers between 0 and 1, got {value!r}") from None
    if not 0.0 < level < 1.0:
        raise ValueError(f"{name}: coverage levels must be between 0 and 1 (exclusive), got {value!r}")
    return level


def _conformal(name: str, value: Any) -> ConformalSettings | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must map method, examples and thresholds, got {json_type(value)}")
    _unknown_keys(name, value, ("examples", "method", "thresholds"))
    for key in ("method", "examples", "thresholds"):
        if key not in value:
            raise ValueError(f"{name}.{key} is missing (hflabels train and hflabels calibrate write it)")
    method = _choice(ConformalMethod)(f"{name}.method", value["method"])
    examples = check_value(f"{name}.examples", value["examples"], ParamSpec("int", minimum=1))
    thresholds = value["thresholds"]
    if not isinstance(thresholds, Mapping) or not thresholds:
        raise ValueError(f"{name}.thresholds must map coverage levels to thresholds, got {json_type(thresholds)}")
    number = ParamSpec("float", minimum=-1.0, maximum=2.0)
    checked: dict[float, Any] = {}
    for level, threshold in thresholds.items():
        where = f"{name}.thresholds.{level}"
        key = _coverage_level(where, level)
        if method.per_label:
            if not isinstance(threshold, Mapping) or not threshold:
                raise ValueError(f"{where} must map every label to its threshold ({method.value})")
            checked[key] = MappingProxyType(
                {str(label): check_value(f"{where}.{label}", t, number) for label, t in threshold.items()}
            )
        else:
            checked[key] = check_value(where, threshold, number)
    return ConformalSettings(method, examples, MappingProxyType(checked))


def _abstention(name: str, value: Any) -> AbstentionSettings | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must map threshold (and max_error, confidence, examples), got {json_type(value)}")
    _unknown_keys(name, value, ("confidence", "examples", "max_error", "threshold"))
    if "threshold" not in value:
        raise ValueError(f"{name}.threshold is missing")
    share = ParamSpec("float", minimum=0.0, maximum=1.0, nullable=True)
    return AbstentionSettings(
        threshold=check_value(f"{name}.threshold", value["threshold"], ParamSpec("float", minimum=0.0, maximum=1.0)),
        max_error=check_value(f"{name}.max_error", value.get("max_error"), share),
        confidence=check_value(f"{name}.confidence", value.get("confidence"), share),
        examples=check_value(f"{name}.examples", value.get("examples"), ParamSpec("int", minimum=1, nullable=True)),
    )


def _drift_reference(name: str, value: Any) -> DriftReference | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must map labels and confidence to shares, got {json_type(value)}")
    _unknown_keys(name, value, ("confidence", "examples", "labels"))
    labels, confidence = value.get("labels"), value.get("confidence")
    share = ParamSpec("float", minimum=0.0, maximum=1.0)
    if not isinstance(labels, Mapping) or not labels:
        raise ValueError(f"{name}.labels must map label names to their shares, got {json_type(labels)}")
    if not isinstance(confidence, list) or not confidence:
        raise ValueError(f"{name}.confidence must list the confidence buckets' shares, got {json_type(confidence)}")
    return DriftReference(
        MappingProxyType({str(label): check_value(f"{name}.labels.{label}", v, share) for label, v in labels.items()}),
        tuple(check_value(f"{name}.confidence[{i}]", v, share) for i, v in enumerate(confidence)),
        check_value(f"{name}.examples", value.get("examples"), ParamSpec("int", minimum=1, nullable=True)),
    )


def _parameters(name: str, value: Any) -> Mapping[str, Any]:
    # Contents are checked against the task's parameter schema once the task is known.
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a mapping of request parameter defaults, got {json_type(value)}")
    return MappingProxyType(dict(value))


# Per group: its settings class and each key's validator.
_GROUPS: dict[str, tuple[type, dict[str, Callable[[str, Any], Any]]]] = {
    "loading": (LoadingSettings, {
        "dtype": _choice(Precision),
        "dtype_tolerance": _scalar(ParamSpec("float", minimum=0.0, exclusive_minimum=True, maximum=1.0)),
        "quantization": _choice(Quantization),
        "torch_compile": _scalar(ParamSpec("bool")),
        "backend": _choice(Backend),
        "float32_linear": _choice(Float32Linear),
        "attn_implementation": _choice(AttentionImplementation, nullable=True),
        "allow_pickle_weights": _scalar(ParamSpec("bool")),
        "torch_num_threads": _scalar(ParamSpec("int", minimum=1, maximum=1024, nullable=True)),
    }),
    "batching": (BatchingSettings, {
        "micro_batch_size": _scalar(ParamSpec("int", minimum=1, maximum=4096)),
        "max_batch_tokens": _scalar(ParamSpec("int", minimum=1)),
        "sort_by_length": _scalar(ParamSpec("bool")),
        "packed_forward": _auto_or(ParamSpec("bool")),
        "batch_overhead_tokens": _auto_or(ParamSpec("int", minimum=0, maximum=1_000_000)),
    }),
    "limits": (LimitSettings, {
        "max_length": _scalar(ParamSpec("int", minimum=2, maximum=1_000_000)),
        "max_inputs_per_request": _scalar(ParamSpec("int", minimum=1, maximum=100_000)),
        "max_windows_per_input": _scalar(ParamSpec("int", minimum=1, maximum=100_000)),
        "stride": _scalar(ParamSpec("int", minimum=0, nullable=True)),
    }),
    "classification": (ClassificationSettings, {
        "multi_label": _scalar(ParamSpec("bool", nullable=True)),
        "label_thresholds": _label_thresholds,
        "calibration": _calibration,
    }),
    "zero_shot": (ZeroShotSettings, {"max_candidate_labels": _scalar(ParamSpec("int", minimum=1, maximum=10_000))}),
    "generation": (GenerationSettings, {
        "max_new_tokens_limit": _scalar(ParamSpec("int", minimum=1, maximum=1_000_000)),
    }),
    "explanations": (ExplanationSettings, {"steps": _scalar(ParamSpec("int", minimum=1, maximum=MAX_EXPLAIN_STEPS))}),
    "serving": (ServingSettings, {
        "cache_size_mb": _scalar(ParamSpec("float", minimum=0.0, maximum=1_000_000.0)),
        "profile": _scalar(ParamSpec("bool")),
        "response_format": _response_format,
    }),
    "monitoring": (MonitoringSettings, {
        "metrics_label_limit": _scalar(ParamSpec("int", minimum=1, maximum=10_000)),
        "drift_window": _scalar(ParamSpec("int", minimum=10, maximum=1_000_000)),
        "drift_psi_alarm": _scalar(ParamSpec("float", minimum=0.0, exclusive_minimum=True, maximum=100.0)),
        "drift_js_alarm": _scalar(ParamSpec("float", minimum=0.0, exclusive_minimum=True, maximum=1.0)),
        "reference": _drift_reference,
    }),
}  # fmt: skip
_TOP_LEVEL: dict[str, Callable[[str, Any], Any]] = {
    "task": _task,
    "parameters": _parameters,
    "conformal": _conformal,
    "abstention": _abstention,
}
# The flat keys of earlier releases, and where each lives now.
FLAT_KEYS: dict[str, tuple[str, str]] = {
    key: (group, key) for group, (_, validators) in _GROUPS.items() for key in validators
} | {"explain_steps": ("explanations", "steps"), "long_text": ("parameters", "long_text")}
FLAT_KEYS.pop("steps")
# Fitted data, not a switch: only its grouped spelling.
FLAT_KEYS.pop("reference")


def _grouped(raw: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    """Per group, each key's ``(value, spelling)``, the flat keys moved into their groups
    (``long_text`` into parameters); messages name a key as the file spells it."""
    known = set(_GROUPS) | set(_TOP_LEVEL) | set(FLAT_KEYS)
    unknown = sorted(str(key) for key in raw if key not in known)
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(known))})")
    grouped: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _TOP_LEVEL:
            grouped[key] = value
        elif key in _GROUPS:
            if value is not None and not isinstance(value, Mapping):
                problems.append(f"handler.{key} must be a mapping, got {json_type(value)}")
                continue
            section = grouped.setdefault(key, {})
            for name, item in (value or {}).items():
                section[name] = (item, f"handler.{key}.{name}")
    for key, value in raw.items():
        if key not in FLAT_KEYS:
            continue
        group, name = FLAT_KEYS[key]
        if key == "long_text":
            try:
                value = _choice(LongText)("handler.long_text", value).value
            except ValueError as error:
                problems.append(str(error))
                continue
            parameters = grouped.get("parameters")
            if isinstance(parameters, Mapping) and "long_text" in parameters:
                problems.append(
                    "handler.long_text is given twice: as handler.long_text and handler.parameters.long_text"
                )
            elif parameters is None or isinstance(parameters, Mapping):
                grouped["parameters"] = {**(parameters or {}), "long_text": value}
            continue
        section = grouped.setdefault(group, {})
        if name in section:
            problems.append(f"handler.{key} is given twice: as handler.{key} and as handler.{group}.{name}")
            continue
        section[name] = (value, f"handler.{key}")
    return grouped


def _group(spec: tuple[type, dict[str, Callable[[str, Any], Any]]], where: str, raw: Any, problems: list[str]) -> Any:
    """One group's settings from its ``{key: (value, spelling)}``."""
    kind, validators = spec
    unknown = sorted(str(key) for key in raw if key not in validators)
    if unknown:
        problems.append(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(validators))})")
    values: dict[str, Any] = {}
    for key, (value, spelling) in raw.items():
        if key in validators:
            try:
                values[key] = validators[key](spelling, value)
            except ValueError as error:
                problems.append(str(error))
    return kind(**values)


for _name, (_kind, _validators) in _GROUPS.items():
    assert set(_validators) == {f.name for f in fields(_kind)}, f"every {_name} setting needs a validator"
