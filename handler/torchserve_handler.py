"""The TorchServe entry point: parse every request of a batch, run the task, answer each in order.

``scripts/archive.py`` passes this file as ``--handler``; TorchServe imports it from the archive
root and instantiates the one class defined here.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler

from handler.errors import ConfigurationError, RequestError
from handler.model_loading import select_device
from handler.registry import build_runner
from handler.request_parsing import content_type_of, read_request_body
from handler.responses import JSON_CONTENT_TYPE, TRUNCATED_HEADER, error_body, json_body, reason_phrase
from handler.runner import ForwardStats, ParsedRequest, RequestOutcome, TaskRunner
from handler.serving_metrics import ServingMetrics
from handler.settings import HandlerSettings

logger = logging.getLogger(__name__)


class TransformersLabelHandler(BaseHandler):
    def __init__(self) -> None:
        super().__init__()
        self.runner: TaskRunner | None = None
        self.serving_metrics = ServingMetrics()

    def initialize(self, context: Any) -> None:
        properties = context.system_properties
        model_dir = Path(properties["model_dir"])
        yaml_config = getattr(context, "model_yaml_config", None) or {}
        try:
            settings = HandlerSettings.from_mapping(yaml_config.get("handler"))
            device = select_device(properties.get("gpu_id"))
            self.runner = build_runner(model_dir, settings, device)
        except ConfigurationError as error:
            # One line a user can act on, before TorchServe's traceback of the same error.
            logger.error("model load failed: %s", error)
            raise
        self.initialized = True
        logger.info(
            "serving %s as %s on %s with %d torch threads", model_dir.name, self.runner.task.value, device,
            torch.get_num_threads(),
        )  # fmt: skip

    def handle(self, data: list[dict[str, Any]], context: Any) -> list[str]:
        started = time.perf_counter()
        runner = self._require_runner()
        outcomes: list[RequestOutcome | None] = [None] * len(data)
        parsed: list[tuple[int, ParsedRequest]] = []
        for index, item in enumerate(data):
            try:
                body = read_request_body(item, content_type_of(context.get_all_request_header(index)))
                parsed.append((index, runner.parse(body)))
            except RequestError as error:
                outcomes[index] = RequestOutcome.failed(error)
        runner.last_stats = ForwardStats()
        for (index, _), outcome in zip(parsed, self._run_isolated(runner, [request for _, request in parsed])):
            outcomes[index] = outcome
        responses = [self._respond(context, index, outcome) for index, outcome in enumerate(outcomes)]
        inputs = sum(len(request.inputs) for _, request in parsed)
        self.serving_metrics.record_batch(getattr(context, "metrics", None), outcomes, inputs, runner.last_stats)
        logger.debug("batch of %d answered in %.1f ms", len(data), (time.perf_counter() - started) * 1000)
        return responses

    def _require_runner(self) -> TaskRunner:
        if self.runner is None:
            raise RuntimeError("the handler was not initialized")
        return self.runner

    @staticmethod
    def _run_isolated(runner: TaskRunner, requests: list[ParsedRequest]) -> list[RequestOutcome]:
        """All requests in one go; if that fails, each alone, so a failure stays with its request."""
        if not requests:
            return []
        try:
            return runner.run(requests)
        except Exception:
            logger.exception("batch of %d failed; retrying its requests one by one", len(requests))
        outcomes = []
        for request in requests:
            try:
                outcomes.extend(runner.run([request]))
            except Exception:
                logger.exception("request failed")
                outcomes.append(
                    RequestOutcome.failed(RequestError("internal error while running the model", 500, "internal_error"))
                )
        return outcomes

    @staticmethod
    def _respond(context: Any, index: int, outcome: RequestOutcome | None) -> str:
        context.set_response_content_type(index, JSON_CONTENT_TYPE)
        assert outcome is not None
        if outcome.error is None:
            try:
                body = json_body(outcome.payload)
            except ValueError:
                outcome = RequestOutcome.failed(
                    RequestError("the model produced a non-finite score (NaN)", 500, "non_finite_output")
                )
            else:
                if outcome.truncated_inputs:
                    context.set_response_header(index, TRUNCATED_HEADER, str(outcome.truncated_inputs))
                return body
        assert outcome.error is not None
        context.set_response_status(outcome.error.status, reason_phrase(outcome.error.message), idx=index)
        return error_body(outcome.error.message)
