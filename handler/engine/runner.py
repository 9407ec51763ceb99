"""What every task mode provides to the TorchServe handler: the runner contract.

A runner turns one request body into a :class:`ParsedRequest` (or a RequestError), and a list of
parsed requests into one :class:`RequestOutcome` each, in order, each built from typed results
per input (:meth:`RequestOutcome.answered`). It runs every forward inside its
:class:`ExecutionPolicy`, fixed at load. The shared encoder machinery is in
``handler/engine/encoder_runner.py``; this module names no task.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic

from handler.api.errors import ConfigurationError, RequestError
from handler.api.parameters import ParamSpec, request_parameters, schema_defaults, validate_parameters
from handler.api.request_parsing import RequestBody
from handler.api.settings import HandlerSettings
from handler.api.streaming import StreamSink
from handler.api.tasks import Task
from handler.api.types import BatchResult, InputT, ParamsT, ParsedRequest
from handler.engine.batching import plan_micro_batches
from handler.engine.core_sharing import LONE_REQUEST_CHARACTERS, CoreSharing, input_characters
from handler.engine.execution import ExecutionPolicy
from handler.engine.load_measurements import LoadMeasurements
from handler.engine.model_loading import LoadedModel


@dataclass(frozen=True)
class RunnerSetup:
    """What a runner is built from: the loaded model, the settings and the names of its outputs."""

    loaded: LoadedModel
    settings: HandlerSettings
    labels: tuple[str, ...] | None = None
    # Other names for the same outputs, by set name (index_to_name.<set>.json).
    label_sets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # How forward passes run; None: the settings' defaults on the model's device.
    policy: ExecutionPolicy | None = None
    # Texts that dtype auto checks low precision on (probe.txt beside the model; may be empty).
    probe: tuple[str, ...] = ()
    # Where the load-time timings are taken one at a time and remembered; None: neither.
    measurements: LoadMeasurements | None = None


class TaskRunner(abc.ABC, Generic[InputT, ParamsT]):
    task: ClassVar[Task]
    # The transformers Auto class that loads this task's model.
    auto_model_class: ClassVar[Any]
    parameter_schema: ClassVar[Mapping[str, ParamSpec]]
    needs_fast_tokenizer: ClassVar[bool] = False

    def __init__(self, setup: RunnerSetup) -> None:
        loaded, settings = setup.loaded, setup.settings
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.config = loaded.config
        self.device = loaded.device
        self.settings = settings
        # True (encoder tasks): each window's output also holds "representation", the mean of the
        # encoder's last hidden states over its tokens (what input drift is tested on), same pass.
        self.representations = False
        # Set at load where this worker runs on a share of the cores (handler/engine/core_sharing.py).
        self.core_sharing: CoreSharing | None = None
        self.policy = setup.policy or ExecutionPolicy.from_settings(settings, loaded.device)
        self.probe = setup.probe
        self.measurements = setup.measurements or LoadMeasurements.unshared()
        self.labels: tuple[str, ...] = setup.labels or ()
        self.label_sets: Mapping[str, tuple[str, ...]] = dict(setup.label_sets)
        model_limit = getattr(self.tokenizer, "model_max_length", None)
        position_limit = getattr(self.config, "max_position_embeddings", None)
        limits = [limit for limit in (model_limit, position_limit) if isinstance(limit, int) and limit > 0]
        # Tokenizers without a limit report a huge sentinel (1e30); positions are the real bound.
        self.max_length = settings.effective_max_length(min(limits) if limits else None)
        schema = self.schema()
        try:
            configured = validate_parameters(settings.parameters, schema, where="handler.parameters")
        except ValueError as error:
            raise ConfigurationError(f"model-config.yaml: {error}") from None
        # The one place defaults are merged: the schema's, then the model config's.
        self.default_parameters = {**schema_defaults(schema), **configured}

    @property
    def batch_overhead_tokens(self) -> int:
        return self.policy.batch_overhead_tokens

    def cores_for(
        self, requests: Sequence[ParsedRequest[InputT, ParamsT]], may_borrow: bool = True
    ) -> contextlib.AbstractContextManager[int | None]:
        """Around one batch's passes: the threads they run on, borrowed where the cores are shared
        and idle and the batch is one short request (core_sharing.py); a worker that has the cores
        to itself, or a batch with nothing to run, holds nothing."""
        if self.core_sharing is None or not requests:
            return contextlib.nullcontext()
        lone = may_borrow and len(requests) == 1 and input_characters(requests[0].inputs) <= LONE_REQUEST_CHARACTERS
        return self.core_sharing.pass_for(lone)

    def prepare_execution(self) -> None:
        """Settle how forward passes run, once the runner is otherwise ready (at load)."""

    def plan_padded_passes(self, lengths: Sequence[int]) -> list[list[int]]:
        """Inputs grouped into padded forward passes, as the handler settings ask."""
        settings = self.settings
        return plan_micro_batches(
            lengths,
            settings.batching.micro_batch_size,
            settings.batching.max_batch_tokens,
            settings.batching.sort_by_length,
            self.policy.batch_overhead_tokens,
        )

    def schema(self) -> Mapping[str, ParamSpec]:
        return self.parameter_schema

    def cacheable(self, request: ParsedRequest[InputT, ParamsT]) -> bool:
        """Whether the answer to ``request`` is the same every time (and so may be cached)."""
        return True

    def parameters_for(self, body: RequestBody) -> dict[str, Any]:
        """Every parameter with a value: the request's own over the defaults."""
        if body.stream and not self.task.streams:
            streaming = ", ".join(task.value.replace("_", " ") for task in Task if task.streams)
            raise RequestError(f'"stream": true is for {streaming}, not {self.task.value}', reason="wrong_shape")
        return {**self.default_parameters, **request_parameters(body.parameters, self.schema())}

    def labels_named_by(self, params: Mapping[str, Any]) -> tuple[str, ...]:
        """The label names a request asked for with ``label_set`` (the main ones without it)."""
        name = params.get("label_set")
        if name is None:
            return self.labels
        if name not in self.label_sets:
            available = ", ".join(sorted(self.label_sets)) or "none (this archive has only index_to_name.json)"
            raise RequestError(
                f"parameters.label_set {name!r} is not in this archive; available: {available}",
                reason="invalid_parameter",
            )
        return self.label_sets[name]

    @abc.abstractmethod
    def parse(self, body: RequestBody) -> ParsedRequest[InputT, ParamsT]: ...

    @abc.abstractmethod
    def render(self, result: Any, params: ParamsT) -> Any:
        """The JSON-able answer for one input's typed result, in the shape its request asked for."""

    @abc.abstractmethod
    def run(
        self, requests: Sequence[ParsedRequest[InputT, ParamsT]], sinks: Sequence[StreamSink | None] | None = None
    ) -> BatchResult:
        """One outcome per request; ``sinks`` (streaming runners only) receive streamed chunks."""
