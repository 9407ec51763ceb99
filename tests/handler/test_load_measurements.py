"""What a worker times at load is timed by one worker of the machine at a time, remembered per
machine, model and versions, and skipped (safe choices, corrected from traffic) when another worker
holds the machine, or the load's timings run past ``loading.measure_budget_seconds``."""

from __future__ import annotations

import logging
import shutil

import pytest
from support import ENCODER_BODIES, JSON, call, load_handler

import handler.engine.execution as execution_module
from handler.api.settings import HandlerSettings
from handler.engine import linear_kernels, load_measurements
from handler.engine.load_measurements import LoadMeasurements, measurement_key
from handler.engine.precision import choose_precision

MEASURED = {"dtype": "float32", "float32_linear": "auto"}


@pytest.fixture
def remembering(tmp_path, monkeypatch):
    monkeypatch.setenv("HFLABELS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("HFLABELS_LOAD_CACHE", "1")
    # The machine counts as quiet unless a test says otherwise: what else runs beside the suite
    # must not decide whether a timing is remembered (the quiet rule has its own tests).
    monkeypatch.setattr(load_measurements, "cpu_busy_share", lambda: 0.0)
    return tmp_path / "cache"


def counting(monkeypatch):
    calls = {"kernels": 0, "passes": 0}
    real_kernels, real_passes = linear_kernels.measure_speedup, execution_module.choose_execution

    def kernels(linears, checkpoint=lambda: None):
        calls["kernels"] += 1
        return real_kernels(linears, checkpoint)

    def passes(*args):
        calls["passes"] += 1
        return real_passes(*args)

    monkeypatch.setattr(linear_kernels, "measure_speedup", kernels)
    monkeypatch.setattr(execution_module, "choose_execution", passes)
    return calls


def test_a_restart_reads_the_timings_back_and_serves_the_same_way(sentiment_model, remembering, monkeypatch, caplog):
    calls = counting(monkeypatch)
    first, context = load_handler(sentiment_model, MEASURED)
    timed = dict(calls)
    assert timed["kernels"] == 1 and timed["passes"] >= 1  # (a disturbed measurement is taken twice)
    assert list((remembering / "load-measurements").glob("*.json")), "the timings were written"
    with caplog.at_level(logging.INFO):
        again, again_context = load_handler(sentiment_model, MEASURED)
    assert calls == timed, "nothing was timed again"
    assert "read back from the cache" in caplog.text
    assert again.runner.policy.packed == first.runner.policy.packed
    assert again.runner.policy.batch_overhead_tokens == first.runner.policy.batch_overhead_tokens
    assert (again.runner.policy.float32_linears is None) == (first.runner.policy.float32_linears is None)
    assert again.runner.policy.measured == first.runner.policy.measured
    requests = [(JSON, body) for body in ENCODER_BODIES["sentiment_model"]]
    assert [status for status, _ in call(again, again_context, requests)] == [200] * len(requests)


def test_another_model_or_other_settings_are_timed_afresh(sentiment_model, tmp_path, remembering, monkeypatch):
    calls = counting(monkeypatch)
    load_handler(sentiment_model, MEASURED)
    before = calls["passes"]
    load_handler(sentiment_model, {**MEASURED, "batching": {"micro_batch_size": 8}})
    assert calls["passes"] > before
    before = calls["passes"]
    other = tmp_path / "other"
    shutil.copytree(sentiment_model, other)
    (other / "probe.txt").write_text("a different probe\n")
    load_handler(other, MEASURED)
    assert calls["passes"] > before
    device = __import__("torch").device("cpu")
    settings = HandlerSettings.from_mapping(MEASURED)
    assert measurement_key(sentiment_model, settings, device) == measurement_key(sentiment_model, settings, device)
    assert measurement_key(sentiment_model, settings, device) != measurement_key(other, settings, device)


def test_only_one_worker_times_at_a_time_and_a_late_one_serves_the_safe_choices(
    sentiment_model, remembering, monkeypatch, caplog
):
    calls = counting(monkeypatch)
    holder = LoadMeasurements("held", remembering, 1.0)
    with holder:
        assert holder.remember("x", lambda: 1, int, int) == 1 and holder.may_measure  # holds the machine's lock
        with caplog.at_level(logging.INFO):
            late, context = load_handler(sentiment_model, {**MEASURED, "loading": {"measure_budget_seconds": 0.3}})
    assert calls == {"kernels": 0, "passes": 0}, "nothing was timed while another worker held the lock"
    runner = late.runner
    assert runner.policy.float32_linears is None and not runner.policy.packed
    assert runner.policy.batch_overhead_tokens == execution_module.DEFAULT_OVERHEAD_TOKENS
    assert runner.tuner is not None, "the live tuner corrects the safe choice from traffic"
    assert "another worker was timing" in caplog.text and "not timed" in caplog.text
    requests = [(JSON, body) for body in ENCODER_BODIES["sentiment_model"]]
    assert [status for status, _ in call(late, context, requests)] == [200] * len(requests)
    # Once the lock is free, the next load times and remembers.
    load_handler(sentiment_model, MEASURED)
    assert calls["kernels"] == 1 and calls["passes"] >= 1


def test_a_waiting_worker_gets_the_lock_when_the_other_is_done(remembering):
    first = LoadMeasurements("a", remembering, 1.0)
    ticks = iter(range(100))
    second = LoadMeasurements("b", remembering, 5.0, clock=lambda: next(ticks) * 0.1,
                              sleep=lambda seconds: first.__exit__(None, None, None))  # fmt: skip
    with first:
        first.remember("x", lambda: 1, int, int)
        with second:
            # Its first poll finds the lock taken; the "sleep" releases it; the next poll succeeds.
            assert second.remember("y", lambda: 2, int, int) == 2
    assert second.may_measure and second.waited_seconds > 0
    assert second.describe().startswith("load measurements: timed here after waiting")
    assert LoadMeasurements("b", remembering, 0.0).__enter__().remembered == {"y": 2}
    # A second worker of the same model waits for the first, then reads what it timed.
    timing, third = LoadMeasurements("c", remembering, 1.0), LoadMeasurements("c", remembering, 5.0)
    with timing:
        timing.remember("y", lambda: 3, int, int)
        third.__enter__()  # its read finds nothing yet: the worker before is still timing
    assert third.remember("y", lambda: pytest.fail("timed again"), int, int) == 3
    assert "read back" in third.describe() and "the worker before timed this model" in third.describe()
    third.__exit__(None, None, None)


def test_a_precision_not_timed_serves_float32_with_the_candidates_answers_checked():
    import numpy as np

    outputs = {False: [{"logits": np.array([[2.0, 0.0]])}], True: [{"logits": np.array([[2.01, 0.0]])}]}
    choice = choose_precision("avx512_bf16", 1, lambda low, count: outputs[low], 0.02, remember=lambda timed: None)
    assert not choice.low_precision and choice.answers_agree and choice.speedup is None
    assert "not timed" in choice.describe()
    remembered = choose_precision("avx512_bf16", 1, lambda low, count: outputs[low], 0.02,
                                  remember=lambda timed: (1.8, 1, False))  # fmt: skip
    assert remembered.low_precision and remembered.speedup == 1.8


def test_timing_waits_for_a_quiet_machine_and_what_is_timed_busy_is_not_remembered(remembering):
    quiet_after = iter([0.9, 0.8, 0.1])
    measurements = LoadMeasurements("q", remembering, 5.0, clock=lambda: 0.0, sleep=lambda seconds: None)
    measurements.busy_share = lambda: next(quiet_after)
    with measurements:
        assert measurements.remember("x", lambda: 1, int, int) == 1
    assert measurements.quiet and LoadMeasurements("q", remembering, 0.0).__enter__().remembered == {"x": 1}
    ticks = iter(range(100))
    busy = LoadMeasurements("b", remembering, 1.0, clock=lambda: next(ticks) * 0.5, sleep=lambda seconds: None)
    busy.busy_share = lambda: 0.95
    with busy:
        assert busy.remember("x", lambda: 2, int, int) == 2  # timed anyway once the budget ran out
    assert not busy.quiet and LoadMeasurements("b", remembering, 0.0).__enter__().remembered == {}


def test_a_disturbed_timing_serves_this_load_but_is_not_remembered(remembering):
    with LoadMeasurements("d", remembering, 1.0) as measurements:
        assert measurements.remember("x", lambda: (1.1, 3, True), list, tuple, lambda t: not t[2]) == (1.1, 3, True)
        assert measurements.remember("y", lambda: (1.5, 1, False), list, tuple, lambda t: not t[2]) == (1.5, 1, False)
    assert LoadMeasurements("d", remembering, 0.0).__enter__().remembered == {"y": [1.5, 1, False]}


def test_the_cpu_busy_share_reads_proc_stat(tmp_path):
    from handler.engine.load_measurements import cpu_busy_share

    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\n")
    assert cpu_busy_share(0.0, stat) is None  # no time passed between the two reads
    assert cpu_busy_share(0.0, tmp_path / "missing") is None
    share = cpu_busy_share()
    assert share is None or 0.0 <= share <= 1.0


def test_a_relative_cache_folder_fails_the_load_naming_it(sentiment_model, monkeypatch):
    # TorchServe runs each model's worker in its own folder: a relative folder would give each
    # model its own lock, and five models started together timed one another.
    from handler.api.errors import ConfigurationError
    from handler.engine.load_measurements import cache_root

    monkeypatch.setenv("HFLABELS_CACHE_DIR", "build/cache")
    with pytest.raises(ConfigurationError, match="HFLABELS_CACHE_DIR must be an absolute path.*build/cache"):
        cache_root()
    monkeypatch.setenv("HFLABELS_CACHE_DIR", "~/somewhere")
    assert cache_root().is_absolute()


def test_a_timing_past_the_budget_is_dropped_and_nothing_more_is_timed(remembering):
    now = [0.0]
    measurements = LoadMeasurements("t", remembering, 2.0, clock=lambda: now[0], sleep=lambda seconds: None)
    measurements.busy_share = lambda: 0.0
    passes = []

    def timing() -> int:
        for _ in range(10):  # a pass a second, checked before each
            measurements.checkpoint()
            passes.append(1)
            now[0] += 1.0
        return 1

    with measurements:
        assert measurements.remember("long", timing, int, int) is None
        assert len(passes) == 2, "the timing stopped at the first check past the budget"
        assert measurements.remember("next", lambda: 5, int, int) is None, "nothing more is timed"
    assert "budget of 2 s" in measurements.describe() and "long" in measurements.describe()
    assert LoadMeasurements("t", remembering, 0.0).__enter__().remembered == {}
    # Outside a timing (the answers, serving) the check never raises.
    measurements.checkpoint()


def test_the_budget_counts_the_wait_for_the_lock(remembering):
    holder = LoadMeasurements("held", remembering, 1.0)
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    with holder:
        holder.remember("x", lambda: 1, int, int)
        late = LoadMeasurements("late", remembering, 1.0, clock=lambda: now[0], sleep=sleep)
        with late:
            assert late.remember("y", lambda: 2, int, int) is None
    assert 1.0 <= late.waited_seconds < 1.1 and "another worker was timing" in late.describe()


def test_a_load_past_its_budget_serves_the_safe_choices(sentiment_model, remembering, monkeypatch, caplog):
    calls = counting(monkeypatch)
    with caplog.at_level(logging.INFO):
        handler, context = load_handler(sentiment_model, {**MEASURED, "loading": {"measure_budget_seconds": 0}})
    runner = handler.runner
    assert runner.policy.float32_linears is None and not runner.policy.packed
    assert runner.policy.batch_overhead_tokens == execution_module.DEFAULT_OVERHEAD_TOKENS
    assert runner.tuner is not None, "the live tuner corrects the safe choice from traffic"
    assert "loading.measure_budget_seconds" in caplog.text
    assert calls["passes"] <= 1, "nothing timed past the first check"
    requests = [(JSON, body) for body in ENCODER_BODIES["sentiment_model"]]
    assert [status for status, _ in call(handler, context, requests)] == [200] * len(requests)


def test_the_answers_check_is_remembered_even_from_a_busy_machine(remembering):
    busy = LoadMeasurements("a", remembering, 0.0)
    busy.quiet = False
    with busy:
        assert busy.recall("answers/x", lambda: (True, 0.004), list, tuple) == (True, 0.004)
    again = LoadMeasurements("a", remembering, 0.0)
    with again:
        assert again.recall("answers/x", lambda: pytest.fail("computed again"), list, tuple) == (True, 0.004)


def test_dtype_auto_reads_its_answers_back_at_a_restart(sentiment_model, remembering, monkeypatch):
    from handler.engine import encoder_runner
    from handler.tasks.sequence_classification import SequenceClassificationRunner

    monkeypatch.setattr(encoder_runner, "fast_low_precision", lambda device: "avx512_bf16")
    compared = []
    real = SequenceClassificationRunner.compare_probe_outputs

    def compare(self, reference, candidate):
        compared.append(1)
        return real(self, reference, candidate)

    monkeypatch.setattr(SequenceClassificationRunner, "compare_probe_outputs", compare)
    first, _ = load_handler(sentiment_model, {"dtype": "auto"})
    again, _ = load_handler(sentiment_model, {"dtype": "auto"})
    assert len(compared) == 1, "the restart read the check back"
    assert again.runner.precision.labels_agree == first.runner.precision.labels_agree
    assert again.runner.precision.max_change == first.runner.precision.max_change
    assert again.runner.verified_autocast == first.runner.verified_autocast


def test_a_new_calibration_is_a_new_key(sentiment_model):
    # dtype auto's remembered check reads the scores as served: recalibrating must not reuse it.
    import torch

    plain = HandlerSettings.from_mapping({})
    recalibrated = HandlerSettings.from_mapping({"calibration": {"temperature": 1.5}})
    device = torch.device("cpu")
    assert measurement_key(sentiment_model, plain, device) != measurement_key(sentiment_model, recalibrated, device)
