"""The async worker mode through TorchServe's own code: the worker's ``Service`` and the ``predict``
that ts/async_service.py binds to it, each request's answer message decoded as the frontend
decodes it (ModelResponseDecoder). What the frontend does with the message (the job map, the end
of a chunked response) is checked against a real torchserve in tests/e2e/test_e2e_async_mode.py."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import struct
import threading
import time
from pathlib import Path
from typing import Any

from support import assert_same_answers, call, exact_precision, load_handler, worker_metrics
from ts.async_service import AsyncService
from ts.service import Service

from handler.serving.async_worker import STRAY_PRINT, StrayPrintFilter
from handler.torchserve_handler import TransformersLabelHandler

TEXTS = ["the room was lovely", "awful service, never again", "it was fine, I guess", "great", "bad"]


def async_service(model_dir: Path, **keys: Any) -> tuple[Service, TransformersLabelHandler]:
    handler = TransformersLabelHandler()
    service = Service("model", str(model_dir), {"model": {"modelName": "model"}}, handler.handle, None, 1,
                      metrics_cache=worker_metrics("model"))  # fmt: skip
    service.context.model_yaml_config = {"asyncCommunication": True, "batchSize": 1, "handler": exact_precision({}),
                                         **keys}  # fmt: skip
    handler.initialize(service.context)
    AsyncService(service)  # binds TorchServe's async predict to the service, as the worker does
    service.set_cl_socket(None)
    return service, handler


def message(request_id: str, body: Any) -> list[dict[str, Any]]:
    """One request as the frontend sends it (ts/protocol/otf_message_handler.py's reading of it)."""
    value = json.dumps(body).encode()
    return [{
        "requestId": request_id.encode(),
        "headers": [{"name": b"Content-Type", "value": b"application/json"}],
        "parameters": [{"name": "body", "value": value, "contentType": "application/json"}],
    }]  # fmt: skip


def decode(response: bytes) -> tuple[int, list[dict[str, Any]]]:
    """The frontend's reading of a worker's answer message: its code and its predictions."""
    stream = io.BytesIO(bytes(response))

    def integer() -> int:
        return struct.unpack("!i", stream.read(4))[0]

    def text() -> str:
        return stream.read(integer()).decode()

    code = integer()
    text()  # the message
    predictions = []
    while (length := integer()) != -1:
        request_id = stream.read(length).decode()
        content_type = text()
        status = integer()
        phrase = text()
        headers = {text(): text() for _ in range(integer())}
        body = stream.read(integer())
        predictions.append({"id": request_id, "content_type": content_type, "status": status, "phrase": phrase,
                            "headers": headers, "body": body})  # fmt: skip
    return code, predictions


async def predict_all(service: Service, bodies: list[Any]) -> list[tuple[int, list[dict[str, Any]]]]:
    responses = await asyncio.gather(*(service.predict(message(f"r{i}", body)) for i, body in enumerate(bodies)))
    return [decode(response) for response in responses]


def test_each_request_is_answered_as_the_classic_mode_answers_it_in_a_message_that_ends_its_job(sentiment_model):
    service, handler = async_service(sentiment_model)
    bodies = [{"inputs": text} for text in TEXTS] + [{"inputs": 5}, {"inputs": TEXTS[:2]}]
    decoded = asyncio.run(predict_all(service, bodies))
    classic, context = load_handler(sentiment_model)
    # The classic worker gets each JSON body decoded, as TorchServe's frontend message reader decodes it.
    expected = call(classic, context, [("application/json", body) for body in bodies])
    for index, ((code, predictions), (status, answer)) in enumerate(zip(decoded, expected)):
        # The whole message succeeds: a failure is its request's own status, never the message's
        # (a non-200 message fails every request the frontend has in flight).
        assert code == 200
        head, last = predictions
        assert head["id"] == last["id"] == f"r{index}"
        assert head["status"] == status
        # Scores to the fp32 bar: the async batches are cut differently from the classic one.
        assert_same_answers(json.loads(head["body"]), answer)
        # The frontend forgets a job only on ts_stream_next: false. A success is a stream's head
        # (it keeps the connection); an error is sent whole (the frontend closes the connection
        # after an error's head, so a body in a later part would be lost).
        assert head["headers"].get("ts_stream_next") == ("true" if status == 200 else None)
        assert last["headers"]["ts_stream_next"] == "false" and last["body"] == b""
    assert [status for status, _ in expected].count(400) == 1
    # Requests that arrived together were answered in fewer passes than requests.
    assert handler.async_worker.batcher.batches < len(bodies)


def hold_the_model(handler: TransformersLabelHandler) -> threading.Event:
    """The model's passes wait until the returned event is set."""
    release = threading.Event()
    runner = handler.runner
    run = runner.run

    def held(*args, **kwargs):
        release.wait(10)
        return run(*args, **kwargs)

    runner.run = held
    return release


def test_beyond_job_queue_size_a_request_is_answered_503_at_once_and_the_rest_are_served(sentiment_model):
    service, handler = async_service(sentiment_model, jobQueueSize=3)
    release = hold_the_model(handler)

    async def storm():
        tasks = [asyncio.create_task(service.predict(message(f"r{i}", {"inputs": TEXTS[i % 5]}))) for i in range(8)]
        await asyncio.sleep(0.5)
        release.set()
        return [decode(response) for response in await asyncio.gather(*tasks)]

    statuses = [predictions[0]["status"] for _, predictions in asyncio.run(storm())]
    assert statuses.count(200) == 3 and statuses.count(503) == 5
    refused = next(predictions[0] for _, predictions in asyncio.run(predict_all(service, [{"inputs": "ok"}])))
    assert refused["status"] == 200


def test_a_request_past_response_timeout_is_answered_504_and_not_run(sentiment_model):
    service, handler = async_service(sentiment_model, responseTimeout=0.3)
    release = hold_the_model(handler)
    ran: list[int] = []
    answer_batch = handler.async_worker.batcher.run_batch
    handler.async_worker.batcher.run_batch = lambda items: ran.append(len(items)) or answer_batch(items)

    async def late():
        first = asyncio.create_task(service.predict(message("first", {"inputs": "held"})))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(service.predict(message("second", {"inputs": "queued behind it"})))
        answers = await asyncio.gather(first, second)
        release.set()
        return [decode(answer) for answer in answers]

    (code_1, first), (code_2, second) = asyncio.run(late())
    assert code_1 == code_2 == 200
    assert first[0]["status"] == second[0]["status"] == 504
    assert "responseTimeout" in json.loads(second[0]["body"])["error"]
    # The queued request was given up before it ran; only the held one ran.
    time.sleep(0.3)
    assert ran == [1]


def test_a_failing_batch_fails_only_its_own_requests_and_the_worker_serves_on(sentiment_model):
    service, handler = async_service(sentiment_model)
    run = handler.runner.run
    handler.runner.run = lambda requests, *rest: (_ for _ in ()).throw(RuntimeError("the device fell over"))
    (code, predictions), = asyncio.run(predict_all(service, [{"inputs": "boom"}]))
    assert code == 200 and predictions[0]["status"] == 500
    assert "error" in json.loads(predictions[0]["body"])
    handler.runner.run = run
    (code, predictions), = asyncio.run(predict_all(service, [{"inputs": "fine again"}]))
    assert code == 200 and predictions[0]["status"] == 200


def test_the_request_copy_shares_the_worker_state_and_carries_its_own_request_fields(sentiment_model):
    service, _ = async_service(sentiment_model)
    base = service.context
    request = copy.deepcopy(base)
    assert request is not base and request.metrics is base.metrics and request.manifest is base.manifest
    request.request_ids = {0: "x"}
    assert base.request_ids != {0: "x"}


def test_the_stray_print_of_ts_async_service_is_dropped_and_everything_else_kept():
    written = io.StringIO()
    stream = StrayPrintFilter(written)
    print(f"{STRAY_PRINT}<bound method>", file=stream)
    print("a line the handler logs", file=stream)
    print("", file=stream)
    assert written.getvalue() == "a line the handler logs\n\n"


def test_a_message_of_several_requests_is_answered_in_one_batch_each_with_its_own_two_parts(sentiment_model):
    service, handler = async_service(sentiment_model)
    batch = [request for i, text in enumerate(TEXTS[:3]) for request in message(f"m{i}", {"inputs": text})]
    code, predictions = decode(asyncio.run(service.predict(batch)))
    assert code == 200
    assert [p["id"] for p in predictions] == ["m0", "m1", "m2", "m0", "m1", "m2"]
    assert [p["headers"].get("ts_stream_next") for p in predictions] == ["true"] * 3 + ["false"] * 3
    assert all(p["status"] == 200 and json.loads(p["body"])["label"] for p in predictions[:3])
    assert handler.async_worker.batcher.batches == 1
