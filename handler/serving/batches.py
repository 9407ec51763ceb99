"""A TorchServe batch between the handler's steps: parsed (``preprocess``), then answered (``inference``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from handler.api.types import BatchExecutor, ForwardStats, ParsedRequest, RequestOutcome
from handler.serving.responses import SerializedOutcome


@dataclass
class PreparedBatch:
    """A TorchServe batch after parsing: what runs it (the task runner, or the explainer), the
    requests it parsed, and the outcomes already known (requests that failed to parse)."""

    # None when explanations were asked for and are unavailable.
    executor: BatchExecutor | None
    outcomes: list[RequestOutcome | None]
    parsed: list[tuple[int, ParsedRequest]] = field(default_factory=list)
    # Indices of the requests that asked for a stream of events.
    streaming: set[int] = field(default_factory=set)
    # Answers found in the response cache, and the cache keys of the requests to keep, by index.
    cached: dict[int, SerializedOutcome] = field(default_factory=dict)
    cache_keys: dict[int, str] = field(default_factory=dict)
    cached_inputs: int = 0


@dataclass
class AnsweredBatch:
    outcomes: list[RequestOutcome]
    inputs: int
    stats: ForwardStats
    cached: dict[int, SerializedOutcome] = field(default_factory=dict)
    cache_keys: dict[int, str] = field(default_factory=dict)
