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

What the model predicts (sequence classification; answers computed, not those from the cache):

| metric | what it counts | series per model |
| --- | --- | --- |
| ``PredictionsTotal{Label}`` | inputs by top label (the main mapping's names) | at most limit + 1 (a) |
| ``ConfidenceTotal{Bucket}`` | inputs by top-label score in fixed buckets ("0.90-0.95") | 8 (b) |
| ``AbstainCheckedTotal`` | inputs asked with ``abstain`` | 1 |
| ``AbstentionsTotal`` | of those, the answers that abstained | 1 |
| ``PredictionSetSizeTotal{Size}`` | inputs asked with ``coverage``, by set size ("0".."10", "11+") | at most 12 |

(a) labels up to ``monitoring.metrics_label_limit`` (default 50) by index, the rest as
``__other__``. (b) no Label dimension on it, so the labels x buckets series never exist.

Drift tests (handler/serving/drift_monitor.py), when the archive has a reference
(``monitoring.reference``): each worker takes its computed answers in consecutive windows of
``monitoring.drift_window`` and tests each in a background thread; after each tested window the
gauges ``DriftInputP`` and ``DriftInputMMD`` (the input test, when the reference has inputs),
``DriftLabelP``, ``DriftConfidenceP`` (the output tests), ``DriftLabelPSI``, ``DriftLabelJS``,
``DriftConfidencePSI``, ``DriftConfidenceJS`` (effect sizes) and ``DriftAlarm`` (1 from a window
in which a test rejects until ``drift_clear_windows`` quiet windows; each change is logged as a
warning). Gauges are per worker: with several workers the series shows whichever reported last.
The counters ``DriftWindowsTestedTotal`` and ``DriftWindowsRejectedTotal`` add up over workers,
so ``increase(DriftWindowsRejectedTotal[15m]) > 0`` alarms for the model as a whole.
``DriftWindowsSkippedTotal`` counts windows completed while the previous one still waited.

Gauges of how the model runs, set at load, reported with the first batch and again whenever they
change (live tuning switches strategy, handler/engine/live_tuning.py): ``PackedForward``
(1: padding-free passes, 0: padded) and ``BatchOverheadTokens`` (a padded pass's fixed cost in
tokens, measured or configured; handler/engine/pass_costs.py).

Each metric costs a log line the frontend parses, so a counter is reported when it grows (and
once at the first batch, so every series exists from the start). Reasons are fixed words, never
request text.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ts.metrics.dimension import Dimension
from ts.metrics.metric_type_enum import MetricTypes

from handler.api.settings import MonitoringSettings
from handler.api.types import ClassScores, ForwardStats, RequestOutcome
from handler.postprocess.monitoring import bucket_names, confidence_bucket
from handler.serving.drift_monitor import DriftMonitor
from handler.serving.response_cache import CacheCounts

logger = logging.getLogger(__name__)


OTHER_LABEL = "__other__"
# Set sizes above this are counted together as "11+".
LARGEST_SIZE_NAMED = 10


class PredictionMonitor:
    """Counts what a sequence classifier predicts, and its drift from the reference, per batch."""

    def __init__(
        self, labels: tuple[str, ...], settings: MonitoringSettings, drift: DriftMonitor | None = None
    ) -> None:
        limit = settings.metrics_label_limit
        self.label_names = tuple(label if i < limit else OTHER_LABEL for i, label in enumerate(labels))
        self.bucket_names = bucket_names()
        self.settings = settings
        self.drift_monitor = drift
        # The drift monitor's window counts as last reported (it counts in its own thread).
        self._reported: dict[str, int] = {}

    def initial_series(self) -> dict[tuple[str, str | None, str | None], int]:
        """Every series at 0, reported with the first batch: a counter that first appears at N
        loses those N to Prometheus' rate(), and a label first seen later would too."""
        series: dict[tuple[str, str | None, str | None], int] = {}
        for name in dict.fromkeys(self.label_names):
            series["PredictionsTotal", "Label", name] = 0
        for bucket in self.bucket_names:
            series["ConfidenceTotal", "Bucket", bucket] = 0
        if self.drift_monitor is not None:
            for name in ("DriftWindowsSkippedTotal", "DriftWindowsTestedTotal", "DriftWindowsRejectedTotal"):
                series[name, None, None] = 0
        series["AbstainCheckedTotal", None, None] = 0
        series["AbstentionsTotal", None, None] = 0
        for size in range(min(len(self.label_names), LARGEST_SIZE_NAMED) + 1):
            series["PredictionSetSizeTotal", "Size", str(size)] = 0
        return series

    def counts(self, outcomes: Sequence[RequestOutcome]) -> dict[tuple[str, str | None, str | None], int]:
        """(metric, dimension, value) -> count for this batch; the window moves on."""
        found: Counter[tuple[str, str | None, str | None]] = Counter()
        for outcome in outcomes:
            for result in outcome.results:
                # Zero-shot results name request text as labels: never a metric dimension.
                if type(result) is not ClassScores or not result.probabilities:
                    continue
                scores = result.scores
                top = max(range(len(scores)), key=scores.__getitem__)
                confidence = float(scores[top])
                found["PredictionsTotal", "Label", self.label_names[top]] += 1
                bucket = self.bucket_names[confidence_bucket(confidence)]
                found["ConfidenceTotal", "Bucket", bucket] += 1
                if result.abstained is not None:
                    found["AbstainCheckedTotal", None, None] += 1
                    found["AbstentionsTotal", None, None] += int(result.abstained)
                if result.prediction_set is not None:
                    size = len(result.prediction_set)
                    found["PredictionSetSizeTotal", "Size", str(size) if size <= LARGEST_SIZE_NAMED else "11+"] += 1
                if self.drift_monitor is not None:
                    self.drift_monitor.add(top, confidence, result.representation)
        if self.drift_monitor is not None:
            self.drift_monitor.end_batch()
            for name, now in (("DriftWindowsSkippedTotal", self.drift_monitor.skipped),
                              ("DriftWindowsTestedTotal", self.drift_monitor.tested_windows),
                              ("DriftWindowsRejectedTotal", self.drift_monitor.rejected_windows)):  # fmt: skip
                if now > self._reported.get(name, 0):
                    found[name, None, None] += now - self._reported.get(name, 0)
                    self._reported[name] = now
        return dict(found)

    def drift(self) -> dict[str, float] | None:
        """The drift gauges of the latest window tested since the last call (None: none)."""
        return None if self.drift_monitor is None else self.drift_monitor.take_gauges()


class ServingMetrics:
    def __init__(
        self, gauges: Callable[[], Mapping[str, float]] | None = None, monitor: PredictionMonitor | None = None
    ) -> None:
        self._reported_once = False
        # How the worker runs, read each batch and reported when it changes (live tuning switches).
        self.gauges = gauges or dict
        self._reported_gauges: dict[str, float] = {}
        self.monitor = monitor

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
            first_batch = not self._reported_once
            for name, value in counts.items():
                if value or first_batch:
                    # TorchServe appends default dimensions to the list it gets: always a fresh one.
                    metrics.add_counter(name, value, dimensions=[])
            for name, value in self.gauges().items():
                if self._reported_gauges.get(name) != value:
                    metrics.add_metric(name, value, "count", dimensions=[], metric_type=MetricTypes.GAUGE)
                    self._reported_gauges[name] = value
            self._reported_once = True
            reasons = Counter(
                ("ClientErrorsTotal" if outcome.error.status < 500 else "ServerErrorsTotal", outcome.error.reason)
                for outcome in outcomes
                if outcome.error is not None
            )
            for (name, reason), count in reasons.items():
                metrics.add_counter(name, count, dimensions=[Dimension("Reason", reason)])
            if self.monitor is not None:
                counts = self.monitor.counts(outcomes)
                if first_batch:
                    counts = {**self.monitor.initial_series(), **counts}
                for (name, dimension, value), count in counts.items():
                    dimensions = [] if dimension is None else [Dimension(dimension, value)]
                    metrics.add_counter(name, count, dimensions=dimensions)
                for name, gauge in (self.monitor.drift() or {}).items():
                    metrics.add_metric(name, gauge, "count", dimensions=[], metric_type=MetricTypes.GAUGE)
        except Exception:
            logger.warning("could not record metrics", exc_info=True)
