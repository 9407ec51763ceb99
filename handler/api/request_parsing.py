"""From what TorchServe hands the handler for one request to typed inputs, or a RequestError.

TorchServe has already done some decoding by the time a request reaches the worker:
``application/json`` bodies arrive parsed (or as bytes if they were not valid JSON), ``text/*``
bodies as ``str`` (or bytes if not UTF-8), anything else as bytes under the key ``body``.
A form-encoded body (``curl -d``) arrives as its form fields, which loses the text, so it is
refused with the exact command to use instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from handler.api.client_shapes import ResponseFormat
from handler.api.errors import RequestError
from handler.api.parameters import json_type

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
CURL_HINT = (
    "send the text as the raw body: curl -H 'Content-Type: text/plain' --data-binary 'your text' URL, "
    "or as JSON: curl -H 'Content-Type: application/json' -d '{\"inputs\": \"your text\"}' URL"
)
# "options" and "stream" are what Hugging Face inference-API clients send beside inputs/parameters.
_DOCUMENT_KEYS = ("inputs", "parameters", "options", "stream")
# The inference API's options: waiting for a cold model (ours is loaded or absent) and its cache.
_OPTION_KEYS = ("wait_for_model", "use_cache")


@dataclass(frozen=True)
class RequestBody:
    """One request: its inputs as sent, its raw ``parameters`` (None if absent), whether it was JSON,
    whether it asked for a token stream, and the answer shape it gets."""

    inputs: Any
    parameters: Any
    is_json: bool
    stream: bool = False
    response_format: ResponseFormat = ResponseFormat.PIPELINE
    # False: the answer must be computed, not served from a response cache.
    use_cache: bool = True
    # A text/plain body that is itself one of our JSON requests ({"inputs": ...}): classified as
    # the literal text, as sent, and answered with a warning header.
    json_sent_as_text: bool = False


def content_type_of(headers: Mapping[str, Any]) -> str:
    """The request's media type, lower-cased, without parameters; HTTP header names are case-free."""
    for name, value in headers.items():
        if isinstance(name, str) and name.lower() == "content-type" and isinstance(value, str):
            return value.split(";", 1)[0].strip().lower()
    return ""


def _is_json_type(content_type: str) -> bool:
    return content_type == "application/json" or content_type.endswith("+json")


def read_request_body(item: Mapping[str, Any], content_type: str) -> RequestBody:
    payload = _payload_of(item, content_type)
    if isinstance(payload, str) and not payload:
        raise RequestError(f"empty request body; {CURL_HINT}", reason="empty_body")
    if isinstance(payload, (bytes, bytearray)):
        if not payload:
            raise RequestError(f"empty request body; {CURL_HINT}", reason="empty_body")
        text = decode_utf8(bytes(payload), "the body")
        if _is_json_type(content_type):
            payload = _parse_json(text)
        else:
            return RequestBody(inputs=text, parameters=None, is_json=False, json_sent_as_text=looks_like_request(text))
    elif isinstance(payload, str) and not _is_json_type(content_type):
        return RequestBody(
            inputs=payload, parameters=None, is_json=False, json_sent_as_text=looks_like_request(payload)
        )
    return _document(payload)


def looks_like_request(text: str) -> bool:
    """Whether raw text is a JSON object with "inputs": a request sent with the wrong Content-Type."""
    stripped = text.strip()
    if not (stripped.startswith("{") and stripped.endswith("}") and '"inputs"' in stripped):
        return False
    try:
        document = json.loads(stripped)
    except ValueError:
        return False
    return isinstance(document, dict) and "inputs" in document


def _payload_of(item: Mapping[str, Any], content_type: str) -> Any:
    for key in ("body", "data"):
        if key in item:
            return item[key]
    if content_type == FORM_CONTENT_TYPE:
        raise RequestError(
            f"form-encoded bodies (curl -d) lose the text on the way to the model; {CURL_HINT}", reason="form_encoded"
        )
    if item:
        raise RequestError(
            f"unsupported form or multipart fields {sorted(item)[:5]}; {CURL_HINT}", reason="form_encoded"
        )
    raise RequestError(f"empty request; {CURL_HINT}", reason="empty_body")


def decode_utf8(payload: bytes, what: str) -> str:
    """``payload`` as text; ``what`` names it in the 400 (``"the body"``, ``"input 'text'"``)."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestError(
            f"{what} is not valid UTF-8 (byte 0x{payload[error.start]:02x} at position {error.start})",
            reason="invalid_utf8",
        ) from None


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        message = f"malformed JSON: {error.msg} at line {error.lineno} column {error.colno}"
        raise RequestError(message, reason="malformed_json") from None
    except RecursionError:
        raise RequestError("malformed JSON: nested too deeply", reason="malformed_json") from None


def _document(payload: Any) -> RequestBody:
    if not isinstance(payload, Mapping):
        raise RequestError(
            f'a JSON body must be an object like {{"inputs": ...}}, got {json_type(payload)}', reason="wrong_shape"
        )
    unknown = sorted(str(key) for key in payload if key not in _DOCUMENT_KEYS)
    if unknown:
        raise RequestError(
            f"unknown JSON field(s) {', '.join(unknown)} (allowed: {', '.join(_DOCUMENT_KEYS)})", reason="wrong_shape"
        )
    if "inputs" not in payload:
        raise RequestError('the JSON body needs an "inputs" field', reason="wrong_shape")
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError(f"stream must be true or false, got {json_type(stream)}", reason="wrong_shape")
    options = _options(payload.get("options"))
    return RequestBody(
        inputs=payload["inputs"],
        parameters=payload.get("parameters"),
        is_json=True,
        stream=stream,
        use_cache=options.get("use_cache", True),
    )


def _options(value: Any) -> dict[str, bool]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RequestError(f"options must be an object, got {json_type(value)}", reason="wrong_shape")
    unknown = sorted(str(key) for key in value if key not in _OPTION_KEYS)
    if unknown:
        raise RequestError(
            f"unknown options {', '.join(unknown)} (allowed: {', '.join(_OPTION_KEYS)})", reason="wrong_shape"
        )
    for key, flag in value.items():
        if not isinstance(flag, bool):
            raise RequestError(f"options.{key} must be true or false, got {json_type(flag)}", reason="wrong_shape")
    return dict(value)


# ---- inputs ---------------------------------------------------------------------------------

T = TypeVar("T")


def parse_inputs(inputs: Any, parse_one: Callable[[Any, str], T], max_count: int) -> tuple[tuple[T, ...], bool]:
    """``(parsed inputs, whether the request sent a list)``; a bad element fails the whole request."""
    if isinstance(inputs, list):
        if not inputs:
            raise RequestError("inputs is an empty list", reason="wrong_shape")
        if len(inputs) > max_count:
            raise RequestError(
                f"inputs holds {len(inputs)} items; at most {max_count} are accepted per request",
                status=413,
                reason="too_many_inputs",
            )
        return tuple(parse_one(value, f"inputs[{i}]") for i, value in enumerate(inputs)), True
    return (parse_one(inputs, "inputs"),), False


def require_text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise RequestError(f"{where} must be a string, got {json_type(value)}", reason="wrong_shape")
    if not value.strip():
        raise RequestError(f"{where} is empty", reason="empty_input")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(
            f"{where} contains an unpaired UTF-16 surrogate (\\ud800-\\udfff)", reason="invalid_utf8"
        ) from None
    return value


def _object_fields(value: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise RequestError(
            f"{where} must be an object with {', '.join(required)}, got {json_type(value)}", reason="wrong_shape"
        )
    unknown = sorted(str(key) for key in value if key not in required + optional)
    if unknown:
        raise RequestError(
            f"{where} has unknown field(s) {', '.join(unknown)} (allowed: {', '.join(required + optional)})",
            reason="wrong_shape",
        )
    missing = [key for key in required if key not in value]
    if missing:
        raise RequestError(f"{where} is missing {', '.join(missing)}", reason="wrong_shape")
    return {key: require_text(value[key], f"{where}.{key}") for key in required + optional if key in value}


@dataclass(frozen=True)
class TextInput:
    text: str
    text_pair: str | None = None


def parse_text_or_pair(value: Any, where: str) -> TextInput:
    """A text, or ``{"text": ..., "text_pair": ...}`` for sentence-pair models."""
    if isinstance(value, Mapping):
        fields = _object_fields(value, where, ("text",), ("text_pair",))
        return TextInput(fields["text"], fields.get("text_pair"))
    return TextInput(require_text(value, where))


def parse_text(value: Any, where: str) -> str:
    return require_text(value, where)


@dataclass(frozen=True)
class QuestionContext:
    question: str
    context: str


def parse_question_context(value: Any, where: str) -> QuestionContext:
    fields = _object_fields(value, where, ("question", "context"), ())
    return QuestionContext(fields["question"], fields["context"])
