"""Custom metrics through TorchServe's metrics API (``context.metrics``), a few lines per batch.

All are counters, so Prometheus rates and ratios of them give the per-batch figures:

| counter | what it counts | derived figure |
| --- | --- | --- |
| ``RequestsTotal`` | requests handled | |
| ``InputsTotal`` | inputs in those requests | inputs per request = InputsTotal / RequestsTotal |
| ``BatchesTotal`` | TorchServe batches handled | tokens per batch = TokensTotal / BatchesTotal |
| ``TokensTotal`` | tokens fed to the model | |
| ``PaddedTokensTotal`` | tokens computed, padding included | padding ratio = 1 - TokensTotal / PaddedTokensTotal |
| ``TruncatedInputsTotal`` | inputs cut at max_length (or max_windows_per_input) | |
| ``ClientErrorsTotal{Reason}`` | 4xx answers by reason (``malformed_json``, ``invalid_parameter``, ...) | |
| ``ServerErrorsTotal{Reason}`` | 5xx answers by reason (``non_finite_output``, ``internal_error``) | |
| ``CacheHitsTotal`` | requests answered from the response cache | hit rate = hits / (hits + misses) |
| ``CacheMissesTotal`` | cacheable requests that ran the model | |
| ``CacheEvictionsTotal`` | answers dropped to stay within ``cache_size_mb`` | |

Gauges of how the model runs, set at load and reported with the first batch: ``PackedForward``
(1: padding-free passes, 0: padded) and ``BatchOverheadTokens`` (a padded pass's fixed cost in
tokens, measured or configured; handler/engine/pass_costs.py).

Each metric costs a log line the frontend parses, so a counter is reported when it grows (and
once at the first batch, so every series exists from the start). Reasons are fixed words, never
request text.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ts.metrics.dimension import Dimension
from ts.metrics.metric_type_enum import MetricTypes

from handler.api.types import ForwardStats, RequestOutcome
from handler.serving.response_cache import CacheCounts

logger = logging.getLogger(__name__)


class ServingMetrics:
    def __init__(self, gauges: Mapping[str, float] | None = None) -> None:
        self._reported_once = False
        self.gauges = dict(gauges or {})

    def record_batch(
        self,
        metrics: Any,
        outcomes: Sequence[RequestOutcome],
        inputs: int,
        stats: ForwardStats,
        cache: CacheCounts | None = None,
    ) -> None:
        """Report one handled batch; a metrics failure is logged, never raised into the batch."""
        if metrics is None:
            return
        try:
            counts = {
                "RequestsTotal": len(outcomes),
                "InputsTotal": inputs,
                "BatchesTotal": 1,
                "TokensTotal": stats.real_tokens,
                "PaddedTokensTotal": stats.padded_tokens,
                "TruncatedInputsTotal": sum(outcome.truncated_inputs for outcome in outcomes),
            }
            if cache is not None:
                counts.update(
                    CacheHitsTotal=cache.hits, CacheMissesTotal=cache.misses, CacheEvictionsTotal=cache.evictions
                )
            for name, value in counts.items():
                if value or not self._reported_once:
                    # TorchServe appends default dimensions to the list it gets: always a fresh one.
                    metrics.add_counter(name, value, dimensions=[])
            if not self._reported_once:
                for name, value in self.gauges.items():
                    metrics.add_metric(name, value, "count", dimensions=[], metric_type=MetricTypes.GAUGE)
            self._reported_once = True
            reasons = Counter(
                ("ClientErrorsTotal" if outcome.error.status < 500 else "ServerErrorsTotal", outcome.error.reason)
                for outcome in outcomes
                if outcome.error is not None
            )
            for (name, reason), count in reasons.items():
                metrics.add_counter(name, count, dimensions=[Dimension("Reason", reason)])
        except Exception:
            logger.warning("could not record metrics", exc_info=True)
