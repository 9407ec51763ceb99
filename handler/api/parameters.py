"""Declarative checks for request ``parameters`` (and the config defaults that share their rules).

Each task declares a schema: parameter name -> :class:`ParamSpec`, with the value an absent
parameter takes. :func:`validate_parameters` returns only the keys that were given, converted
and range-checked, or raises ``ValueError`` with a message naming the parameter;
:func:`request_parameters` turns that into the request's 400, and :func:`schema_defaults` gives
the values of the parameters nobody set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from handler.api.errors import RequestError

ParamKind = Literal["int", "float", "bool", "choice", "str", "str_list"]


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


# A parameter without a default is absent from the merged parameters unless someone sets it.
NO_DEFAULT: Final = _NoDefault()


@dataclass(frozen=True)
class ParamSpec:
    kind: ParamKind
    default: Any = NO_DEFAULT
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    nullable: bool = False
    choices: tuple[str, ...] = ()
    max_items: int = 64
    max_item_length: int = 256
    # A bare string is accepted where a list of strings is expected (``"stop": "\n"``)...
    accepts_single_string: bool = False
    # ...or, with this, read as comma-separated items (``"candidate_labels": "a, b"``).
    comma_separated: bool = False

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind == "str_list":
            return f"a list of at most {self.max_items} strings"
        if self.kind == "str":
            return f"a string of at most {self.max_item_length} characters"
        words = {"int": "an integer", "float": "a number", "bool": "true or false"}[self.kind]
        bounds = []
        if self.minimum is not None:
            bounds.append(f"{'>' if self.exclusive_minimum else '>='} {_fmt(self.minimum)}")
        if self.maximum is not None:
            bounds.append(f"<= {_fmt(self.maximum)}")
        text = words + (" " + " and ".join(bounds) if bounds else "")
        return text + (" or null" if self.nullable else "")


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def validate_parameters(raw: Any, schema: Mapping[str, ParamSpec], where: str = "parameters") -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must be a JSON object, got {json_type(raw)}")
    unknown = sorted(str(key) for key in raw if key not in schema)
    if unknown:
        allowed = ", ".join(sorted(schema)) or "none"
        raise ValueError(f"unknown {where}: {', '.join(unknown)} (allowed: {allowed})")
    return {name: check_value(f"{where}.{name}", value, schema[name]) for name, value in raw.items()}


def request_parameters(raw: Any, schema: Mapping[str, ParamSpec]) -> dict[str, Any]:
    """A request's ``parameters``, validated; a problem is that request's 400."""
    try:
        return validate_parameters(raw, schema)
    except ValueError as error:
        raise RequestError(str(error), reason="invalid_parameter") from None


def schema_defaults(schema: Mapping[str, ParamSpec]) -> dict[str, Any]:
    return {name: spec.default for name, spec in schema.items() if spec.default is not NO_DEFAULT}


def check_value(name: str, value: Any, spec: ParamSpec) -> Any:
    if value is None:
        if spec.nullable:
            return None
        raise ValueError(f"{name} must be {spec.describe()}, got null")
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value
        raise ValueError(f"{name} must be true or false, got {json_type(value)}")
    if spec.kind == "choice":
        if isinstance(value, str) and value in spec.choices:
            return value
        raise ValueError(f"{name} must be {spec.describe()}, got {_short_repr(value)}")
    if spec.kind == "str_list":
        return _check_string_list(name, value, spec)
    if spec.kind == "str":
        if isinstance(value, str) and len(value) <= spec.max_item_length:
            return value
        raise ValueError(f"{name} must be {spec.describe()}, got {json_type(value)}")
    return _check_number(name, value, spec)


def _check_number(name: str, value: Any, spec: ParamSpec) -> int | float:
    # bool is an int subclass in Python, but `true` is no number to a JSON client.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be {spec.describe()}, got {json_type(value)}")
    if spec.kind == "int":
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{name} must be {spec.describe()}, got {value}")
            value = int(value)
    elif not math.isfinite(value):
        raise ValueError(f"{name} must be {spec.describe()}, got {value}")
    else:
        value = float(value)
    too_low = spec.minimum is not None and (value <= spec.minimum if spec.exclusive_minimum else value < spec.minimum)
    too_high = spec.maximum is not None and value > spec.maximum
    if too_low or too_high:
        raise ValueError(f"{name} must be {spec.describe()}, got {_short_repr(value)}")
    return value


def _check_string_list(name: str, value: Any, spec: ParamSpec) -> tuple[str, ...]:
    if isinstance(value, str) and spec.comma_separated:
        value = [item.strip() for item in value.split(",") if item.strip()]
    elif isinstance(value, str) and spec.accepts_single_string:
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{name} must be {spec.describe()}, got {json_type(value)}")
    if len(value) > spec.max_items:
        raise ValueError(f"{name} may hold at most {spec.max_items} strings, got {len(value)}")
    if any(len(item) > spec.max_item_length for item in value):
        raise ValueError(f"{name}: each string may be at most {spec.max_item_length} characters")
    return tuple(value)


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return type(value).__name__


def _short_repr(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
