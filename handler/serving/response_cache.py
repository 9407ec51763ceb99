"""Final answers kept for requests that repeat (``handler.cache_size_mb``): an LRU bounded by bytes.

Production traffic repeats itself (the same headline, the same support macro), and an answer is a
pure function of the request body, the model and its settings. So a request whose inputs,
parameters and answer shape were answered before gets the same bytes back without tokenizing or
running the model. The key is the request's JSON with its object keys sorted, and the text exactly
as sent: answers quote the text (entity words, answer spans), so two texts the tokenizer would
treat alike may still need different answers. Streams, explanations, sampled generation and
requests that say ``"options": {"use_cache": false}`` bypass it; failures are never kept.

One cache per worker process (TorchServe runs one request batch at a time in a worker).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass

from handler.api.request_parsing import RequestBody
from handler.serving.responses import SerializedOutcome

# Bookkeeping per entry beyond its key and body (the dict slot, the objects holding them).
ENTRY_OVERHEAD_BYTES = 256


def cache_key(body: RequestBody) -> str | None:
    """The request's identity for the cache; None when it cannot be written as JSON."""
    try:
        return json.dumps(
            [body.inputs, body.parameters, body.response_format.value], sort_keys=True, ensure_ascii=False
        )
    except (TypeError, ValueError):
        return None


@dataclass
class CacheCounts:
    hits: int = 0
    misses: int = 0
    evictions: int = 0


class ResponseCache:
    """Serialized answers by key, least recently used evicted first once over ``capacity_bytes``."""

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self.size_bytes = 0
        self._entries: OrderedDict[str, tuple[SerializedOutcome, int]] = OrderedDict()
        self.counts = CacheCounts()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> SerializedOutcome | None:
        entry = self._entries.get(key)
        if entry is None:
            self.counts.misses += 1
            return None
        self._entries.move_to_end(key)
        self.counts.hits += 1
        return entry[0]

    def put(self, key: str, answer: SerializedOutcome) -> None:
        """Keep a successful, complete answer; one larger than the whole cache is not kept."""
        if answer.outcome.error is not None or answer.outcome.stream_tail is not None:
            return
        size = _size_of(key, answer)
        if size > self.capacity_bytes:
            return
        previous = self._entries.pop(key, None)
        if previous is not None:
            self.size_bytes -= previous[1]
        self._entries[key] = (answer, size)
        self.size_bytes += size
        while self.size_bytes > self.capacity_bytes:
            _, (_, evicted_size) = self._entries.popitem(last=False)
            self.size_bytes -= evicted_size
            self.counts.evictions += 1

    def take_counts(self) -> CacheCounts:
        """The counts since the last call (for counters reported per batch)."""
        counts, self.counts = self.counts, CacheCounts()
        return counts


def _size_of(key: str, answer: SerializedOutcome) -> int:
    return len(key.encode("utf-8")) + len(answer.text.encode("utf-8")) + ENTRY_OVERHEAD_BYTES
