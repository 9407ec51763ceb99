"""TorchServe's async worker mode (``asyncCommunication: true``), with its defects worked around here.

In this mode the frontend forwards each request to the worker at once (``batchSize: 1``) and
TorchServe's ``ts/async_service.py`` awaits the handler's ``handle`` per request; the handler forms
its own batches (model_free_batching.py). TorchServe 0.12.0 is in limited maintenance, so each
defect of the mode is neutralised from this side, never by editing its files:

- **The frontend's job map grows by one entry a request**: ``AsyncBatchAggregator`` forgets a job
  only when a prediction carries ``ts_stream_next: false``, and a lone prediction carrying it is
  sent as the tail of a stream whose head was never sent. Each answer is therefore sent as a
  stream of two parts in the one response message: the whole answer (status, headers, body;
  ``ts_stream_next: true``) and an empty last part (``false``), which ends the HTTP response and
  drops the job. The two parts go through TorchServe's own ``stopping_criteria`` hook.
- **One exception fails every request in flight with a 503**: ``handle`` never raises; a failure
  is that request's own 500.
- **``jobQueueSize`` no longer bounds anything, ``responseTimeout`` is not enforced**: the batcher
  refuses requests beyond ``jobQueueSize`` waiting or running (503), and a request not answered
  within ``responseTimeout`` seconds is answered 504 (and not run, if it had not started).
- **The Context is deep-copied per request** (its metrics cache included): a copy of the request's
  own fields is all a request needs.
- **A stray ``print`` logs a line per request**: that one line is dropped from the worker's stdout.
"""

from __future__ import annotations

import asyncio
import copy
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from ts.context import RequestProcessor

from handler.serving.model_free_batching import ModelFreeBatcher
from handler.serving.responses import json_body, reason_phrase

ASYNC_KEY = "asyncCommunication"
# TorchServe's defaults for the two keys this mode enforces itself (ConfigManager).
DEFAULT_JOB_QUEUE_SIZE = 100
DEFAULT_RESPONSE_TIMEOUT_S = 120.0
STREAM_NEXT = "ts_stream_next"
# ts/async_service.py prints this for every request (0.12.0).
STRAY_PRINT = "self._entry_point="


@dataclass(frozen=True)
class Arrival:
    """One request as it reached ``handle``: its data item, its request headers, when it must be answered."""

    data: Any
    headers: dict[str, Any]
    deadline: float


@dataclass
class Reply:
    """One request's answer as the handler's steps wrote it into a Context."""

    body: Any
    status: int = 200
    phrase: str | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(status: int, message: str) -> Reply:
    return Reply(json_body({"error": message}), status, reason_phrase(message), "application/json")


class GatheredContext:
    """The Context the handler's steps see for a batch gathered from several requests: request
    headers by index, answers written by index, the worker's metrics."""

    def __init__(self, base: Any, arrivals: Sequence[Arrival]) -> None:
        self.base = base
        self.arrivals = arrivals
        self.metrics = base.metrics
        self.model_yaml_config = base.model_yaml_config
        self.manifest = base.manifest
        self.system_properties = base.system_properties
        # No socket: events of a stream are answered together (see docs: serving modes).
        self.cl_socket = None
        self.replies = [Reply(None) for _ in arrivals]

    def get_request_header(self, idx: int, key: str) -> Any:
        return self.arrivals[idx].headers.get(key)

    def get_all_request_header(self, idx: int) -> dict[str, Any]:
        return self.arrivals[idx].headers

    def set_response_content_type(self, idx: int, value: str) -> None:
        self.replies[idx].content_type = value

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.replies[idx].status, self.replies[idx].phrase = code, phrase

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self.replies[idx].headers[key] = value

    def answered(self, bodies: Sequence[Any]) -> list[Reply]:
        for reply, body in zip(self.replies, bodies):
            reply.body = body
        return self.replies


class StrayPrintFilter:
    """The worker's stdout without ts/async_service.py's per-request print (a line of text, then
    its newline, in two writes)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._dropping = False

    def write(self, text: str) -> int:
        if text.startswith(STRAY_PRINT):
            self._dropping = True
            return len(text)
        if self._dropping and text == "\n":
            self._dropping = False
            return len(text)
        self._dropping = False
        return self.stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _request_copy(context: Any, memo: dict[int, Any]) -> Any:
    """What ts/async_service.py's ``copy.deepcopy(context)`` gets: a shallow copy (it sets the
    request's own ids, headers and socket on the copy; the rest is shared and read-only)."""
    return copy.copy(context)


class AsyncWorker:
    """``handle`` for the async mode: queue each request, await its answer, send it as a two-part stream."""

    def __init__(
        self,
        context: Any,
        answer_batch: Callable[[GatheredContext], list[Reply]],
        max_batch: int,
    ) -> None:
        yaml_config = getattr(context, "model_yaml_config", None) or {}
        self.timeout_s = float(yaml_config.get("responseTimeout", DEFAULT_RESPONSE_TIMEOUT_S))
        self.max_waiting = int(yaml_config.get("jobQueueSize", DEFAULT_JOB_QUEUE_SIZE))
        self.answer_batch = answer_batch
        self.base_context = context
        context.__deepcopy__ = lambda memo: _request_copy(context, memo)
        if not isinstance(sys.stdout, StrayPrintFilter):
            sys.stdout = StrayPrintFilter(sys.stdout)
        self.batcher: ModelFreeBatcher[Arrival, Reply] = ModelFreeBatcher(
            self._run, max_batch, self.max_waiting, self._failed, name="hflabels-batches"
        )

    def _run(self, arrivals: Sequence[Arrival]) -> list[Reply]:
        # Describe and explain requests each run as batches of their own kind, as TorchServe sends them.
        replies: list[Reply | None] = [None] * len(arrivals)
        kinds: dict[tuple[Any, Any], list[int]] = {}
        for index, arrival in enumerate(arrivals):
            kind = (arrival.headers.get("describe"), arrival.headers.get("explain"))
            kinds.setdefault(kind, []).append(index)
        for indices in kinds.values():
            gathered = GatheredContext(self.base_context, [arrivals[i] for i in indices])
            for index, reply in zip(indices, self.answer_batch(gathered)):
                replies[index] = reply
        return [reply or error_reply(500, "not answered") for reply in replies]

    @staticmethod
    def _failed(arrival: Arrival, error: BaseException) -> Reply:
        return error_reply(500, "internal error while running the model")

    async def handle(self, data: list[Any], context: Any) -> list[Any]:
        """The answers of one message of requests (one request with ``batchSize: 1``)."""
        deadline = time.monotonic() + self.timeout_s
        arrivals = [Arrival(item, dict(context.get_all_request_header(i)), deadline) for i, item in enumerate(data)]
        # All queued at once (a message of several requests, batchSize > 1, shares their batches).
        replies = list(await asyncio.gather(*(self._answer(arrival) for arrival in arrivals)))
        return self._as_streams(replies, data, context)

    async def _answer(self, arrival: Arrival) -> Reply:
        try:
            future = self.batcher.submit(arrival)
            if future is None:
                return error_reply(
                    503, f"the model is overloaded: {self.max_waiting} requests are waiting or running (jobQueueSize)"
                )
            try:
                remaining = max(0.0, arrival.deadline - time.monotonic())
                return await asyncio.wait_for(asyncio.wrap_future(future), remaining)
            except TimeoutError:
                return error_reply(504, f"not answered within responseTimeout ({self.timeout_s:g} s)")
        except Exception:  # noqa: BLE001 - a failure stays with its request
            return error_reply(500, "internal error while answering the request")

    @staticmethod
    def _as_streams(replies: list[Reply], data: list[Any], context: Any) -> list[Any]:
        """Each answer, then an empty last part for the same request id, so the frontend forgets
        the job (see the module doc). A success goes as the head of a two-part stream (the whole
        answer, then the end of the chunked response). An error goes whole: the frontend closes
        the connection after any 4xx/5xx head, so a body sent as a later part would be lost; its
        last part then only drops the job.

        ``data``, the request ids and the headers are the lists TorchServe's ``predict`` checks
        and encodes the answers with; the last parts are appended to them."""
        count = len(replies)
        bodies: list[Any] = []
        # TorchServe's stopping_criteria: False marks a part with more to come, True the last
        # part, None a whole answer.
        heads: list[Callable[[Any], bool | None]] = []
        for index, reply in enumerate(replies):
            bodies.append(reply.body)
            if reply.content_type:
                context.set_response_content_type(index, reply.content_type)
            context.set_response_status(reply.status, reply.phrase or "", idx=index)
            for key, value in reply.headers.items():
                context.set_response_header(index, key, value)
            heads.append(_more_to_come if reply.status < 400 else _whole)
        for index in range(count):
            data.append(None)
            context.request_ids[count + index] = context.request_ids[index]
            context.request_processor.append(RequestProcessor({}))
            bodies.append(b"")
        context.stopping_criteria = heads + [_last_part] * count
        return bodies


def _more_to_come(_: Any) -> bool:
    return False


def _whole(_: Any) -> None:
    return None


def _last_part(_: Any) -> bool:
    return True
