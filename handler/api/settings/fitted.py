"""Settings that are fitted data, not switches: what ``hflabels train`` and ``hflabels calibrate``
write into ``model-config.yaml`` (calibration, prediction-set thresholds, abstention, the drift
reference), each with the check that reads it back at load."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from handler.api.parameters import ParamSpec, check_value, json_type
from handler.api.settings.checks import choice, empty_mapping, require_mapping, unknown_keys
from handler.api.settings.options import ConformalMethod


@dataclass(frozen=True)
class TopLabelCurve:
    """Knots of the held-out accuracy against top-label confidence (within 0-1; confidence
    increasing, accuracy non-decreasing)."""

    confidence: tuple[float, ...]
    accuracy: tuple[float, ...]


@dataclass(frozen=True)
class Calibration:
    """Served scores are activation((logits - logit_adjustment) / temperature), per label, then
    (single-label) the top score through ``top_label``; what ``hflabels train`` fits on its
    validation split (prior correction, temperature, top-label curve)."""

    # One temperature for every label (single-label), or one per label name (multi-label).
    temperature: float | Mapping[str, float] = 1.0
    # Subtracted from each label's logit: undoes class weights or resampling used in training.
    logit_adjustment: Mapping[str, float] = field(default_factory=empty_mapping)
    # Single-label: the top score mapped through this curve, the others rescaled (None: no map).
    top_label: TopLabelCurve | None = None


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
    # The file (in the model folder) of the model's representations of held-out inputs.
    inputs: InputReference | None = None


@dataclass(frozen=True)
class InputReference:
    """Where the input drift test's reference sample lies and how it is compared: an .npy file of
    (examples, hidden size) float32 representations, and the RBF kernel's bandwidth for them."""

    file: str
    examples: int
    bandwidth: float


def read_calibration(key: str, value: Any) -> Calibration | None:
    if value is None:
        return None
    require_mapping(key, value, "map temperature, logit_adjustment and/or top_label")
    allowed = ("logit_adjustment", "temperature", "top_label")
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise ValueError(f"{key} has unknown key(s) {', '.join(unknown)} (allowed: {', '.join(allowed)})")
    temperature = value.get("temperature", 1.0)
    positive = ParamSpec("float", minimum=0.0, exclusive_minimum=True, maximum=10_000.0)
    if isinstance(temperature, Mapping):
        temperature = MappingProxyType(
            {str(label): check_value(f"{key}.temperature.{label}", t, positive) for label, t in temperature.items()}
        )
    else:
        temperature = check_value(f"{key}.temperature", temperature, positive)
    adjustment = value.get("logit_adjustment") or {}
    if not isinstance(adjustment, Mapping):
        raise ValueError(f"{key}.logit_adjustment must map label names to numbers, got {json_type(adjustment)}")
    number = ParamSpec("float", minimum=-1_000.0, maximum=1_000.0)
    checked = {str(label): check_value(f"{key}.logit_adjustment.{label}", v, number) for label, v in adjustment.items()}
    top_label = read_top_label(f"{key}.top_label", value.get("top_label"))
    return Calibration(temperature, MappingProxyType(checked), top_label)


def read_top_label(key: str, value: Any) -> TopLabelCurve | None:
    if value is None:
        return None
    require_mapping(key, value, "map confidence and accuracy to equal-length lists of numbers")
    unknown = sorted(str(k) for k in value if k not in ("confidence", "accuracy"))
    if unknown:
        raise ValueError(f"{key} has unknown key(s) {', '.join(unknown)} (allowed: accuracy, confidence)")
    unit = ParamSpec("float", minimum=0.0, maximum=1.0)
    knots: dict[str, tuple[float, ...]] = {}
    for name in ("confidence", "accuracy"):
        listed = value.get(name)
        if not isinstance(listed, list) or len(listed) < 2:
            raise ValueError(f"{key}.{name} must be a list of two or more numbers, got {json_type(listed)}")
        knots[name] = tuple(check_value(f"{key}.{name}[{i}]", v, unit) for i, v in enumerate(listed))
        # np.interp needs increasing confidence knots; accuracy may stay flat.
        if any(b <= a if name == "confidence" else b < a for a, b in zip(knots[name], knots[name][1:])):
            raise ValueError(f"{key}.{name} must be " + ("increasing" if name == "confidence" else "non-decreasing"))
    if len(knots["confidence"]) != len(knots["accuracy"]):
        raise ValueError(f"{key}: confidence and accuracy must have as many knots each")
    return TopLabelCurve(knots["confidence"], knots["accuracy"])


def read_label_thresholds(key: str, value: Any) -> Mapping[str, float]:
    if value is None:
        return MappingProxyType({})
    require_mapping(key, value, "map label names to thresholds")
    checked: dict[str, float] = {}
    for label, threshold in value.items():
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold <= 1.0:
            raise ValueError(f"{key}.{label} must be a number between 0 and 1, got {threshold!r}")
        checked[str(label)] = float(threshold)
    return MappingProxyType(checked)


def _coverage_level(key: str, value: Any) -> float:
    try:
        level = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key}: coverage levels must be numbers between 0 and 1, got {value!r}") from None
    if not 0.0 < level < 1.0:
        raise ValueError(f"{key}: coverage levels must be between 0 and 1 (exclusive), got {value!r}")
    return level


def read_conformal(key: str, value: Any) -> ConformalSettings | None:
    if value is None:
        return None
    require_mapping(key, value, "map method, examples and thresholds")
    unknown_keys(key, value, ("examples", "method", "thresholds"))
    for name in ("method", "examples", "thresholds"):
        if name not in value:
            raise ValueError(f"{key}.{name} is missing (hflabels train and hflabels calibrate write it)")
    method = choice(ConformalMethod)(f"{key}.method", value["method"])
    examples = check_value(f"{key}.examples", value["examples"], ParamSpec("int", minimum=1))
    thresholds = value["thresholds"]
    if not isinstance(thresholds, Mapping) or not thresholds:
        raise ValueError(f"{key}.thresholds must map coverage levels to thresholds, got {json_type(thresholds)}")
    number = ParamSpec("float", minimum=-1.0, maximum=2.0)
    checked: dict[float, Any] = {}
    for level, threshold in thresholds.items():
        where = f"{key}.thresholds.{level}"
        coverage = _coverage_level(where, level)
        if method.per_label:
            if not isinstance(threshold, Mapping) or not threshold:
                raise ValueError(f"{where} must map every label to its threshold ({method.value})")
            checked[coverage] = MappingProxyType(
                {str(label): check_value(f"{where}.{label}", t, number) for label, t in threshold.items()}
            )
        else:
            checked[coverage] = check_value(where, threshold, number)
    return ConformalSettings(method, examples, MappingProxyType(checked))


def read_abstention(key: str, value: Any) -> AbstentionSettings | None:
    if value is None:
        return None
    require_mapping(key, value, "map threshold (and max_error, confidence, examples)")
    unknown_keys(key, value, ("confidence", "examples", "max_error", "threshold"))
    if "threshold" not in value:
        raise ValueError(f"{key}.threshold is missing")
    share = ParamSpec("float", minimum=0.0, maximum=1.0, nullable=True)
    return AbstentionSettings(
        threshold=check_value(f"{key}.threshold", value["threshold"], ParamSpec("float", minimum=0.0, maximum=1.0)),
        max_error=check_value(f"{key}.max_error", value.get("max_error"), share),
        confidence=check_value(f"{key}.confidence", value.get("confidence"), share),
        examples=check_value(f"{key}.examples", value.get("examples"), ParamSpec("int", minimum=1, nullable=True)),
    )


def read_drift_reference(key: str, value: Any) -> DriftReference | None:
    if value is None:
        return None
    require_mapping(key, value, "map labels and confidence to shares")
    unknown_keys(key, value, ("confidence", "examples", "inputs", "labels"))
    labels, confidence = value.get("labels"), value.get("confidence")
    share = ParamSpec("float", minimum=0.0, maximum=1.0)
    if not isinstance(labels, Mapping) or not labels:
        raise ValueError(f"{key}.labels must map label names to their shares, got {json_type(labels)}")
    if not isinstance(confidence, list) or not confidence:
        raise ValueError(f"{key}.confidence must list the confidence buckets' shares, got {json_type(confidence)}")
    return DriftReference(
        MappingProxyType({str(label): check_value(f"{key}.labels.{label}", v, share) for label, v in labels.items()}),
        tuple(check_value(f"{key}.confidence[{i}]", v, share) for i, v in enumerate(confidence)),
        check_value(f"{key}.examples", value.get("examples"), ParamSpec("int", minimum=1, nullable=True)),
        read_input_reference(f"{key}.inputs", value.get("inputs")),
    )


def read_input_reference(key: str, value: Any) -> InputReference | None:
    if value is None:
        return None
    require_mapping(key, value, "map file, examples and bandwidth")
    unknown_keys(key, value, ("bandwidth", "examples", "file"))
    file = value.get("file")
    if not isinstance(file, str) or not file.endswith(".npy") or "/" in file or file.startswith("."):
        raise ValueError(f"{key}.file must name an .npy file in the model folder, got {file!r}")
    return InputReference(
        file,
        check_value(f"{key}.examples", value.get("examples"), ParamSpec("int", minimum=10)),
        check_value(f"{key}.bandwidth", value.get("bandwidth"),
                    ParamSpec("float", minimum=0.0, exclusive_minimum=True)),  # fmt: skip
    )
