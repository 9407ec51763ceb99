"""Prediction sets, abstention and prediction metrics through the handler (TorchServe's Context)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import SENTIMENT_LABELS, TOPIC_LABELS
from support import JSON, call, call_one, load_handler

from handler.api.errors import ConfigurationError
from handler.postprocess.conformal import aps_set, labels_scoring_at_least, lac_set
from handler.postprocess.monitoring import bucket_names, confidence_bucket

TEXTS = ["I loved it", "The package arrived on Tuesday in Paris.", "meh", "What a fantastic movie!"]
LAC = {"method": "lac", "examples": 500, "thresholds": {0.8: 0.5, 0.9: 0.75, 0.95: 0.85}}
ABSTAIN = {"threshold": 0.75, "max_error": 0.1, "confidence": 0.9, "examples": 500}


def scores_of(handler, context, texts) -> np.ndarray:
    _, answers = call_one(handler, context, {"inputs": texts, "parameters": {"return_all_scores": True}})
    return np.array([[item["score"] for item in answer] for answer in answers])


@pytest.fixture(scope="module")
def guarded(sentiment_model):
    return load_handler(sentiment_model, {"conformal": LAC, "abstention": ABSTAIN})


@pytest.mark.parametrize("level", [0.8, 0.9, 0.95])
def test_a_prediction_set_is_every_label_within_the_levels_threshold(guarded, level):
    handler, context = guarded
    scores = scores_of(handler, context, TEXTS)
    status, answers = call_one(handler, context, {"inputs": TEXTS, "parameters": {"coverage": level}})
    assert status == 200
    for answer, row in zip(answers, scores):
        assert set(answer) == {"label", "score", "prediction_set"}
        assert answer["prediction_set"] == [SENTIMENT_LABELS[i] for i in lac_set(row, LAC["thresholds"][level])]
        assert answer["label"] == SENTIMENT_LABELS[int(row.argmax())]


def test_sets_differ_between_levels_so_the_level_is_used(guarded):
    handler, context = guarded
    sizes = []
    for level in (0.8, 0.95):
        _, answers = call_one(handler, context, {"inputs": TEXTS, "parameters": {"coverage": level}})
        sizes.append(sum(len(a["prediction_set"]) for a in answers))
    assert sizes[0] < sizes[1]


def test_list_shaped_answers_carry_the_set_beside_the_labels(guarded):
    handler, context = guarded
    _, ranked = call_one(handler, context, {"inputs": TEXTS[0], "parameters": {"coverage": 0.9, "top_k": 2}})
    assert set(ranked) == {"labels", "prediction_set"} and len(ranked["labels"]) == 2
    assert ranked["labels"][0]["label"] == ranked["prediction_set"][0]
    body = {"inputs": TEXTS[0], "parameters": {"coverage": 0.9, "return_all_scores": True}}
    _, wrapped = call_one(handler, context, body)
    assert isinstance(wrapped, list) and set(wrapped[0]) == {"labels", "prediction_set"}
    assert [item["label"] for item in wrapped[0]["labels"]] == list(SENTIMENT_LABELS)


def test_abstention_marks_answers_below_the_threshold_and_keeps_label_and_score(guarded):
    handler, context = guarded
    scores = scores_of(handler, context, TEXTS)
    _, answers = call_one(handler, context, {"inputs": TEXTS, "parameters": {"abstain": True}})
    for answer, row in zip(answers, scores):
        assert answer["abstained"] is bool(row.max() < ABSTAIN["threshold"])
        assert answer["label"] == SENTIMENT_LABELS[int(row.argmax())]
        assert answer["score"] == pytest.approx(row.max(), abs=1e-7)
    assert {a["abstained"] for a in answers} == {True, False}


def test_abstention_can_be_the_models_default(sentiment_model):
    handler, context = load_handler(sentiment_model, {"abstention": ABSTAIN, "parameters": {"abstain": True}})
    _, answer = call_one(handler, context, {"inputs": TEXTS[0]})
    assert "abstained" in answer
    _, plain = call_one(handler, context, {"inputs": TEXTS[0], "parameters": {"abstain": False}})
    assert "abstained" not in plain


def test_bad_levels_and_missing_fits_are_400s_naming_the_fix_while_the_batch_is_served(guarded, sentiment_model):
    handler, context = guarded
    bodies = [
        {"inputs": TEXTS[0], "parameters": {"coverage": 0.85}},
        {"inputs": TEXTS[0], "parameters": {"coverage": 0.9}},
        {"inputs": TEXTS[0], "parameters": {"coverage": 0.9, "raw_scores": True}},
        {"inputs": TEXTS[0], "parameters": {"coverage": 1.5}},
    ]
    answers = call(handler, context, [(JSON, body) for body in bodies])
    assert answers[0] == (400, {"error": "coverage 0.85 was not fitted for this model; fitted levels: 0.8, 0.9, 0.95"})
    assert answers[1][0] == 200 and "prediction_set" in answers[1][1]
    assert answers[2][0] == 400 and "calibrated scores" in answers[2][1]["error"]
    assert answers[3][0] == 400 and "coverage" in answers[3][1]["error"]
    bare, bare_context = load_handler(sentiment_model)
    status, body = call_one(bare, bare_context, {"inputs": TEXTS[0], "parameters": {"coverage": 0.9}})
    assert status == 400 and "hflabels calibrate MODEL_DIR --data FILE" in body["error"]
    status, body = call_one(bare, bare_context, {"inputs": TEXTS[0], "parameters": {"abstain": True}})
    assert status == 400 and "--abstain-error" in body["error"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"conformal": {**LAC, "method": "class_conditional", "thresholds": {0.9: {"negative": 0.5}}}},
         r"must give every label a threshold: unknown \[\], missing \['neutral', 'positive'\]"),
        ({"conformal": {**LAC, "method": "fnr_control"}}, "does not apply to this single-label model"),
        ({"conformal": {**LAC, "level": 0.9}}, "handler.conformal has unknown key"),
        ({"conformal": {"method": "lac", "thresholds": {0.9: 0.5}}}, "handler.conformal.examples is missing"),
        ({"parameters": {"abstain": True}}, "no handler.abstention threshold"),
        ({"monitoring": {"drift_window": 5}}, "handler.monitoring.drift_window must be an integer >= 10"),
        ({"monitoring": {"drift_psi_alarm": 0.25}}, "handler.monitoring: unknown key.s. drift_psi_alarm"),
        ({"monitoring": {"drift_permutations": 100}}, "drift_permutations 100 cannot reject at drift_level 0.01"),
        ({"metrics_label_limit": 0}, "handler.metrics_label_limit must be an integer >= 1"),
    ],
)  # fmt: skip
def test_bad_guarantee_settings_fail_at_load_naming_them(sentiment_model, settings, message):
    with pytest.raises(ConfigurationError, match=message):
        load_handler(sentiment_model, settings)


def test_class_conditional_and_aps_sets_are_served(sentiment_model):
    per_label = {0.9: {"negative": 0.6, "neutral": 0.5, "positive": 0.7}}
    handler, context = load_handler(sentiment_model, {"conformal": {**LAC, "method": "class_conditional",
                                                                    "thresholds": per_label}})  # fmt: skip
    scores = scores_of(handler, context, TEXTS)
    _, answers = call_one(handler, context, {"inputs": TEXTS, "parameters": {"coverage": 0.9}})
    vector = np.array([per_label[0.9][label] for label in SENTIMENT_LABELS])
    assert [a["prediction_set"] for a in answers] == [[SENTIMENT_LABELS[i] for i in lac_set(r, vector)] for r in scores]
    handler, context = load_handler(sentiment_model, {"conformal": {**LAC, "method": "aps"}})
    _, answers = call_one(handler, context, {"inputs": TEXTS, "parameters": {"coverage": 0.8}})
    assert [a["prediction_set"] for a in answers] == [[SENTIMENT_LABELS[i] for i in aps_set(r, 0.5)] for r in scores]


def test_multi_label_sets_control_the_false_negative_rate_threshold(topics_model):
    fnr = {"method": "fnr_control", "examples": 300, "thresholds": {0.9: 0.3}}
    handler, context = load_handler(topics_model, {"conformal": fnr})
    _, every = call_one(handler, context, {"inputs": TEXTS, "parameters": {"top_k": None}})
    status, answers = call_one(handler, context, {"inputs": TEXTS, "parameters": {"coverage": 0.9}})
    assert status == 200
    for answer, ranked in zip(answers, every):
        scores = {item["label"]: item["score"] for item in ranked}
        vector = np.array([scores[label] for label in TOPIC_LABELS])
        assert set(answer) == {"labels", "prediction_set"}
        assert answer["prediction_set"] == [TOPIC_LABELS[i] for i in labels_scoring_at_least(vector, 0.3)]
    status, body = call_one(handler, context, {"inputs": TEXTS[0], "parameters": {"abstain": True}})
    assert status == 400 and "single-label" in body["error"]
    with pytest.raises(ConfigurationError, match="does not apply to this multi-label model"):
        load_handler(topics_model, {"conformal": LAC})


# ---- metrics ------------------------------------------------------------------------------------------


class RecordingMetrics:
    """TorchServe's metrics cache, with every custom metric the handler adds also recorded."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.counters: dict[tuple[str, tuple], float] = {}
        self.gauges: dict[str, float] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def add_counter(self, name: str, value: float, dimensions: list) -> None:
        key = (name, tuple((d.name, d.value) for d in dimensions))
        self.counters[key] = self.counters.get(key, 0) + value

    def add_metric(self, name: str, value: float, unit: str, dimensions: list, metric_type: Any = None) -> None:
        self.gauges[name] = value


def reference_for(shares: list[float], confidence: list[float]) -> dict[str, Any]:
    return {"labels": dict(zip(SENTIMENT_LABELS, shares)), "confidence": confidence, "examples": 100}


def test_prediction_counters_by_label_bucket_set_size_and_abstention(sentiment_model):
    handler, context = load_handler(sentiment_model, {"conformal": LAC, "abstention": ABSTAIN,
                                                      "metrics_label_limit": 2})  # fmt: skip
    recorder = RecordingMetrics(context.metrics)
    context.metrics = recorder
    scores = scores_of(handler, context, TEXTS)  # counted too: the first batch
    call_one(handler, context, {"inputs": TEXTS, "parameters": {"coverage": 0.9, "abstain": True}})
    counters = recorder.counters
    names = [SENTIMENT_LABELS[i] if i < 2 else "__other__" for i in scores.argmax(axis=1)]
    for label in set(names):
        assert counters["PredictionsTotal", (("Label", label),)] == 2 * names.count(label)
    assert not any(key == ("PredictionsTotal", (("Label", "positive"),)) for key in counters)
    buckets = [bucket_names()[confidence_bucket(s)] for s in scores.max(axis=1)]
    for bucket in set(buckets):
        assert counters["ConfidenceTotal", (("Bucket", bucket),)] == 2 * buckets.count(bucket)
    assert counters["AbstainCheckedTotal", ()] == len(TEXTS)
    assert counters["AbstentionsTotal", ()] == int((scores.max(axis=1) < ABSTAIN["threshold"]).sum())
    sizes = [str(len(lac_set(row, 0.75))) for row in scores]
    for size in set(sizes):
        assert counters["PredictionSetSizeTotal", (("Size", size),)] == sizes.count(size)


def drift_of(handler):
    monitor = handler.serving_metrics.monitor.drift_monitor
    assert monitor.wait_idle()
    return monitor


def test_drift_gauges_follow_a_full_window_and_the_alarm_is_logged(sentiment_model, caplog):
    settings = {"monitoring": {"drift_window": 12, "reference": reference_for([1.0, 0.0, 0.0], [1.0] + [0.0] * 7)}}
    handler, context = load_handler(sentiment_model, settings)
    recorder = RecordingMetrics(context.metrics)
    context.metrics = recorder
    call_one(handler, context, {"inputs": TEXTS * 2})
    drift_of(handler)
    call_one(handler, context, {"inputs": TEXTS[:1]})
    assert "DriftLabelPSI" not in recorder.gauges  # 9 of 12 answers: no window yet
    scores = scores_of(handler, context, TEXTS[1:] * 3)  # counted too: 9 + 9 = 18, one window
    with caplog.at_level(logging.WARNING):
        drift_of(handler)
        # The tested window's gauges go out with the next batch (tests run off the request path).
        call_one(handler, context, {"inputs": TEXTS[:1]})
    from handler.postprocess.drift_tests import chi_square_homogeneity
    from handler.postprocess.monitoring import population_stability_index, shares

    window = np.bincount(
        np.concatenate([scores_of(handler, context, TEXTS * 2 + TEXTS[:1]).argmax(axis=1), scores.argmax(axis=1)])[:12],
        minlength=3,
    )
    psi = population_stability_index(shares(window), [1.0, 0.0, 0.0])
    assert recorder.gauges["DriftLabelPSI"] == pytest.approx(psi)
    assert recorder.gauges["DriftLabelP"] == pytest.approx(chi_square_homogeneity(window, [100, 0, 0]).p_value)
    assert "DriftInputP" not in recorder.gauges  # no input reference
    assert recorder.gauges["DriftAlarm"] == int(recorder.gauges["DriftLabelP"] <= 0.005 or
                                                recorder.gauges["DriftConfidenceP"] <= 0.005)  # fmt: skip
    assert recorder.gauges["DriftAlarm"] == 1
    assert "drift alarm raised" in caplog.text
    assert not any(text in caplog.text for text in TEXTS)


def with_input_reference(model_dir, tmp_path, texts, name="drift-reference.npy", rows=None):
    """A copy of ``model_dir`` whose reference has the folder's own representations of ``texts``."""
    import shutil

    from hflabels.evaluation import folder_runner
    from hflabels.training.data import Example
    from hflabels.training.drift_reference import representations

    folder = Path(shutil.copytree(model_dir, tmp_path / "with-reference"))
    found = representations(folder_runner(folder), [Example(text=t) for t in texts])
    np.save(folder / name, found if rows is None else rows)
    return folder, found


def test_the_input_test_runs_on_the_served_representations(sentiment_model, tmp_path):
    from handler.postprocess.drift_tests import median_bandwidth, mmd_permutation_test

    reference_texts = [f"{text} number {i}" for i in range(15) for text in TEXTS]
    folder, reference = with_input_reference(sentiment_model, tmp_path, reference_texts)
    bandwidth = median_bandwidth(reference)
    inputs = {"file": "drift-reference.npy", "examples": len(reference), "bandwidth": bandwidth}
    section = {**reference_for([0.4, 0.3, 0.3], [0.125] * 8), "inputs": inputs}
    settings = {"monitoring": {"drift_window": 20, "drift_permutations": 300, "reference": section}}
    handler, context = load_handler(folder, settings)
    recorder = RecordingMetrics(context.metrics)
    context.metrics = recorder
    shifted = [f"Completely different words: {i} {i * 7} zebra quantum" for i in range(20)]
    call_one(handler, context, {"inputs": shifted})
    drift_of(handler)
    call_one(handler, context, {"inputs": TEXTS[:1]})
    _, served = with_input_reference(sentiment_model, tmp_path / "again", shifted)
    # The window's representations are the folder runner's, so the test is the same computation
    # (seed 1: the first window the monitor tests).
    expected = mmd_permutation_test(reference, served, bandwidth, 300, seed=1)
    assert recorder.gauges["DriftInputMMD"] == pytest.approx(expected.statistic, rel=1e-4)
    assert recorder.gauges["DriftInputP"] == pytest.approx(expected.p_value)


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (np.zeros((30, 7), dtype=np.float32), r"shape \(30, 7\), expected \(30, "),
        (np.full((30, 32), np.nan, dtype=np.float32), "non-finite"),
    ],
)
def test_a_bad_input_reference_fails_the_load_naming_the_file(sentiment_model, tmp_path, rows, message):
    folder, _ = with_input_reference(sentiment_model, tmp_path, TEXTS, rows=rows)
    inputs = {"file": "drift-reference.npy", "examples": 30, "bandwidth": 1.0}
    settings = {"monitoring": {"reference": {**reference_for([0.4, 0.3, 0.3], [0.125] * 8), "inputs": inputs}}}
    with pytest.raises(ConfigurationError, match="drift-reference.npy .*" + message):
        load_handler(folder, settings)
    missing = {**inputs, "file": "absent.npy"}
    settings["monitoring"]["reference"]["inputs"] = missing
    with pytest.raises(ConfigurationError, match="absent.npy: cannot read it"):
        load_handler(folder, settings)


def test_raw_logits_and_zero_shot_labels_are_never_counted(sentiment_model, nli_model):
    handler, context = load_handler(sentiment_model)
    recorder = RecordingMetrics(context.metrics)
    context.metrics = recorder
    call_one(handler, context, {"inputs": TEXTS, "parameters": {"raw_scores": True}})
    assert not any(value for (name, _), value in recorder.counters.items() if name == "PredictionsTotal")
    zero_shot, zs_context = load_handler(nli_model, {"task": "zero_shot_classification"})
    recorder = RecordingMetrics(zs_context.metrics)
    zs_context.metrics = recorder
    call_one(zero_shot, zs_context, {"inputs": TEXTS[0], "parameters": {"candidate_labels": ["secret words"]}})
    assert not any("secret words" in str(key) for key in recorder.counters)


def test_the_drift_tests_run_on_one_blas_thread_at_the_lowest_priority(sentiment_model, monkeypatch):
    # Served at 32 clients, the tests on numpy's two OpenBLAS threads cost 10.5% of the throughput
    # (the extra thread spins after each product): they must not take the cores from the passes.
    import os
    import sys
    import threading

    from threadpoolctl import ThreadpoolController

    from handler.serving import drift_monitor

    seen = {}
    real_test = drift_monitor.DriftMonitor._test

    def observed(self, window, number=None):
        seen["blas_threads"] = {pool["num_threads"] for pool in ThreadpoolController().select(user_api="blas").info()}
        if sys.platform.startswith("linux"):
            seen["niceness"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return real_test(self, window, number)

    monkeypatch.setattr(drift_monitor.DriftMonitor, "_test", observed)
    settings = {"monitoring": {"drift_window": 12, "reference": reference_for([0.5, 0.5, 0.0], [0.125] * 8)}}
    handler, context = load_handler(sentiment_model, settings)
    call_one(handler, context, {"inputs": TEXTS * 3})
    assert drift_of(handler).tested_windows >= 1
    assert seen["blas_threads"] <= {1}
    if sys.platform.startswith("linux"):
        assert seen["niceness"] == drift_monitor.BACKGROUND_NICENESS
    assert os.getpriority(os.PRIO_PROCESS, 0) != drift_monitor.BACKGROUND_NICENESS, "the process keeps its own"
