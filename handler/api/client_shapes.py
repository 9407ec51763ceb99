"""Which answer shape a request gets: the transformers pipelines' (what curl users see in the README)
or the Hugging Face inference API's (what ``huggingface_hub.InferenceClient`` parses).

The two differ for text classification only: the inference API answers one text with a list of
label lists, ``[[{"label", "score"}, ...]]``, every label ranked unless ``top_k`` says otherwise.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from handler.api.choices import enum_member, enum_values
from handler.api.errors import RequestError

RESPONSE_FORMAT_HEADER = "x-response-format"
# huggingface_hub names itself in its User-Agent: "...; hf_hub/2.4.0; python/3.11; ...".
INFERENCE_CLIENT_AGENT = "hf_hub/"


class ResponseFormat(str, enum.Enum):
    PIPELINE = "pipeline"
    INFERENCE_API = "inference_api"


class ResponseFormatSetting(str, enum.Enum):
    """``handler.response_format``: a fixed shape, or ``auto`` (the inference API's for InferenceClient)."""

    AUTO = "auto"
    PIPELINE = "pipeline"
    INFERENCE_API = "inference_api"


def header(headers: Mapping[str, Any], name: str) -> str | None:
    """A request header's value; HTTP header names are case-free."""
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == name:
            return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)
    return None


def response_format_of(headers: Mapping[str, Any], setting: ResponseFormatSetting) -> ResponseFormat:
    """The request's ``x-response-format`` header, else the model's setting (``auto``: by User-Agent)."""
    asked = header(headers, RESPONSE_FORMAT_HEADER)
    if asked is not None:
        chosen = enum_member(ResponseFormat, asked.strip().lower().replace("-", "_"))
        if chosen is None:
            raise RequestError(
                f"{RESPONSE_FORMAT_HEADER}: {asked!r} is not one of {enum_values(ResponseFormat)}",
                reason="invalid_header",
            )
        return chosen
    if setting is ResponseFormatSetting.AUTO:
        agent = header(headers, "user-agent") or ""
        return ResponseFormat.INFERENCE_API if INFERENCE_CLIENT_AGENT in agent else ResponseFormat.PIPELINE
    return ResponseFormat(setting.value)
