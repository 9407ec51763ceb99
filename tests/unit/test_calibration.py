"""Calibration: the maths fitted at training time, and the served scores that apply it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from support import call_one, load_handler
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from hflabels.training.calibration import (
    brier_score,
    expected_calibration_error,
    fit_label_temperatures,
    fit_temperature,
    negative_log_likelihood,
    prior_correction,
    sigmoid,
    softmax,
)


def test_ece_by_hand():
    # Bins of width 1/15: 0.9 in (0.867, 0.933], 0.95 in (0.933, 1], 0.55 and 0.6 share (0.533, 0.6].
    probabilities = np.array([[0.9, 0.1], [0.95, 0.05], [0.4, 0.6], [0.55, 0.45]])
    truth = np.array([0, 1, 1, 1])
    # 0.9 right: |1 - 0.9| * 1/4; 0.95 wrong: |0 - 0.95| * 1/4;
    # 0.6 right and 0.55 wrong: |0.5 - 0.575| * 2/4
    assert expected_calibration_error(probabilities, truth) == pytest.approx(0.025 + 0.2375 + 0.0375)
    assert negative_log_likelihood(probabilities, truth) == pytest.approx(-np.log([0.9, 0.05, 0.6, 0.45]).mean())
    assert brier_score(probabilities, truth) == pytest.approx(np.mean([0.02, 2 * 0.95**2, 0.32, 2 * 0.55**2]))


def test_the_fitted_temperature_recovers_a_known_one():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2, size=(20_000, 4))
    truth = np.array([rng.choice(4, p=p) for p in softmax(true_logits)])
    # A model three times over-confident: its logits are the true ones x 3.
    assert fit_temperature(true_logits * 3.0, truth) == pytest.approx(3.0, rel=0.05)
    assert fit_temperature(true_logits, truth) == pytest.approx(1.0, rel=0.05)


def test_per_label_temperatures_for_multi_label():
    rng = np.random.default_rng(1)
    true_logits = rng.normal(0, 2, size=(20_000, 2))
    truth = rng.random((20_000, 2)) < sigmoid(true_logits)
    fitted = fit_label_temperatures(true_logits * np.array([2.0, 0.5]), truth)
    assert fitted == pytest.approx([2.0, 0.5], rel=0.07)


def test_prior_correction_undoes_a_known_reweighting():
    """Logistic regression trained with class weights w learns logits shifted by log w; the
    correction brings its probabilities back to the data's."""
    torch.manual_seed(0)
    rng = np.random.default_rng(2)
    n = 6000
    truth = (rng.random(n) < 0.2).astype(np.int64)  # 20% positives
    x = rng.normal(truth * 1.0, 1.0)[:, None].astype(np.float32)
    weights = np.array([1.0, 4.0])  # the rare class weighted up, as class weights do

    def fit(class_weights):
        layer = torch.nn.Linear(1, 2)
        optimizer = torch.optim.LBFGS(layer.parameters(), max_iter=200)
        inputs, targets = torch.from_numpy(x), torch.from_numpy(truth)
        loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(class_weights, dtype=torch.float32))

        def closure():
            optimizer.zero_grad()
            loss = loss_fn(layer(inputs), targets)
            loss.backward()
            return loss

        optimizer.step(closure)
        with torch.no_grad():
            return layer(inputs).numpy().astype(np.float64)

    unweighted, weighted = fit([1.0, 1.0]), fit(weights)
    assert softmax(weighted)[:, 1].mean() > 0.3  # re-weighting inflated the rare class
    corrected = softmax(weighted - prior_correction(weights))
    assert np.abs(corrected - softmax(unweighted)).max() < 0.01
    assert corrected[:, 1].mean() == pytest.approx(truth.mean(), abs=0.01)


def test_served_scores_are_the_calibrated_softmax_of_the_model_folder(sentiment_model):
    calibration = {"temperature": 1.7, "logit_adjustment": {"negative": 0.4, "neutral": -0.1, "positive": -0.3}}
    handler, context = load_handler(sentiment_model, {"calibration": calibration, "parameters": {"top_k": None}})
    text = "The staff were friendly and the room was spotless."
    _, answer = call_one(handler, context, {"inputs": text})
    tokenizer = AutoTokenizer.from_pretrained(sentiment_model)
    model = AutoModelForSequenceClassification.from_pretrained(sentiment_model).eval()
    with torch.no_grad():
        logits = model(**tokenizer(text, return_tensors="pt")).logits[0].numpy().astype(np.float64)
    labels = handler.runner.labels
    adjustment = np.array([calibration["logit_adjustment"][label] for label in labels])
    expected = softmax((logits - adjustment) / 1.7)
    assert {item["label"]: item["score"] for item in answer} == pytest.approx(
        {label: float(score) for label, score in zip(labels, expected)}, abs=1e-5
    )
    _, raw = call_one(handler, context, {"inputs": text, "parameters": {"function_to_apply": "none"}})
    assert {item["label"]: item["score"] for item in raw} == pytest.approx(
        {label: float(score) for label, score in zip(labels, logits)}, abs=1e-5
    )


def test_temperature_alone_never_changes_a_single_label_decision(sentiment_model):
    plain, plain_context = load_handler(sentiment_model)
    calibrated, context = load_handler(sentiment_model, {"calibration": {"temperature": 3.0}})
    for text in ["I loved it", "The soup was cold.", "The shop opens at nine.", "What a fantastic movie"]:
        assert (
            call_one(plain, plain_context, {"inputs": text})[1]["label"]
            == call_one(calibrated, context, {"inputs": text})[1]["label"]
        )


@pytest.mark.parametrize(
    ("calibration", "message"),
    [
        ({"temperature": 0}, "handler.calibration.temperature must be a number > 0 and <= 10000"),
        ({"temperature": 1, "scale": 2}, "handler.calibration has unknown key(s) scale"),
        ({"logit_adjustment": {"angry": 1.0}}, "handler.calibration names unknown label(s) ['angry']"),
    ],
)
def test_bad_calibrations_fail_the_load_naming_them(sentiment_model, calibration, message):
    from support import make_context

    from handler.api.errors import ConfigurationError
    from handler.torchserve_handler import TransformersLabelHandler

    with pytest.raises(ConfigurationError) as raised:
        TransformersLabelHandler().initialize(make_context(sentiment_model, {"calibration": calibration}))
    assert message in str(raised.value)


# ---- the top-label curve --------------------------------------------------------------------------

TOP_LABEL = {"confidence": [0.4, 0.6, 0.8, 0.95], "accuracy": [0.35, 0.5, 0.9, 0.97]}


def isotonic_cases(seed: int, count: int = 100):
    """Random (confidence, right) samples of 2-300 points; few decimals, so many tied confidences,
    as served float32 scores have."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        n = int(rng.integers(2, 300))
        x = np.round(rng.random(n), int(rng.integers(1, 4)))
        yield x, (rng.random(n) < x).astype(float)


def test_isotonic_fit_equals_scikit_learns_isotonic_regression():
    from sklearn.isotonic import IsotonicRegression

    from hflabels.training.calibration import isotonic_fit

    for x, y in isotonic_cases(3):
        knots, fitted = isotonic_fit(x, y)
        assert np.all(np.diff(knots) > 0) and np.all(np.diff(fitted) >= 0)
        query = np.linspace(-0.1, 1.1, 301)
        oracle = IsotonicRegression(out_of_bounds="clip").fit(x, y).predict(query)
        assert np.interp(query, knots, fitted) == pytest.approx(oracle, abs=1e-12)


def test_the_centred_fit_puts_each_of_scikit_learns_blocks_at_the_mean_of_its_points():
    # Oracle: scikit-learn's fitted values; the points sharing one value are one block, whose knot
    # is their mean confidence at that value.
    from sklearn.isotonic import IsotonicRegression

    from hflabels.training.calibration import centred_knots, isotonic_blocks

    for x, y in isotonic_cases(4):
        fitted = IsotonicRegression().fit_transform(x, y)
        levels = np.unique(fitted)
        blocks = isotonic_blocks(x, y)
        assert blocks.value == pytest.approx(levels, abs=1e-12)
        assert blocks.count.tolist() == [int((fitted == level).sum()) for level in levels]
        assert blocks.centre == pytest.approx([x[fitted == level].mean() for level in levels], abs=1e-12)
        knots, values = centred_knots(blocks)
        assert np.all(np.diff(knots) > 0) and np.all(np.diff(values) >= 0)
        if len(levels) > 1:
            assert (knots, values) == (pytest.approx(blocks.centre), pytest.approx(blocks.value))


def test_the_centred_curve_is_not_steep_where_two_blocks_meet_closely():
    # Two held-out confidences 1e-4 apart, one wrong and one right, end two blocks of 50: the plain
    # fit rises 0.4 across that gap, the centred one across the blocks' centres.
    from hflabels.training.calibration import fit_top_label_map

    low, high = np.linspace(0.50, 0.7999, 50), np.linspace(0.8000, 0.95, 50)
    confidence = np.concatenate([low, high])
    right = np.concatenate([np.arange(50) % 10 < 3, np.arange(50) % 10 < 7])
    probabilities = np.column_stack([confidence, 1 - confidence])
    truth = np.where(right, 0, 1)
    slopes = {}
    for centred in (False, True):
        curve = fit_top_label_map(probabilities, truth, centred=centred)
        slopes[centred] = float((np.diff(curve.accuracy) / np.diff(curve.confidence)).max())
    assert slopes[False] > 1000 and slopes[True] < 5


def test_the_top_label_map_moves_the_top_score_and_never_the_answer():
    from handler.postprocess.top_label import TopLabelMap

    curve = TopLabelMap(np.array(TOP_LABEL["confidence"]), np.array(TOP_LABEL["accuracy"]))
    rng = np.random.default_rng(0)
    scores = softmax(rng.normal(0, 2, (2000, 3)))
    mapped = curve.apply(scores)
    assert mapped.shape == scores.shape
    assert np.allclose(mapped.sum(axis=1), 1.0, atol=1e-12)
    assert np.array_equal(mapped.argmax(axis=1), scores.argmax(axis=1))
    top = scores.max(axis=1)
    expected_top = np.interp(top, TOP_LABEL["confidence"], TOP_LABEL["accuracy"])
    runner_up = np.sort(scores, axis=1)[:, -2]
    free = expected_top > runner_up / (1 - top + runner_up) * (1 + 1e-6)  # above the floor
    assert free.mean() > 0.8
    assert mapped.max(axis=1)[free] == pytest.approx(expected_top[free], abs=1e-12)
    # The other labels keep their proportions.
    order = np.argsort(scores, axis=1)
    low, mid = order[:, 0], order[:, 1]
    rows = np.arange(len(scores))
    assert mapped[rows, low] / mapped[rows, mid] == pytest.approx(scores[rows, low] / scores[rows, mid], rel=1e-9)
    # Where the curve would put the top label below the rescaled runner-up, it stays just above it,
    # in float32 too (a tie would hand the answer to the lower index).
    for dtype in (np.float64, np.float32):
        held = curve.apply(np.array([[0.40, 0.41, 0.19]], dtype=dtype))[0]
        assert held[1] == pytest.approx(held[0], rel=1e-5) and held[1] > held[0] and held.argmax() == 1
    assert np.array_equal(curve.apply(np.array([1.0, 0.0, 0.0])), [1.0, 0.0, 0.0])


def test_the_top_label_curve_brings_held_out_ece_under_what_one_temperature_leaves():
    """A model whose accuracy is a steeper function of its confidence than any temperature can
    undo (as the VADER movie model's is): over 20 seeds the curve fitted on 500 examples leaves a
    held-out ECE (2,000 examples) within the estimator's own noise, and always below temperature
    scaling's."""
    from handler.postprocess.top_label import TopLabelMap
    from hflabels.training.calibration import fit_top_label_map

    def draw(rng, n):
        logits = rng.normal(0, 1.5, (n, 3))
        confidence = softmax(logits).max(axis=1)
        # The true accuracy at confidence c: a steep logistic around 0.7 (not a power of c).
        accuracy = 1 / (1 + np.exp(-12 * (confidence - 0.7)))
        correct = rng.random(n) < accuracy
        best, other = logits.argmax(axis=1), (logits.argmax(axis=1) + 1 + rng.integers(0, 2, n)) % 3
        return logits, np.where(correct, best, other), accuracy

    mapped_eces, temperature_eces, floors = [], [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        fit_logits, fit_truth, _ = draw(rng, 500)
        test_logits, test_truth, accuracy = draw(rng, 2000)
        temperature = fit_temperature(fit_logits, fit_truth)
        curve = fit_top_label_map(softmax(fit_logits / temperature), fit_truth)
        assert isinstance(curve, TopLabelMap)
        scaled = softmax(test_logits / temperature)
        mapped_eces.append(expected_calibration_error(curve.apply(scaled), test_truth))
        temperature_eces.append(expected_calibration_error(scaled, test_truth))
        # The same test set's ECE under the true accuracy curve: the estimator's floor.
        perfect = softmax(test_logits)
        rows = np.arange(len(perfect))
        top = perfect.argmax(axis=1)
        rest = perfect.copy()
        rest[rows, top] = 0
        truthful = rest * ((1 - accuracy) / rest.sum(axis=1))[:, None]
        truthful[rows, top] = np.maximum(accuracy, truthful.max(axis=1))
        floors.append(expected_calibration_error(truthful, test_truth))
    assert all(m < t for m, t in zip(mapped_eces, temperature_eces))
    assert np.mean(mapped_eces) <= np.mean(floors) + 0.015
    assert np.mean(temperature_eces) > np.mean(floors) + 0.03


def test_served_scores_go_through_the_top_label_curve(sentiment_model):
    from handler.postprocess.top_label import TopLabelMap

    calibration = {"temperature": 0.7, "top_label": TOP_LABEL}
    handler, context = load_handler(sentiment_model, {"calibration": calibration, "parameters": {"top_k": None}})
    plain, plain_context = load_handler(sentiment_model, {"calibration": {"temperature": 0.7}})
    curve = TopLabelMap(np.array(TOP_LABEL["confidence"]), np.array(TOP_LABEL["accuracy"]))
    tokenizer = AutoTokenizer.from_pretrained(sentiment_model)
    model = AutoModelForSequenceClassification.from_pretrained(sentiment_model).eval()
    labels = handler.runner.labels
    for text in ["I loved it", "The soup was cold.", "The shop opens at nine."]:
        _, answer = call_one(handler, context, {"inputs": text})
        with torch.no_grad():
            logits = model(**tokenizer(text, return_tensors="pt")).logits[0].numpy().astype(np.float64)
        expected = curve.apply(softmax(logits / 0.7))
        assert {item["label"]: item["score"] for item in answer} == pytest.approx(
            {label: float(score) for label, score in zip(labels, expected)}, abs=1e-5
        )
        assert answer[0]["label"] == call_one(plain, plain_context, {"inputs": text})[1]["label"]


@pytest.mark.parametrize(
    ("top_label", "message"),
    [
        ({"confidence": [0.5, 0.5], "accuracy": [0.4, 0.6]}, "top_label.confidence must be increasing"),
        ({"confidence": [0.5, 0.7], "accuracy": [0.6, 0.4]}, "top_label.accuracy must be non-decreasing"),
        ({"confidence": [0.5, 0.7, 0.9], "accuracy": [0.4, 0.6]}, "as many knots each"),
        ({"confidence": [0.5, 1.2], "accuracy": [0.4, 0.6]}, "top_label.confidence[1]"),
        ({"confidence": [0.5, 0.7]}, "top_label.accuracy must be a list of two or more numbers"),
        ({"confidence": [0.5, 0.7], "accuracy": [0.4, 0.6], "bins": 3}, "top_label has unknown key(s) bins"),
    ],
)
def test_bad_top_label_curves_fail_the_load_naming_them(sentiment_model, top_label, message):
    from support import make_context

    from handler.api.errors import ConfigurationError
    from handler.torchserve_handler import TransformersLabelHandler

    context = make_context(sentiment_model, {"calibration": {"top_label": top_label}})
    with pytest.raises(ConfigurationError) as raised:
        TransformersLabelHandler().initialize(context)
    assert message in str(raised.value)


def test_a_top_label_curve_on_a_multi_label_model_fails_the_load(sentiment_model):
    from support import make_context

    from handler.api.errors import ConfigurationError
    from handler.torchserve_handler import TransformersLabelHandler

    context = make_context(sentiment_model, {"multi_label": True, "calibration": {"top_label": TOP_LABEL}})
    with pytest.raises(ConfigurationError, match="top_label applies to single-label models"):
        TransformersLabelHandler().initialize(context)
