"""The serving layer's pure parts: serialising outcomes, reason phrases, the metrics a batch reports,
and BaseHandler's own timing metrics kept working through the handler."""

from __future__ import annotations

import json
import math

import pytest
from support import call, load_handler
from ts.metrics.dimension import Dimension
from ts.metrics.metric_type_enum import MetricTypes

from handler.api.errors import RequestError
from handler.api.types import ForwardStats, RequestOutcome
from handler.serving.metrics import ServingMetrics
from handler.serving.response_cache import CacheCounts
from handler.serving.responses import reason_phrase, serialize


def test_a_payload_is_serialised_once_as_utf8_json():
    item = serialize(RequestOutcome(payload={"label": "négatif", "score": 0.5}))
    assert item.outcome.error is None
    assert item.text == '{"label": "négatif", "score": 0.5}'


def test_a_non_finite_score_becomes_a_500_with_its_own_reason():
    item = serialize(RequestOutcome(payload=[{"label": "a", "score": math.nan}], truncated_inputs=1))
    assert item.outcome.error is not None
    assert (item.outcome.error.status, item.outcome.error.reason) == (500, "non_finite_output")
    assert json.loads(item.text) == {"error": "the model produced a non-finite score (NaN)"}


def test_an_error_outcome_serialises_its_message():
    item = serialize(RequestOutcome.failed(RequestError("inputs is empty", 400, "empty_input")))
    assert json.loads(item.text) == {"error": "inputs is empty"}


def test_reason_phrases_are_printable_ascii_and_bounded():
    assert reason_phrase("bad\nvalue é") == "bad?value ?"
    long = reason_phrase("x" * 500)
    assert len(long) == 160 and long.endswith("...")


class RecordingMetrics:
    """Stands in for TorchServe's metrics cache: records what the handler reports."""

    def __init__(self, fail: bool = False) -> None:
        self.counters: list[tuple[str, int, list[Dimension]]] = []
        self.gauges: dict[str, float] = {}
        self.times: list[str] = []
        self.fail = fail

    def add_counter(self, name, value, dimensions=None):  # noqa: ANN001
        if self.fail:
            raise RuntimeError("metrics backend down")
        self.counters.append((name, value, list(dimensions or [])))

    def add_time(self, name, value, idx=None, unit="ms", dimensions=None, metric_type=None):  # noqa: ANN001
        self.times.append(name)

    def add_metric(self, name, value, unit, idx=None, dimensions=None, metric_type=None):  # noqa: ANN001
        assert metric_type is MetricTypes.GAUGE
        self.gauges[name] = value


def test_the_first_batch_creates_every_counter_and_later_ones_report_growth():
    metrics, serving = RecordingMetrics(), ServingMetrics()
    stats = ForwardStats()
    stats.add_pass([3, 5], padded=True)
    ok = RequestOutcome(payload={}, truncated_inputs=1)
    serving.record_batch(metrics, [ok], inputs=2, stats=stats)
    first = {name: value for name, value, _ in metrics.counters}
    assert first == {"RequestsTotal": 1, "InputsTotal": 2, "BatchesTotal": 1, "TokensTotal": 8,
                     "PaddedTokensTotal": 10, "TruncatedInputsTotal": 1}  # fmt: skip
    metrics.counters.clear()
    serving.record_batch(metrics, [RequestOutcome(payload={})], inputs=1, stats=ForwardStats())
    assert {name for name, _, _ in metrics.counters} == {"RequestsTotal", "InputsTotal", "BatchesTotal"}


def test_gauges_are_reported_with_the_first_batch_only():
    metrics, serving = RecordingMetrics(), ServingMetrics(lambda: {"PackedForward": 1, "BatchOverheadTokens": 40})
    serving.record_batch(metrics, [RequestOutcome(payload={})], inputs=1, stats=ForwardStats())
    assert metrics.gauges == {"PackedForward": 1, "BatchOverheadTokens": 40}
    metrics.gauges.clear()
    serving.record_batch(metrics, [RequestOutcome(payload={})], inputs=1, stats=ForwardStats())
    assert metrics.gauges == {}


def test_cache_counters_are_reported_when_the_cache_is_on():
    metrics, serving = RecordingMetrics(), ServingMetrics()
    serving.record_batch(metrics, [RequestOutcome(payload={})], 1, ForwardStats(), CacheCounts(hits=2, misses=1))
    reported = {name: value for name, value, _ in metrics.counters}
    assert (reported["CacheHitsTotal"], reported["CacheMissesTotal"], reported["CacheEvictionsTotal"]) == (2, 1, 0)
    metrics.counters.clear()
    serving.record_batch(metrics, [RequestOutcome(payload={})], 1, ForwardStats(), CacheCounts(evictions=3))
    assert {name: value for name, value, _ in metrics.counters if name.startswith("Cache")} == {
        "CacheEvictionsTotal": 3
    }


def test_errors_are_counted_by_status_class_and_reason():
    metrics = RecordingMetrics()
    outcomes = [
        RequestOutcome.failed(RequestError("bad json", 400, "malformed_json")),
        RequestOutcome.failed(RequestError("bad json again", 400, "malformed_json")),
        serialize(RequestOutcome(payload={"score": math.nan})).outcome,
    ]
    ServingMetrics().record_batch(metrics, outcomes, inputs=0, stats=ForwardStats())
    errors = {(name, dims[0].value): value for name, value, dims in metrics.counters if name.endswith("ErrorsTotal")}
    assert errors == {("ClientErrorsTotal", "malformed_json"): 2, ("ServerErrorsTotal", "non_finite_output"): 1}


def test_a_metrics_failure_never_reaches_the_batch(caplog):
    ServingMetrics().record_batch(RecordingMetrics(fail=True), [RequestOutcome(payload={})], 1, ForwardStats())
    assert "could not record metrics" in caplog.text


def test_forward_stats_merge_and_padding_ratio():
    stats = ForwardStats()
    stats.add_pass([2, 4], padded=True)  # 6 real, 8 computed
    other = ForwardStats()
    other.add_pass([5, 1], padded=False)  # 6 real, 6 computed
    stats.merge(other)
    assert (stats.real_tokens, stats.padded_tokens, stats.forward_passes) == (12, 14, 2)
    assert stats.padding_ratio == pytest.approx(1 - 12 / 14)


@pytest.mark.parametrize("profile", [False, True])
def test_base_handler_timing_metrics_are_kept(sentiment_model, profile):
    handler, context = load_handler(sentiment_model, {"profile": profile})
    recording = RecordingMetrics()
    context.metrics = recording
    [(status, _)] = call(handler, context, [("application/json", {"inputs": "I loved it"})])
    assert status == 200
    assert "HandlerTime" in recording.times
    profiled = {"ts_handler_preprocess", "ts_handler_inference", "ts_handler_postprocess"}
    assert (profiled <= set(recording.times)) is profile


def test_describe_names_the_task_and_labels(sentiment_model):
    handler, _ = load_handler(sentiment_model)
    assert json.loads(handler.describe_handle()) == {
        "task": "sequence_classification", "labels": ["negative", "neutral", "positive"], "envelope": "none"
    }  # fmt: skip
