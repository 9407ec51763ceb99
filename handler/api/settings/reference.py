"""The configuration reference, read from the settings' own fields: every key of the ``handler:``
section with what it accepts, its default and what it does (docs/reference/configuration.md is
generated from :func:`reference_rows`)."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from handler.api.settings.checks import field_default
from handler.api.settings.handler_settings import HandlerSettings


@dataclass(frozen=True)
class ReferenceRow:
    key: str  # dotted, as written under handler: (loading.dtype)
    group: str  # "" for a top-level key
    accepts: str
    default: str
    doc: str


def shown(value: Any, auto: bool = False) -> str:
    """A default as a user writes it in YAML."""
    if value is None:
        return "auto" if auto else "null"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "{}" if not value else str(dict(value))
    return str(value)


def reference_rows() -> Iterator[ReferenceRow]:
    for item in fields(HandlerSettings):
        if "group" in item.metadata:
            for inner in fields(item.metadata["group"]):
                check = inner.metadata["check"]
                yield ReferenceRow(f"{item.name}.{inner.name}", item.name, check.accepts,
                                   shown(field_default(inner), auto=check.accepts.startswith('"auto"')),
                                   inner.metadata["doc"])  # fmt: skip
        else:
            check = item.metadata["check"]
            yield ReferenceRow(item.name, "", check.accepts, shown(field_default(item)), item.metadata["doc"])


def group_docs() -> dict[str, str]:
    """Each group's one-line description, by name."""
    return {item.name: item.metadata["doc"] for item in fields(HandlerSettings) if "group" in item.metadata}
