"""Looking up a string-valued enum member by its value, for settings and names that come from files."""

from __future__ import annotations

import enum
from typing import TypeVar

E = TypeVar("E", bound=enum.Enum)


def enum_member(cls: type[E], value: object) -> E | None:
    """The member of ``cls`` whose value is ``value`` (or ``value`` itself if it is one); None if none is."""
    if isinstance(value, cls):
        return value
    for member in cls:
        if member.value == value:
            return member
    return None


def enum_values(cls: type[enum.Enum]) -> str:
    """The accepted values, for error messages: ``"a, b, c"``."""
    return ", ".join(str(member.value) for member in cls)
