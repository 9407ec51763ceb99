"""Response bodies and HTTP status lines: pure helpers."""

from __future__ import annotations

import json
import re
from typing import Any

JSON_CONTENT_TYPE = "application/json"
TRUNCATED_HEADER = "x-truncated-inputs"
_UNSAFE_PHRASE_CHARS = re.compile(r"[^\x20-\x7e]")


def json_body(payload: Any) -> str:
    # allow_nan=False: NaN is not JSON, and a client parser would choke on it.
    return json.dumps(payload, ensure_ascii=False, allow_nan=False)


def error_body(message: str) -> str:
    return json_body({"error": message})


def reason_phrase(message: str, limit: int = 160) -> str:
    """An HTTP reason phrase: printable ASCII only, one line, bounded; the body has the full text."""
    phrase = _UNSAFE_PHRASE_CHARS.sub("?", message)
    return phrase if len(phrase) <= limit else phrase[: limit - 3] + "..."
