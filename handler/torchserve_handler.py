"""The TorchServe entry point: parse every request of a batch, run the task, answer each in order.

``hflabels archive`` passes this file as ``--handler``; TorchServe imports it from the archive
root and instantiates the one class defined here (it refuses a module that defines more).
BaseHandler's ``handle`` drives the three steps below, so its ``HandlerTime`` metric, the
``handler.profile`` timings (``@timed``) and the torch profiler (``ENABLE_TORCH_PROFILER``)
work as for any TorchServe handler.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from ts.handler_utils.timer import timed
from ts.protocol.otf_message_handler import send_intermediate_predict_response
from ts.torch_handler.base_handler import BaseHandler

from handler.api.build_info import version_differences
from handler.api.client_shapes import response_format_of
from handler.api.errors import ConfigurationError, RequestError
from handler.api.request_parsing import RequestBody, content_type_of, read_request_body
from handler.api.settings import HandlerSettings
from handler.api.streaming import EVENT_STREAM_CONTENT_TYPE, StreamSink, TrackedSink
from handler.api.tasks import Task
from handler.api.types import BatchExecutor, BatchResult, ParsedRequest, RequestOutcome
from handler.engine.load_measurements import cache_root
from handler.engine.model_loading import select_device
from handler.engine.runner import TaskRunner
from handler.registry import build_runner
from handler.serving.async_worker import ASYNC_KEY, AsyncWorker, GatheredContext, Reply
from handler.serving.batches import AnsweredBatch, PreparedBatch
from handler.serving.drift_monitor import DriftMonitor, reference_sample
from handler.serving.envelopes import Envelope, envelope_of_torchserve_loader, v1_instance_body, v2_input_body
from handler.serving.metrics import PredictionMonitor, ServingMetrics
from handler.serving.response_cache import ResponseCache, cache_key
from handler.serving.responses import (
    JSON_AS_TEXT_HEADER,
    JSON_AS_TEXT_WARNING,
    TRUNCATED_HEADER,
    WINDOWS_HEADER,
    SerializedOutcome,
    json_body,
    reason_phrase,
    serialize,
)
from handler.serving.shared_drift import pool_folder_for
from handler.tasks.explanations import Explainer

logger = logging.getLogger(__name__)


def model_workers(yaml_config: dict[str, Any]) -> int:
    """How many workers of this model can run at once: model-config.yaml's maxWorkers (else
    minWorkers, else 1). Workers added later through the management API are not seen here."""
    for key in ("maxWorkers", "minWorkers"):
        value = yaml_config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
    return 1


class TransformersLabelHandler(BaseHandler):
    def __init__(self) -> None:
        super().__init__()
        self.runner: TaskRunner | None = None
        self.explainer: Explainer | None = None
        self.explain_unavailable = "explanations are not available for this model"
        self.envelope = Envelope.NONE
        self.serving_metrics = ServingMetrics()
        self.response_cache: ResponseCache | None = None
        # Indices of this batch's text/plain bodies that were JSON requests (answered with a header).
        self.json_sent_as_text: set[int] = set()
        self.warned_json_as_text = False
        # Set in TorchServe's async worker mode, where the handler forms its own batches.
        self.async_worker: AsyncWorker | None = None

    def initialize(self, context: Any) -> None:
        properties = context.system_properties
        model_dir = Path(properties["model_dir"])
        yaml_config = getattr(context, "model_yaml_config", None) or {}
        try:
            settings = HandlerSettings.from_mapping(yaml_config.get("handler"))
            self.envelope = envelope_of_torchserve_loader()
            device = select_device(properties.get("gpu_id"))
            self.runner = build_runner(model_dir, settings, device, model_workers(yaml_config))
            shared_drift = pool_folder_for(cache_root(), model_dir, getattr(context, "manifest", None),
                                           model_workers(yaml_config))  # fmt: skip
            monitor = self._prediction_monitor(model_dir, settings, shared_drift)
            for difference in version_differences(model_dir):
                logger.warning("serving with other library versions than the archive was built with: %s", difference)
        except ConfigurationError as error:
            # One line a user can act on, before TorchServe's traceback of the same error.
            logger.error("model load failed: %s", error)
            raise
        try:
            self.explainer = Explainer(self.runner, settings.explanations.steps)
        except ConfigurationError as error:
            self.explain_unavailable = str(error)
        if settings.serving.cache_size_mb > 0:
            self.response_cache = ResponseCache(int(settings.serving.cache_size_mb * 1024 * 1024))
        policy = self.runner.policy
        runner = self.runner

        def gauges() -> dict[str, float]:
            if runner.policy.measured is None:
                return {}
            return {
                "PackedForward": int(runner.policy.packed),
                "BatchOverheadTokens": runner.policy.batch_overhead_tokens,
                # 1 where dtype auto (or a setting) runs the forward under bf16/fp16 autocast.
                "LowPrecision": int(runner.policy.autocast_dtype is not None),
            }

        self.serving_metrics = ServingMetrics(gauges, monitor)
        if yaml_config.get(ASYNC_KEY):
            if int(yaml_config.get("batchSize", 1)) > 1:
                logger.warning(
                    "%s with batchSize %s: the frontend still waits maxBatchDelay to batch; batchSize 1 lets the "
                    "handler form the batches", ASYNC_KEY, yaml_config["batchSize"],
                )  # fmt: skip
            logger.warning(
                "%s: experimental. TorchServe 0.12's frontend shares its map of jobs in flight between two "
                "threads without a lock; about once in 100,000 requests (measured) it loses a job, drops the "
                "worker and the requests in flight are never answered (docs: performance, serving modes)",
                ASYNC_KEY,
            )
            self.async_worker = AsyncWorker(context, self._answer_gathered, settings.batching.max_batch_requests)
        self.initialized = True
        logger.info(
            "serving %s as %s on %s with %d torch threads, envelope %s, %s",
            model_dir.name,
            self.runner.task.value,
            policy.describe(),
            torch.get_num_threads(),
            self.envelope.value,
            "batches formed by the handler when the model is free (async worker mode)"
            if self.async_worker is not None
            else "batches formed by TorchServe (batchSize, maxBatchDelay)",
        )

    def handle(self, data: Any, context: Any) -> Any:
        """TorchServe's entry point: BaseHandler's steps on TorchServe's batch, or, in the async
        worker mode, an awaitable answer of this request from a batch the handler forms."""
        if self.async_worker is not None:
            return self.async_worker.handle(data, context)
        return super().handle(data, context)

    def _answer_gathered(self, gathered: GatheredContext) -> list[Reply]:
        """A batch the async worker gathered, through the same steps as a TorchServe batch."""
        return gathered.answered(super().handle([arrival.data for arrival in gathered.arrivals], gathered))

    def _prediction_monitor(
        self, model_dir: Path, settings: HandlerSettings, shared_drift: Path | None
    ) -> PredictionMonitor | None:
        """Sequence classifiers' prediction counters and, with a reference, drift tests (the runner
        then keeps each input's representation from the pass that answers it); ``shared_drift``:
        the folder where the model's workers pool their answers into common windows."""
        runner = self._require_runner()
        if runner.task is not Task.SEQUENCE_CLASSIFICATION:
            return None
        reference, drift = settings.monitoring.reference, None
        if reference is not None:
            hidden_size = getattr(runner.config, "hidden_size", None)
            sample = reference_sample(reference, runner.labels, model_dir, hidden_size)
            drift = DriftMonitor(len(runner.labels), sample, settings.monitoring, shared_drift)
            runner.representations = drift.wants_representations
        return PredictionMonitor(runner.labels, settings.monitoring, drift)

    @timed
    def preprocess(self, data: list[Any] | None) -> PreparedBatch:
        runner = self._require_runner()
        items = data or []
        executor: BatchExecutor | None = runner
        if items and self._is_explain():
            executor = self.explainer
        batch = PreparedBatch(executor, [None] * len(items))
        # Explanations are not answers to keep.
        cache = self.response_cache if executor is runner else None
        self.json_sent_as_text = set()
        for index, body in enumerate(self._bodies(items)):
            if isinstance(body, RequestBody) and body.json_sent_as_text:
                self.json_sent_as_text.add(index)
                if not self.warned_json_as_text:
                    logger.warning("a request: %s (said once; each such answer carries %s)", JSON_AS_TEXT_WARNING,
                                   JSON_AS_TEXT_HEADER)  # fmt: skip
                    self.warned_json_as_text = True
            try:
                if isinstance(body, RequestError):
                    raise body
                if executor is None:
                    raise RequestError(self.explain_unavailable, status=501, reason="explain_unavailable")
                parsed = executor.parse(body)
            except RequestError as error:
                batch.outcomes[index] = RequestOutcome.failed(error)
                continue
            if cache is not None and body.use_cache and not body.stream and runner.cacheable(parsed):
                key = cache_key(body)
                cached = cache.get(key) if key is not None else None
                if cached is not None:
                    batch.cached[index] = cached
                    batch.outcomes[index] = cached.outcome
                    batch.cached_inputs += len(parsed.inputs)
                    continue
                if key is not None:
                    batch.cache_keys[index] = key
            batch.parsed.append((index, parsed))
            if body.stream:
                batch.streaming.add(index)
        return batch

    @timed
    def inference(self, batch: PreparedBatch) -> AnsweredBatch:  # type: ignore[override]
        sinks = [self._stream_sink(index) if index in batch.streaming else None for index, _ in batch.parsed]
        requests = [request for _, request in batch.parsed]
        runner = self._require_runner()
        # An explanation runs many passes: it keeps this worker's share of the cores.
        with runner.cores_for(requests, may_borrow=batch.executor is runner):
            result = self._run_isolated(batch.executor, requests, sinks if any(sinks) else None)
        outcomes = list(batch.outcomes)
        for (index, _), outcome in zip(batch.parsed, result.outcomes):
            outcomes[index] = outcome
        done = [
            outcome or RequestOutcome.failed(RequestError("not answered", 500, "internal_error"))
            for outcome in outcomes
        ]
        inputs = sum(len(request.inputs) for _, request in batch.parsed) + batch.cached_inputs
        return AnsweredBatch(done, inputs, result.stats, batch.cached, batch.cache_keys)

    @timed
    def postprocess(self, answered: AnsweredBatch) -> list[Any]:  # type: ignore[override]
        serialized = [
            answered.cached.get(index) or serialize(outcome) for index, outcome in enumerate(answered.outcomes)
        ]
        cache = self.response_cache
        if cache is not None:
            for index, key in answered.cache_keys.items():
                cache.put(key, serialized[index])
        self.serving_metrics.record_batch(
            getattr(self.context, "metrics", None),
            [item.outcome for item in serialized],
            answered.inputs,
            answered.stats,
            cache.take_counts() if cache is not None else None,
        )
        if self.envelope is Envelope.NONE:
            return [self._respond(index, item) for index, item in enumerate(serialized)]
        return self._envelope_answers(serialized)

    def explain_handle(self, data_preprocess: PreparedBatch, raw_data: Any) -> list[Any]:
        return self.postprocess(self.inference(data_preprocess))

    def describe_handle(self) -> str:
        runner = self._require_runner()
        return json_body({"task": runner.task.value, "labels": list(runner.labels), "envelope": self.envelope.value})

    def _require_runner(self) -> TaskRunner:
        if self.runner is None:
            raise RuntimeError("the handler was not initialized")
        return self.runner

    def _bodies(self, items: list[Any]) -> list[RequestBody | RequestError]:
        """One request body per item: an HTTP request, or an instance/input behind an envelope."""
        bodies: list[RequestBody | RequestError] = []
        setting = self._require_runner().settings.serving.response_format
        for index, item in enumerate(items):
            try:
                if self.envelope is Envelope.KSERVE:
                    bodies.append(v1_instance_body(item))
                elif self.envelope is Envelope.KSERVE_V2:
                    bodies.append(v2_input_body(item))
                else:
                    headers = self.context.get_all_request_header(index)
                    body = read_request_body(item, content_type_of(headers))
                    bodies.append(replace(body, response_format=response_format_of(headers, setting)))
            except RequestError as error:
                bodies.append(error)
        return bodies

    def _stream_sink(self, index: int) -> StreamSink | None:
        """Sends chunks of request ``index``'s answer ahead of the rest (TorchServe's streaming
        responses); None where there is no frontend to send to (in-process calls)."""
        context = self.context
        if getattr(context, "cl_socket", None) is None:
            return None

        def send(chunk: str) -> None:
            context.set_response_content_type(index, EVENT_STREAM_CONTENT_TYPE)
            request_ids = {index: context.request_ids[index]}
            send_intermediate_predict_response({index: chunk}, request_ids, "Intermediate response", 200, context)

        return send

    @staticmethod
    def _run_isolated(
        executor: BatchExecutor | None, requests: list[ParsedRequest], sinks: list[StreamSink | None] | None
    ) -> BatchResult:
        """All requests in one go; if that fails, each alone, so a failure stays with its request.

        A stream that already sent events is not run again (its client would get them twice):
        it fails with a 500 where it stands."""
        if executor is None or not requests:
            return BatchResult([])
        tracked = [TrackedSink(sink) if sink is not None else None for sink in sinks] if sinks else None
        try:
            return executor.run(requests, tracked) if tracked else executor.run(requests)
        except Exception:
            logger.exception("batch of %d failed; retrying its requests one by one", len(requests))
        combined = BatchResult([])
        for position, request in enumerate(requests):
            sink = tracked[position] if tracked else None
            if sink is not None and sink.sent:
                error = RequestError("internal error while streaming the answer", 500, "internal_error")
                combined.outcomes.append(RequestOutcome.failed(error))
                continue
            try:
                alone = executor.run([request], [sink]) if sink else executor.run([request])
            except Exception:
                logger.exception("request failed")
                error = RequestError("internal error while running the model", 500, "internal_error")
                combined.outcomes.append(RequestOutcome.failed(error))
                continue
            combined.outcomes.extend(alone.outcomes)
            combined.stats.merge(alone.stats)
        return combined

    def _respond(self, index: int, item: SerializedOutcome) -> str:
        context = self.context
        context.set_response_content_type(index, item.content_type)
        error = item.outcome.error
        if error is not None:
            context.set_response_status(error.status, reason_phrase(error.message), idx=index)
        else:
            if item.outcome.truncated_inputs:
                context.set_response_header(index, TRUNCATED_HEADER, str(item.outcome.truncated_inputs))
            if item.outcome.windows_read:
                context.set_response_header(index, WINDOWS_HEADER, str(item.outcome.windows_read))
            if index in self.json_sent_as_text:
                context.set_response_header(index, JSON_AS_TEXT_HEADER, JSON_AS_TEXT_WARNING)
        return item.text

    def _envelope_answers(self, serialized: list[SerializedOutcome]) -> list[Any]:
        """Per instance (v1) or input (v2), in order; the one HTTP request fails if any item did.

        v1 answers are objects inside ``predictions``; v2 answers are JSON texts, the BYTES data
        of each output. A failed item answers ``{"error": ...}`` in its place.
        """
        answers: list[Any] = []
        first_error: RequestError | None = None
        for index, item in enumerate(serialized):
            error = item.outcome.error
            if error is not None and first_error is None:
                first_error = RequestError(f"item {index}: {error.message}", error.status)
            if self.envelope is Envelope.KSERVE_V2:
                answers.append(item.text)
            else:
                answers.append(item.outcome.payload if error is None else {"error": error.message})
        if first_error is not None:
            self.context.set_response_status(first_error.status, reason_phrase(first_error.message), idx=0)
        truncated = sum(item.outcome.truncated_inputs for item in serialized)
        if truncated:
            self.context.set_response_header(0, TRUNCATED_HEADER, str(truncated))
        return answers
