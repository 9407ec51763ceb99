"""Response bodies and HTTP status lines: each outcome serialised once, NaN turned into a 500 there."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from handler.api.errors import RequestError
from handler.api.streaming import EVENT_STREAM_CONTENT_TYPE
from handler.api.types import RequestOutcome

JSON_CONTENT_TYPE = "application/json"
TRUNCATED_HEADER = "x-truncated-inputs"
WINDOWS_HEADER = "x-windows-read"
# On an answer to a text/plain body that was one of our JSON requests (classified as that text).
JSON_AS_TEXT_HEADER = "x-hflabels-warning"
JSON_AS_TEXT_WARNING = (
    'the text/plain body is a JSON request ({"inputs": ...}) and was classified as that literal text; '
    "send it with Content-Type: application/json"
)
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


@dataclass(frozen=True)
class SerializedOutcome:
    """An outcome and its body; a payload that cannot be JSON has become a 500 outcome."""

    outcome: RequestOutcome
    text: str
    content_type: str = JSON_CONTENT_TYPE


def serialize(outcome: RequestOutcome) -> SerializedOutcome:
    if outcome.error is None and outcome.stream_tail is not None:
        return SerializedOutcome(outcome, outcome.stream_tail, EVENT_STREAM_CONTENT_TYPE)
    if outcome.error is None:
        try:
            return SerializedOutcome(outcome, json_body(outcome.payload))
        except ValueError:
            outcome = RequestOutcome.failed(
                RequestError("the model produced a non-finite score (NaN)", 500, "non_finite_output")
            )
    assert outcome.error is not None
    return SerializedOutcome(outcome, error_body(outcome.error.message))
