"""The TorchServe entry point: parse every request of a batch, run the task, answer each in order.

``scripts/archive.py`` passes this file as ``--handler``; TorchServe imports it from the archive
root and instantiates the one class defined here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from ts.torch_handler.base_handler import BaseHandler

from handler.serving.envelopes import Envelope, envelope_of_torchserve_loader, v1_instance_body, v2_input_body
from handler.api.errors import ConfigurationError, RequestError
from handler.tasks.explanations import Explainer
from handler.engine.model_loading import select_device
from handler.registry import build_runner
from handler.api.request_parsing import RequestBody, content_type_of, read_request_body
from handler.serving.responses import JSON_CONTENT_TYPE, TRUNCATED_HEADER, error_body, json_body, reason_phrase
from handler.engine.runner import ForwardStats, ParsedRequest, RequestOutcome, TaskRunner
from handler.serving.metrics import ServingMetrics
from handler.api.settings import HandlerSettings

logger = logging.getLogger(__name__)


class TransformersLabelHandler(BaseHandler):
    def __init__(self) -> None:
        super().__init__()
        self.runner: TaskRunner | None = None
        self.explainer: Explainer | None = None
        self.explain_unavailable = "explanations are not available for this model"
        self.envelope = Envelope.NONE
        self.serving_metrics = ServingMetrics()

    def initialize(self, context: Any) -> None:
        properties = context.system_properties
        model_dir = Path(properties["model_dir"])
        yaml_config = getattr(context, "model_yaml_config", None) or {}
        try:
            settings = HandlerSettings.from_mapping(yaml_config.get("handler"))
            self.envelope = envelope_of_torchserve_loader()
            device = select_device(properties.get("gpu_id"))
            self.runner = build_runner(model_dir, settings, device)
        except ConfigurationError as error:
            # One line a user can act on, before TorchServe's traceback of the same error.
            logger.error("model load failed: %s", error)
            raise
        try:
            self.explainer = Explainer(self.runner, settings.explain_steps)
        except ConfigurationError as error:
            self.explain_unavailable = str(error)
        self.initialized = True
        logger.info(
            "serving %s as %s on %s with %d torch threads, envelope %s",
            model_dir.name,
            self.runner.task.value,
            device,
            torch.get_num_threads(),
            self.envelope.value,
        )

    def handle(self, data: list[Any] | None, context: Any) -> list[Any]:
        runner = self._require_runner()
        items = data or []
        explain = context.get_request_header(0, "explain") == "True" if items else False
        worker: Any = self.explainer if explain else runner
        outcomes: list[RequestOutcome | None] = [None] * len(items)
        parsed: list[tuple[int, ParsedRequest]] = []
        for index, body in enumerate(self._bodies(items, context)):
            try:
                if isinstance(body, RequestError):
                    raise body
                if worker is None:
                    raise RequestError(self.explain_unavailable, status=501, reason="explain_unavailable")
                parsed.append((index, worker.parse(body)))
            except RequestError as error:
                outcomes[index] = RequestOutcome.failed(error)
        runner.last_stats = ForwardStats()
        for (index, _), outcome in zip(parsed, self._run_isolated(worker, [request for _, request in parsed])):
            outcomes[index] = outcome
        done = [
            outcome or RequestOutcome.failed(RequestError("not answered", 500, "internal_error"))
            for outcome in outcomes
        ]
        inputs = sum(len(request.inputs) for _, request in parsed)
        self.serving_metrics.record_batch(getattr(context, "metrics", None), done, inputs, runner.last_stats)
        if self.envelope is Envelope.NONE:
            return [self._respond(context, index, outcome) for index, outcome in enumerate(done)]
        return self._envelope_answers(context, done)

    def _require_runner(self) -> TaskRunner:
        if self.runner is None:
            raise RuntimeError("the handler was not initialized")
        return self.runner

    def _bodies(self, items: list[Any], context: Any) -> list[RequestBody | RequestError]:
        """One request body per item: an HTTP request, or an instance/input behind an envelope."""
        bodies: list[RequestBody | RequestError] = []
        for index, item in enumerate(items):
            try:
                if self.envelope is Envelope.KSERVE:
                    bodies.append(v1_instance_body(item))
                elif self.envelope is Envelope.KSERVE_V2:
                    bodies.append(v2_input_body(item))
                else:
                    bodies.append(read_request_body(item, content_type_of(context.get_all_request_header(index))))
            except RequestError as error:
                bodies.append(error)
        return bodies

    @staticmethod
    def _run_isolated(worker: Any, requests: list[ParsedRequest]) -> list[RequestOutcome]:
        """All requests in one go; if that fails, each alone, so a failure stays with its request."""
        if not requests:
            return []
        try:
            return worker.run(requests)
        except Exception:
            logger.exception("batch of %d failed; retrying its requests one by one", len(requests))
        outcomes = []
        for request in requests:
            try:
                outcomes.extend(worker.run([request]))
            except Exception:
                logger.exception("request failed")
                outcomes.append(
                    RequestOutcome.failed(RequestError("internal error while running the model", 500, "internal_error"))
                )
        return outcomes

    @staticmethod
    def _respond(context: Any, index: int, outcome: RequestOutcome) -> str:
        context.set_response_content_type(index, JSON_CONTENT_TYPE)
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

    def _envelope_answers(self, context: Any, outcomes: list[RequestOutcome]) -> list[Any]:
        """Per instance (v1) or input (v2), in order; the one HTTP request fails if any item did.

        v1 answers are objects inside ``predictions``; v2 answers are JSON texts, the BYTES data
        of each output. A failed item answers ``{"error": ...}`` in its place.
        """
        answers: list[Any] = []
        first_error: RequestError | None = None
        for index, outcome in enumerate(outcomes):
            text = None
            if outcome.error is None:
                try:
                    text = json_body(outcome.payload)
                except ValueError:
                    outcome = RequestOutcome.failed(RequestError("the model produced a non-finite score (NaN)", 500))
            if outcome.error is not None:
                text = error_body(outcome.error.message)
                if first_error is None:
                    first_error = RequestError(f"item {index}: {outcome.error.message}", outcome.error.status)
            # v2 carries each answer as JSON text in a BYTES output; v1 nests the objects.
            if self.envelope is Envelope.KSERVE_V2:
                answers.append(text)
            else:
                answers.append(outcome.payload if outcome.error is None else {"error": outcome.error.message})
        if first_error is not None:
            context.set_response_status(first_error.status, reason_phrase(first_error.message), idx=0)
        truncated = sum(outcome.truncated_inputs for outcome in outcomes)
        if truncated:
            context.set_response_header(0, TRUNCATED_HEADER, str(truncated))
        return answers
