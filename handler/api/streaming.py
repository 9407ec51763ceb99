"""Server-sent events in the shape of text-generation-inference's ``generate_stream``, which
``huggingface_hub.InferenceClient.text_generation(stream=True)`` parses: one ``data:`` line per
generated token, the last one carrying the whole text and the details. Pure formatting."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

EVENT_STREAM_CONTENT_TYPE = "text/event-stream"
# Sends one chunk of a streamed answer to its client.
StreamSink = Callable[[str], None]


def sse_event(payload: Any) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False, allow_nan=False)}\n\n"


def token_event(
    index: int,
    token: dict[str, Any],
    generated_text: str | None = None,
    details: dict[str, Any] | None = None,
) -> str:
    """One generated token; ``generated_text`` and ``details`` only on the last."""
    return sse_event({"index": index, "token": token, "generated_text": generated_text, "details": details})


def error_event(message: str, error_type: str = "generation") -> str:
    return sse_event({"error": message, "error_type": error_type})


class TrackedSink:
    """A stream sink that remembers whether it sent anything (a stream that did cannot be rerun)."""

    def __init__(self, sink: StreamSink) -> None:
        self.sink = sink
        self.sent = False

    def __call__(self, chunk: str) -> None:
        self.sent = True
        self.sink(chunk)
