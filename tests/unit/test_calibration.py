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
