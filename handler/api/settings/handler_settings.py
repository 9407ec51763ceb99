"""``HandlerSettings``: the whole ``handler:`` section, and how it is read from YAML.

Every key comes from the fields of the groups (groups.py) and of the top level below, each with
its check; nothing here lists keys a second time. The flat keys of earlier releases
(``handler: {dtype: bfloat16}``) are still read into their groups, so an archive made before loads
as it did; ``long_text`` is read as ``parameters.long_text``. A key given both ways is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any

from handler.api.errors import ConfigurationError
from handler.api.parameters import json_type
from handler.api.settings.checks import Check, choice, group, mapping, setting
from handler.api.settings.fitted import AbstentionSettings, ConformalSettings, read_abstention, read_conformal
from handler.api.settings.groups import (
    BatchingSettings,
    ClassificationSettings,
    ExplanationSettings,
    GenerationSettings,
    LimitSettings,
    LoadingSettings,
    MonitoringSettings,
    ServingSettings,
    ZeroShotSettings,
)
from handler.api.settings.options import LongText
from handler.api.tasks import Task


def _task(key: str, value: Any) -> Task | None:
    if value is None:
        return None
    try:
        return Task.parse(value)
    except ConfigurationError as error:
        raise ValueError(f"{key}: {error}") from None


def _parameters(key: str, value: Any) -> Mapping[str, Any]:
    # Contents are checked against the task's parameter schema once the task is known.
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, Mapping):
        raise ValueError(f"{key} must be a mapping of request parameter defaults, got {json_type(value)}")
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class HandlerSettings:
    """Every key the ``handler:`` section accepts; the defaults are what an absent key means."""

    task: Task | None = setting(None, mapping(
        "a task mode or a transformers pipeline name (text-classification, ...)", _task), (
        "The mode to serve; null infers it from config.json `architectures` (`hflabels archive --task` "
        "writes it)."))
    parameters: Mapping[str, Any] = setting({}, mapping(
        "a mapping of request parameters", _parameters), (
        "Defaults for the request `parameters` object (`top_k`, `threshold`, `long_text`, ...): same names "
        "and checks as in a request, checked against the task at load."))
    loading: LoadingSettings = group(LoadingSettings, "How the weights are loaded and run.")
    batching: BatchingSettings = group(BatchingSettings, "How a batch is cut into forward passes.")
    limits: LimitSettings = group(LimitSettings, "What one request may ask, and where long inputs are cut.")
    classification: ClassificationSettings = group(ClassificationSettings, "What a classification head's outputs mean.")  # noqa: E501
    zero_shot: ZeroShotSettings = group(ZeroShotSettings, "Zero-shot classification.")
    generation: GenerationSettings = group(GenerationSettings, "Text generation.")
    explanations: ExplanationSettings = group(ExplanationSettings, "`/explanations` (integrated gradients).")
    serving: ServingSettings = group(ServingSettings, "What the server around the model does.")
    monitoring: MonitoringSettings = group(MonitoringSettings, "What the metrics say about the predictions.")
    conformal: ConformalSettings | None = setting(None, mapping(
        "a mapping: method, examples, thresholds (coverage level -> threshold)", read_conformal), (
        "Prediction-set thresholds fitted on held-out examples, per coverage level (written by `hflabels "
        "train` and `hflabels calibrate`); null: no prediction sets."))
    abstention: AbstentionSettings | None = setting(None, mapping(
        "a mapping: threshold, max_error, confidence, examples", read_abstention), (
        "Answers whose top score is below `threshold` abstain when a request asks; fitted so the error "
        "among answered inputs is at most `max_error` with `confidence`."))

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
            if name in GROUPS:
                values[name] = _read_group(GROUPS[name], f"handler.{name}", value, problems)
            else:
                try:
                    values[name] = TOP_LEVEL[name](f"handler.{name}", value)
                except ValueError as error:
                    problems.append(str(error))
        if problems:
            raise ConfigurationError("model-config.yaml: " + "; ".join(problems))
        return cls(**values)

    def effective_max_length(self, model_limit: int | None) -> int:
        if model_limit is None or model_limit <= 0:
            return self.limits.max_length
        return min(self.limits.max_length, model_limit)


def checks_of(kind: type) -> dict[str, Check]:
    """Each key of a settings dataclass and its check, from the fields' metadata."""
    return {item.name: item.metadata["check"] for item in fields(kind)}


# Read from the fields above: group name -> its dataclass; top-level key -> its check.
GROUPS: dict[str, type] = {item.name: item.metadata["group"] for item in fields(HandlerSettings) if "group" in item.metadata}  # noqa: E501
TOP_LEVEL: dict[str, Check] = {item.name: item.metadata["check"] for item in fields(HandlerSettings) if "check" in item.metadata}  # noqa: E501
# The flat keys of earlier releases, and where each lives now.
FLAT_KEYS: dict[str, tuple[str, str]] = {
    key: (name, key) for name, kind in GROUPS.items() for key in checks_of(kind)
} | {"explain_steps": ("explanations", "steps"), "long_text": ("parameters", "long_text")}
FLAT_KEYS.pop("steps")
# Fitted data, not a switch: only its grouped spelling.
FLAT_KEYS.pop("reference")


def _grouped(raw: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    """Per group, each key's ``(value, spelling)``, the flat keys moved into their groups
    (``long_text`` into parameters); messages name a key as the file spells it."""
    known = set(GROUPS) | set(TOP_LEVEL) | set(FLAT_KEYS)
    unknown = sorted(str(key) for key in raw if key not in known)
    if unknown:
        problems.append(f"unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(known))})")
    grouped: dict[str, Any] = {}
    for key, value in raw.items():
        if key in TOP_LEVEL:
            grouped[key] = value
        elif key in GROUPS:
            if value is not None and not isinstance(value, Mapping):
                problems.append(f"handler.{key} must be a mapping, got {json_type(value)}")
                continue
            section = grouped.setdefault(key, {})
            for name, item in (value or {}).items():
                section[name] = (item, f"handler.{key}.{name}")
    for key, value in raw.items():
        if key not in FLAT_KEYS:
            continue
        group_name, name = FLAT_KEYS[key]
        if key == "long_text":
            try:
                value = choice(LongText)("handler.long_text", value).value
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
        section = grouped.setdefault(group_name, {})
        if name in section:
            problems.append(f"handler.{key} is given twice: as handler.{key} and as handler.{group_name}.{name}")
            continue
        section[name] = (value, f"handler.{key}")
    return grouped


def _read_group(kind: type, where: str, raw: Any, problems: list[str]) -> Any:
    """One group's settings from its ``{key: (value, spelling)}``."""
    checks = checks_of(kind)
    unknown = sorted(str(key) for key in raw if key not in checks)
    if unknown:
        problems.append(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(checks))})")
    values: dict[str, Any] = {}
    for key, (value, spelling) in raw.items():
        if key in checks:
            try:
                values[key] = checks[key](spelling, value)
            except ValueError as error:
                problems.append(str(error))
    try:
        # A group may check its keys together (__post_init__); then it is built with its defaults.
        return kind(**values)
    except ValueError as error:
        problems.append(str(error))
        return kind()
