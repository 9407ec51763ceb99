"""Value types shared by every layer: a parsed request, its outcome, and a batch's token accounting."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from handler.api.errors import RequestError
from handler.api.request_parsing import RequestBody
from handler.api.streaming import StreamSink

InputT = TypeVar("InputT")
ParamsT = TypeVar("ParamsT")


@dataclass(frozen=True)
class ParsedRequest(Generic[InputT, ParamsT]):
    inputs: tuple[InputT, ...]
    # A request that sent a list of inputs gets a list of results; a single input, one result.
    is_list: bool
    params: ParamsT


@dataclass(frozen=True)
class ClassScores:
    """One input's classification as served, before it is rendered into an answer shape."""

    # Served (calibrated) scores per label, in label index order (an ndarray; logits when the
    # request asked for function_to_apply none).
    scores: Sequence[float]
    # The names of the label set in use, in index order.
    labels: tuple[str, ...]
    # Indices of the labels decided on, best first: the top label (single-label), every label
    # reaching its threshold (multi-label; possibly none).
    decision: tuple[int, ...]
    # With parameters.coverage: the conformal prediction set's label indices, best first.
    prediction_set: tuple[int, ...] | None = None
    # With parameters.abstain: whether the top score is below the model's abstention threshold.
    abstained: bool | None = None
    # False when the scores are logits (function_to_apply none): no confidence to monitor.
    probabilities: bool = True
    # With input drift monitored: the mean of the encoder's last hidden states over the input's
    # tokens (over its windows' means, for long text), float32; never rendered.
    representation: Any = None


@dataclass(frozen=True)
class RequestOutcome:
    payload: Any = None
    error: RequestError | None = None
    # The typed result of each input (classification: ClassScores), what the payload renders.
    results: tuple[Any, ...] = ()
    truncated_inputs: int = 0
    # Windows read for inputs read whole (long_text mean/max); 0 when none was.
    windows_read: int = 0
    # A streamed answer's last event, sent as it is (the earlier events went out as they came).
    stream_tail: str | None = None

    @classmethod
    def failed(cls, error: RequestError) -> RequestOutcome:
        return cls(error=error)

    @classmethod
    def answered(
        cls, request: ParsedRequest, results: Sequence[Any], render: Callable[[Any], Any], **counts: Any
    ) -> RequestOutcome:
        """The outcome of ``request`` from one typed result per input: a request that sent a list
        gets a list of answers, a single input its one answer (the only place this is decided)."""
        rendered = [render(result) for result in results]
        payload = rendered if request.is_list else rendered[0]
        return cls(payload=payload, results=tuple(results), **counts)


@dataclass
class ForwardStats:
    """Token accounting of the forward passes of one TorchServe batch (for metrics and benchmarks)."""

    real_tokens: int = 0
    padded_tokens: int = 0
    forward_passes: int = 0

    def add_pass(self, lengths: Sequence[int], padded: bool) -> None:
        """One pass over rows of ``lengths`` tokens; a padded pass computes every row at the longest."""
        real = sum(lengths)
        self.real_tokens += real
        self.padded_tokens += max(lengths, default=0) * len(lengths) if padded else real
        self.forward_passes += 1

    def merge(self, other: ForwardStats) -> None:
        self.real_tokens += other.real_tokens
        self.padded_tokens += other.padded_tokens
        self.forward_passes += other.forward_passes

    @property
    def padding_ratio(self) -> float:
        return 0.0 if self.padded_tokens == 0 else 1.0 - self.real_tokens / self.padded_tokens


@dataclass
class BatchResult:
    """What running a batch of parsed requests gives: one outcome per request, in order, and the
    token accounting of the passes that produced them."""

    outcomes: list[RequestOutcome]
    stats: ForwardStats = field(default_factory=ForwardStats)


class BatchExecutor(Protocol):
    """What answers a TorchServe batch: a task runner, or the explainer."""

    def parse(self, body: RequestBody) -> ParsedRequest: ...

    def run(self, requests: Sequence[ParsedRequest], sinks: Sequence[StreamSink | None] | None = None) -> BatchResult:
        """Answer ``requests``; ``sinks[i]``, where given, receives request i's streamed chunks."""
        ...
