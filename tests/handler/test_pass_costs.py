"""The execution strategy chosen at load: a pure function of the pass timings it is given."""

from __future__ import annotations

import itertools

import pytest
from support import load_handler

from handler.engine.pass_costs import (
    MAX_OVERHEAD_TOKENS,
    ExecutionChoice,
    PassCosts,
    choose_execution,
    fit_pass_costs,
    mixed_lengths,
)


def padded_timer(pass_seconds: float, token_seconds: float, calls: list | None = None):
    def time_pass(lengths):
        if calls is not None:
            calls.append(list(lengths))
        return pass_seconds + token_seconds * len(lengths) * max(lengths)

    return time_pass


def packed_timer(pass_seconds: float, token_seconds: float):
    return lambda lengths: pass_seconds + token_seconds * sum(lengths)


def counting_clock():
    ticks = itertools.count()
    return lambda: float(next(ticks))


def test_the_fit_recovers_pass_and_token_costs():
    samples = [(tokens, 0.004 + 2e-5 * tokens) for tokens in (8, 32, 128, 384, 512)]
    costs = fit_pass_costs(samples)
    assert costs.pass_seconds == pytest.approx(0.004, rel=1e-6)
    assert costs.token_seconds == pytest.approx(2e-5, rel=1e-6)
    assert costs.overhead_tokens == 200


def test_the_fit_never_goes_negative():
    # Noise that would fit a negative fixed cost: the fit keeps it at zero, through the origin.
    costs = fit_pass_costs([(10, 0.0005), (100, 0.0110), (200, 0.0212)])
    assert costs.pass_seconds == 0.0 and costs.token_seconds > 0
    assert PassCosts(1.0, 0.0).overhead_tokens == MAX_OVERHEAD_TOKENS


def test_a_costly_pass_makes_a_large_overhead_and_packing_wins_when_faster():
    choice = choose_execution(
        padded_timer(0.010, 1e-5), packed_timer(0.010, 1.2e-5), 32, 512, None, None, counting_clock()
    )
    assert choice.batch_overhead_tokens == 1000
    # 16 mixed inputs padded to 96 cost more than their real tokens at a slightly higher rate.
    assert choice.packed and choice.packed_seconds < choice.padded_seconds
    assert choice.measured_seconds > 0
    assert "padding-free" in choice.describe() and "measured in" in choice.describe()


def test_padded_passes_serve_where_packing_is_slower_here():
    # The per-token cost of packed passes is twice the padded one: the padding saved is not enough.
    choice = choose_execution(
        padded_timer(0.001, 1e-5), packed_timer(0.001, 2e-5), 32, 512, None, None, counting_clock()
    )
    assert not choice.packed
    assert choice.batch_overhead_tokens == 100


def test_a_near_tie_keeps_the_models_own_padded_forward():
    same = padded_timer(0.0, 1e-5)
    choice = choose_execution(same, lambda lengths: same(lengths) * 0.99, 32, 512, 0, None, counting_clock())
    assert not choice.packed


def test_a_busy_moment_at_load_does_not_choose_padded_passes_for_good():
    # Another process takes the CPU for two of the packed rounds (packed steps are many and small,
    # so they suffer most): the fastest rounds still compare the two strategies undisturbed.
    packed_calls = itertools.count()
    quiet = packed_timer(0.001, 1e-5)

    def busy_then_quiet(lengths):
        return quiet(lengths) * (3.0 if next(packed_calls) in (1, 2) else 1.0)

    choice = choose_execution(padded_timer(0.001, 1e-5), busy_then_quiet, 32, 512, 0, None, counting_clock())
    assert choice.packed
    assert choice.packed_seconds == pytest.approx(quiet(mixed_lengths(16, 512)))
    assert not choice.disturbed  # two slow rounds of five leave the median at the fastest


def test_a_cpu_busy_throughout_is_reported_as_disturbed():
    calls = itertools.count()
    choice = choose_execution(
        padded_timer(0.001, 1e-5),
        lambda lengths: packed_timer(0.001, 1e-5)(lengths) * (1 + next(calls)),  # slower every round
        32, 512, 0, None, counting_clock(),
    )  # fmt: skip
    assert choice.disturbed and choice.timing_spread > 1.5
    assert "the CPU was busy while measuring" in choice.describe()


def test_configured_values_are_not_measured():
    calls: list = []
    choice = choose_execution(
        padded_timer(0.01, 1e-5, calls), packed_timer(0.0, 1.0), 32, 512, 48, True, counting_clock()
    )
    assert choice == ExecutionChoice(packed=True, batch_overhead_tokens=48)
    assert calls == [] and "(configured); nothing measured" in choice.describe()


def test_a_configured_overhead_still_times_packed_against_padded():
    choice = choose_execution(padded_timer(0.01, 1e-5), packed_timer(0.0, 1e-5), 32, 512, 40, None, counting_clock())
    assert choice.packed and choice.costs is None and choice.batch_overhead_tokens == 40
    assert "batch_overhead_tokens 40 (configured); measured in" in choice.describe()
    assert "ms packed" in choice.describe()


def test_a_model_that_cannot_pack_is_padded_whatever_the_setting():
    choice = choose_execution(padded_timer(0.01, 1e-5), None, 32, 512, None, True, counting_clock())
    assert not choice.packed and choice.packed_seconds is None


def test_timed_shapes_respect_the_micro_batch_size_and_max_length():
    calls: list = []
    choose_execution(padded_timer(0.01, 1e-5, calls), packed_timer(0.0, 1e-5), 4, 20, None, None, counting_clock())
    assert calls and all(len(lengths) <= 4 and max(lengths) <= 20 for lengths in calls)


def test_mixed_lengths_spread_from_short_to_long():
    lengths = mixed_lengths(16, 512)
    assert lengths[0] == 8 and lengths[-1] == 96 and lengths == sorted(lengths)
    assert max(mixed_lengths(8, 24)) == 24


def test_the_handler_measures_at_load_and_reports_the_choice_as_gauges(sentiment_model, caplog):
    with caplog.at_level("INFO"):
        handler, context = load_handler(sentiment_model)
    policy = handler.runner.policy
    execution = policy.measured
    assert execution is not None and execution.costs is not None
    assert handler.runner.batch_overhead_tokens == execution.batch_overhead_tokens == policy.batch_overhead_tokens
    assert (handler.runner.packed is not None) == execution.packed == policy.packed
    assert any("forward passes:" in record.getMessage() and "measured" in record.getMessage()
               for record in caplog.records)  # fmt: skip
    assert handler.serving_metrics.gauges() == {
        "PackedForward": int(execution.packed),
        "BatchOverheadTokens": execution.batch_overhead_tokens,
        "LowPrecision": int(policy.autocast_dtype is not None),
    }


def test_a_disturbed_measurement_at_load_is_taken_again_once(sentiment_model, caplog, monkeypatch):
    import handler.engine.execution as execution_module

    results = iter([
        ExecutionChoice(packed=False, batch_overhead_tokens=900, packed_seconds=0.3, padded_seconds=0.2,
                        measured_seconds=2.0, timing_spread=3.0),
        ExecutionChoice(packed=True, batch_overhead_tokens=40, packed_seconds=0.1, padded_seconds=0.13,
                        measured_seconds=1.5, timing_spread=1.1),
    ])  # fmt: skip
    monkeypatch.setattr(execution_module, "choose_execution", lambda *args: next(results))
    monkeypatch.setattr(execution_module, "REMEASURE_PAUSE_SECONDS", 0.0)
    with caplog.at_level("INFO"):
        handler, _ = load_handler(sentiment_model)
    assert handler.runner.policy.measured.batch_overhead_tokens == 40 and handler.runner.packed is not None
    messages = [record.getMessage() for record in caplog.records if "forward passes" in record.getMessage()]
    assert "measuring again" in messages[0] and "busy" in messages[0]
    assert "padding-free passes, batch_overhead_tokens 40" in messages[-1]
    warnings = [record for record in caplog.records if record.levelname == "WARNING"]
    assert not any("forward passes" in record.getMessage() for record in warnings)


def test_settings_accept_auto_and_name_bad_values():
    from handler.api.errors import ConfigurationError
    from handler.api.settings import HandlerSettings

    settings = HandlerSettings.from_mapping({"packed_forward": "auto", "batch_overhead_tokens": "auto"})
    assert settings.batching.packed_forward is None and settings.batching.batch_overhead_tokens is None
    assert HandlerSettings.from_mapping({"batch_overhead_tokens": 7}).batching.batch_overhead_tokens == 7
    with pytest.raises(ConfigurationError, match=r'handler.packed_forward.*\(or "auto"\)'):
        HandlerSettings.from_mapping({"packed_forward": "sometimes"})
