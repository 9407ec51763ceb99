"""TorchServe's KServe envelopes (``service_envelope=kserve`` or ``kservev2``), as the handler sees them.

Behind an envelope the handler no longer gets one item per HTTP request:
- v1 (``kserve``): the ``instances`` of the first request of the frontend batch, one item each
  (a text, ``{"data": text}``, ``{"text", "text_pair"}``, ``{"question", "context"}``); the
  envelope wraps the returned list as ``{"predictions": [...]}`` (or ``"explanations"``);
- v2 (``kservev2``): the ``inputs`` objects of the first request, one item each, where TorchServe
  has already replaced a BYTES input's ``data`` list by its first element; the envelope puts each
  returned item in that input's ``outputs`` entry.
Either way the envelope answers the first request only, so a KServe model is served with
``batchSize: 1``. The functions here turn envelope items into request bodies: pure, no TorchServe.
"""

from __future__ import annotations

import enum
import inspect
import json
from collections.abc import Mapping
from typing import Any

from handler.api.choices import enum_member, enum_values
from handler.api.errors import ConfigurationError, RequestError
from handler.api.parameters import json_type
from handler.api.request_parsing import RequestBody, decode_utf8


class Envelope(str, enum.Enum):
    NONE = "none"
    KSERVE = "kserve"
    KSERVE_V2 = "kservev2"

    @classmethod
    def parse(cls, name: str | None) -> Envelope:
        envelope = enum_member(cls, name or cls.NONE.value)
        if envelope is None:
            raise ConfigurationError(
                f"service_envelope={name!r} is not supported by this handler; use one of: {enum_values(cls)}"
            )
        return envelope


def envelope_of_torchserve_loader() -> Envelope:
    """The envelope TorchServe wraps this handler in, read from its model loader while it calls
    ``initialize()`` (TorchServe 0.12 passes it to ``ModelLoader.load`` and nowhere else)."""
    frame = inspect.currentframe()
    while frame is not None:
        code = frame.f_code
        if code.co_name == "load" and code.co_filename.replace("\\", "/").endswith("ts/model_loader.py"):
            return Envelope.parse(frame.f_locals.get("envelope"))
        frame = frame.f_back
    return Envelope.NONE


def v1_instance_body(instance: Any) -> RequestBody:
    """One KServe v1 instance as a request: ``{"data": x}`` is x; anything else is the input itself."""
    if isinstance(instance, Mapping) and set(instance) == {"data"}:
        instance = instance["data"]
    if isinstance(instance, (bytes, bytearray)):
        instance = decode_utf8(bytes(instance), "the instance")
    return RequestBody(inputs=instance, parameters=None, is_json=True)


def v2_input_body(tensor: Any) -> RequestBody:
    """One KServe v2 BYTES input as a request; a JSON object in it is a structured input
    (``{"question", "context"}`` or ``{"text", "text_pair"}``)."""
    if not isinstance(tensor, Mapping) or "data" not in tensor:
        raise RequestError(f"a v2 input must be an object with name, shape, datatype and data, got {json_type(tensor)}",
                           reason="wrong_shape")  # fmt: skip
    if tensor.get("datatype") != "BYTES":
        raise RequestError(
            f"input {tensor.get('name')!r}: datatype must be BYTES (text), got {tensor.get('datatype')!r}",
            reason="wrong_shape",
        )
    value = tensor["data"]
    if isinstance(value, (bytes, bytearray)):
        value = decode_utf8(bytes(value), f"input {tensor.get('name')!r}")
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            decoded = None
        if isinstance(decoded, dict):
            value = decoded
    return RequestBody(inputs=value, parameters=None, is_json=True)
