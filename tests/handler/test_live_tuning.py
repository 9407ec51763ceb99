"""Live correction of the load-time forward-pass choice, with a fake clock (no real timing)."""

from __future__ import annotations

import logging

import pytest
from support import load_handler

from handler.engine.live_tuning import EXPLORE_EVERY, MIN_SAMPLES, PRECISION, STRATEGY, LiveExecutionTuner, Way
from handler.engine.pass_costs import (
    FALLBACK_OVERHEAD_TOKENS,
    FIT_ATTEMPTS,
    choose_execution,
    fit_pass_costs,
)


def serve(tuner: LiveExecutionTuner, batches: int, cost: dict, tokens: int = 400) -> list:
    """Run ``batches`` batches of one pass each, timed by ``cost`` (seconds per token per way, or
    per packed/padded); returns the choices switched to."""
    switched = []
    for _ in range(batches):
        way = tuner.next_batch(tokens)
        seconds = cost[way] if way in cost else cost[way.packed]
        if tuner.record(way, tokens, seconds * tokens) is not None:
            switched.append(tuner.way.packed if all(isinstance(key, bool) for key in cost) else tuner.way)
    return switched


def test_a_choice_made_under_load_is_reversed_once_the_load_goes():
    # Chosen at load while busy: padded. Quiet now: packed passes cost 30% less per token.
    tuner = LiveExecutionTuner(Way(packed=False))
    switched = serve(tuner, EXPLORE_EVERY * MIN_SAMPLES + EXPLORE_EVERY, {True: 7e-5, False: 1e-4})
    assert switched == [True] and tuner.way.packed


def test_a_near_tie_never_switches_and_a_switch_does_not_flap():
    tuner = LiveExecutionTuner(Way(packed=True))
    assert serve(tuner, 2000, {True: 1e-4, False: 0.95e-4}) == []
    # Once switched, the old samples are gone: switching back needs the evidence again.
    tuner = LiveExecutionTuner(Way(packed=False))
    assert serve(tuner, 3000, {True: 7e-5, False: 1e-4}) == [True]


def test_the_chosen_way_runs_and_one_batch_in_explore_every_tries_the_other():
    tuner = LiveExecutionTuner(Way(packed=True))
    ways = [tuner.next_batch(500).packed for _ in range(EXPLORE_EVERY * 3)]
    assert ways.count(False) == 3 and ways[EXPLORE_EVERY - 1] is False
    # Small batches (a lone short input) always run the choice, and are not counted.
    assert all(tuner.next_batch(20).packed for _ in range(EXPLORE_EVERY * 3))


def test_small_passes_say_nothing():
    tuner = LiveExecutionTuner(Way(packed=False))
    assert serve(tuner, 5000, {True: 1e-5, False: 1e-3}, tokens=20) == []


def test_an_implausible_fit_is_measured_again_and_never_gives_a_zero_overhead():
    # The busy load the issue saw: a pass "with no fixed cost".
    assert not fit_pass_costs([(10, 0.0005), (100, 0.0110), (200, 0.0212)]).plausible
    calls = []

    def no_fixed_cost(lengths):
        calls.append(len(lengths))
        return 1.7e-4 * max(lengths) * len(lengths)

    choice = choose_execution(no_fixed_cost, None, 32, 512, None, False, iter(range(100)).__next__)
    assert choice.batch_overhead_tokens == FALLBACK_OVERHEAD_TOKENS
    assert choice.disturbed and "no plausible fit in 3 tries" in choice.describe()
    # The warm-up, then every shape FIT_ROUNDS times per attempt.
    assert len(calls) > FIT_ATTEMPTS * 6


def test_a_shape_far_from_the_line_makes_the_fit_implausible():
    samples = [(tokens, 0.004 + 2e-5 * tokens) for tokens in (8, 32, 128, 384, 512)]
    assert fit_pass_costs(samples).plausible
    samples[2] = (128, 3 * (0.004 + 2e-5 * 128))
    assert not fit_pass_costs(samples).plausible


def test_a_served_model_switches_from_live_passes_with_a_log_line_and_the_gauge(sentiment_model, caplog):
    import handler.engine.live_tuning as live

    handler, context = load_handler(sentiment_model, {"packed_forward": "auto"})
    runner = handler.runner
    assert runner.tuner is not None and runner.packer is not None
    before = runner.policy.packed
    # Fake the live evidence: the way not chosen costs half as much per token.
    tuner = runner.tuner
    with caplog.at_level(logging.INFO):
        for _ in range(live.MIN_SAMPLES):
            tuner.record(runner.way, 1000, 1e-1)
        switch = None
        for _ in range(live.MIN_SAMPLES):
            switch = switch or tuner.record(runner.way.flipped(STRATEGY), 1000, 5e-2)
        assert switch is not None
        runner._switch(switch)
    assert runner.policy.packed is (not before) and (runner.packed is not None) is (not before)
    assert "switching to" in caplog.text
    gauges = handler.serving_metrics.gauges()
    assert gauges["PackedForward"] == int(not before)


def test_a_pinned_choice_is_never_tuned(sentiment_model):
    handler, _ = load_handler(sentiment_model, {"packed_forward": True})
    assert handler.runner.tuner is None


@pytest.mark.parametrize("packed", [True, False])
def test_answers_are_the_same_whichever_way_a_batch_runs(sentiment_model, packed):
    from support import call_one

    handler, context = load_handler(sentiment_model, {"packed_forward": "auto"})
    texts = ["short", "a somewhat longer input sentence here", "mid length text", "x " * 40, "y " * 30]
    _, expected = call_one(handler, context, {"inputs": texts, "parameters": {"top_k": None}})
    handler.runner.tuner.way = Way(packed)
    handler.runner.tuner._batches = 0
    for _ in range(EXPLORE_EVERY + 1):
        _, answer = call_one(handler, context, {"inputs": texts, "parameters": {"top_k": None}})
        for got, want in zip(answer, expected):
            assert [a["label"] for a in got] == [w["label"] for w in want]
            assert [a["score"] for a in got] == pytest.approx([w["score"] for w in want], abs=1e-5)


BF16, FP32 = Way(packed=True, low_precision=True), Way(packed=True, low_precision=False)


def test_a_precision_the_speed_test_got_wrong_is_reversed_by_live_passes():
    # The failure for precision: float32 chosen at load while the CPU was busy; bf16 is 2x
    # faster once it is quiet. Both dimensions take turns being explored.
    tuner = LiveExecutionTuner(FP32, (STRATEGY, PRECISION))
    cost = {FP32: 1e-4, BF16: 5e-5, Way(False, False): 1.2e-4, Way(False, True): 6e-5}
    assert serve(tuner, 2 * EXPLORE_EVERY * MIN_SAMPLES + 2 * EXPLORE_EVERY, cost) == [BF16]
    # And back, once bf16 turns out slower (a model too small to gain from it).
    tuner = LiveExecutionTuner(BF16, (PRECISION,))
    assert serve(tuner, EXPLORE_EVERY * (MIN_SAMPLES + 1), {BF16: 1e-4, FP32: 0.8e-4}) == [FP32]


def test_the_dimensions_take_turns_and_only_tunable_ones_move():
    tuner = LiveExecutionTuner(FP32, (STRATEGY, PRECISION))
    explored = [tuner.next_batch(500) for _ in range(EXPLORE_EVERY * 4)]
    others = [way for way in explored if way != FP32]
    assert others == [Way(False, False), BF16, Way(False, False), BF16]
    # Precision not verified at load (no PRECISION dimension): bf16 never runs, however fast.
    tuner = LiveExecutionTuner(FP32, (STRATEGY,))
    assert all(not tuner.next_batch(500).low_precision for _ in range(EXPLORE_EVERY * 10))
    with pytest.raises(ValueError, match="tunable dimensions"):
        LiveExecutionTuner(FP32, ())
