"""How one setting's value is checked, and how that check reads in the configuration reference.

A setting is a dataclass field made by :func:`setting`: its metadata carries the check that turns
the YAML value into the typed one (or raises ``ValueError`` naming the key) and the sentence that
documents it. The reference page and the loader read the same field, so a key cannot be accepted
without being documented, nor documented without being checked.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field
from types import MappingProxyType
from typing import Any

from handler.api.choices import enum_member
from handler.api.parameters import ParamSpec, check_value, json_type

Validate = Callable[[str, Any], Any]


@dataclass(frozen=True)
class Check:
    """``validate(key, value)`` -> the typed value; ``accepts``: what a user may write, in words."""

    validate: Validate
    accepts: str

    def __call__(self, key: str, value: Any) -> Any:
        return self.validate(key, value)


def scalar(spec: ParamSpec) -> Check:
    return Check(lambda key, value: check_value(key, value, spec), spec.describe())


def choice(kind: type[enum.Enum], nullable: bool = False) -> Check:
    values = ", ".join(repr(str(m.value)) for m in kind)

    def validate(key: str, value: Any) -> Any:
        if value is None and nullable:
            return None
        member = enum_member(kind, value)
        if member is None:
            raise ValueError(f"{key} must be one of {values}{' or null' if nullable else ''}, got {value!r}")
        return member

    return Check(validate, f"one of {values}" + (" or null" if nullable else ""))


def auto_or(spec: ParamSpec) -> Check:
    """A value of ``spec``, or "auto" (or null): None, measured at load."""

    def validate(key: str, value: Any) -> Any:
        if value is None or value == "auto":
            return None
        try:
            return check_value(key, value, spec)
        except ValueError as error:
            raise ValueError(f'{error} (or "auto")') from None

    return Check(validate, f'"auto" or {spec.describe()}')


def mapping(accepts: str, validate: Validate) -> Check:
    """A structured value (a mapping with a checker of its own)."""
    return Check(validate, accepts)


def empty_mapping() -> Mapping[str, Any]:
    return MappingProxyType({})


def setting(default: Any, check: Check, doc: str) -> Any:
    """A settings field: its default (what an absent key means), its check and its documentation."""
    metadata = {"check": check, "doc": doc}
    if isinstance(default, Mapping):
        return field(default_factory=empty_mapping, metadata=metadata)
    return field(default=default, metadata=metadata)


def group(kind: type, doc: str) -> Any:
    """A field holding a group of settings (``handler.loading``, ...): a frozen dataclass of them."""
    return field(default_factory=kind, metadata={"group": kind, "doc": doc})


def field_default(item: Field) -> Any:
    if item.default is not MISSING:
        return item.default
    if item.default_factory is not MISSING:
        return item.default_factory()
    return MISSING


def unknown_keys(key: str, value: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise ValueError(f"{key} has unknown key(s) {', '.join(unknown)} (allowed: {', '.join(allowed)})")


def require_mapping(key: str, value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{key} must {what}, got {json_type(value)}")
    return value
