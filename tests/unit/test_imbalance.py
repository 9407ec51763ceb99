"""Imbalance: when logit adjustment applies, and that the served correction it makes is the
balanced Bayes rule (hflabels.training.imbalance)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from handler.postprocess.scoring import Activation, LogitCalibration, served_scores
from hflabels.training.calibration import fit_prior_and_temperature, prior_correction
from hflabels.training.choices import AUTO_OVERSAMPLE_RATIO
from hflabels.training.imbalance import (
    LOGIT_ADJUSTMENT,
    OVERSAMPLE,
    BalanceOptions,
    decision_ratios,
    plan_imbalance,
)
from hflabels.training.metrics import class_weights


def test_the_modes_say_what_they_do_and_refuse_what_they_cannot():
    plan = plan_imbalance("logit_adjustment", [100, 10], True)
    assert plan.mode == LOGIT_ADJUSTMENT and plan.balanced and plan.ratio == 10.0 and plan.sampling == "none"
    kept = plan_imbalance("none", [1000, 10], True)
    assert not kept.balanced and "100.0:1" in kept.why and "as asked" in kept.why and kept.sampling == "none"
    # A class absent from training does not make the ratio infinite.
    assert plan_imbalance("none", [30, 0, 30], True).ratio == 1.0
    assert plan_imbalance("none", [1000, 1], False).mode == "none"
    with pytest.raises(ValueError, match="applies to single-label"):
        plan_imbalance("logit_adjustment", [1000, 1], False)
    with pytest.raises(ValueError, match="oversample applies to single-label"):
        plan_imbalance("oversample", [1000, 1], False)
    with pytest.raises(ValueError, match="resamples the classes itself: drop --class-weights"):
        plan_imbalance("oversample", [1000, 1], True, given=BalanceOptions(class_weights=True))
    with pytest.raises(ValueError, match="choose one of auto, none, oversample, logit_adjustment"):
        plan_imbalance("balanced", [1, 1], True)


def test_auto_oversamples_from_its_ratio_on_single_label_data_left_unshaped():
    below = AUTO_OVERSAMPLE_RATIO * 100 - 1
    assert plan_imbalance("auto", [1000, 100], True).mode == OVERSAMPLE  # exactly at the ratio
    auto = plan_imbalance("auto", [1000, 1000, 10], True)
    assert auto.mode == OVERSAMPLE and auto.balanced and auto.sampling == OVERSAMPLE
    assert "100.0:1" in auto.why and "oversampled" in auto.why and "--imbalance none" in auto.why
    under = plan_imbalance("auto", [int(below), 100], True)
    assert under.mode == "none" and f"auto acts from {AUTO_OVERSAMPLE_RATIO:.0f}:1" in under.why
    # Weights or resampling asked for: no more resampling, and their decisions are served as trained
    # (not divided back out, which made a rare class vanish); focal loss alone keeps the prior.
    weighted = plan_imbalance("auto", [1000, 10], True, given=BalanceOptions(class_weights=True))
    assert weighted.mode == LOGIT_ADJUSTMENT and weighted.sampling == "none"
    assert "--class-weights as asked; decisions served as trained" in weighted.why
    focal = plan_imbalance("auto", [1000, 10], True, given=BalanceOptions(focal_loss=True))
    assert focal.mode == "none" and "--loss focal alone" in focal.why
    assert plan_imbalance("auto", [100, 20], True, given=BalanceOptions(class_weights=True)).mode == "none"  # 5:1
    assert plan_imbalance("auto", [1000, 10], False).mode == "none"  # multi-label, regression, tokens
    assert plan_imbalance("oversample", [30, 30], True).mode == OVERSAMPLE  # asked: even when balanced


def test_the_options_given_name_themselves_and_only_weights_or_resampling_flatten_the_prior():
    both = BalanceOptions(class_weights=True, focal_loss=True)
    assert both.names == "--class-weights/--loss focal" and both.flatten_prior
    # Weights with focal loss: the weights flattened the prior, so their decisions are served.
    assert plan_imbalance("auto", [1000, 10], True, given=both).mode == LOGIT_ADJUSTMENT
    assert plan_imbalance("auto", [1000, 10], True, given=BalanceOptions(sampling=True)).mode == LOGIT_ADJUSTMENT
    assert not BalanceOptions().given and BalanceOptions().names == ""
    with pytest.raises(ValueError, match="drop --sampling/--class-weights"):
        plan_imbalance("oversample", [1000, 10], True, given=BalanceOptions(sampling=True, class_weights=True))


def test_the_logit_adjusted_loss_flattens_the_prior_so_its_decisions_are_served_as_trained():
    from pathlib import Path

    import torch

    from handler.api.tasks import Objective
    from hflabels.training.data import DataError
    from hflabels.training.options import TrainOptions, balance_options_given, check_options

    adjusted = BalanceOptions(logit_adjusted_loss=True)
    assert adjusted.given and adjusted.flatten_prior and adjusted.names == "--loss logit_adjusted"
    options = TrainOptions(task="single_label", train=Path("t"), output=Path("o"), loss="logit_adjusted")
    assert balance_options_given(options) == adjusted
    plan = plan_imbalance("auto", [1000, 10], True, given=adjusted)
    assert plan.mode == LOGIT_ADJUSTMENT and plan.sampling == "none"
    with pytest.raises(ValueError, match="drop --loss logit_adjusted"):
        plan_imbalance("oversample", [1000, 10], True, given=adjusted)
    for task in (Objective.MULTI_LABEL, Objective.TOKEN_CLASSIFICATION):
        with pytest.raises(DataError, match=f"logit_adjusted is for single-label classification, not {task.value}"):
            check_options(options, task, torch.device("cpu"))
    check_options(options, Objective.SENTENCE_PAIR, torch.device("cpu"))
    with pytest.raises(DataError, match="^--loss logit_adjusted is for classification, not regression$"):
        check_options(options, Objective.REGRESSION, torch.device("cpu"))


@pytest.mark.parametrize("mode", ["oversample", "logit_adjustment"])
def test_a_balanced_mode_without_calibration_is_refused_since_calibration_serves_it(mode):
    from pathlib import Path

    import torch

    from handler.api.tasks import Objective
    from hflabels.training.data import DataError
    from hflabels.training.options import TrainOptions, balance_options_given, check_options

    options = TrainOptions(task="single_label", train=Path("t.csv"), output=Path("o"), imbalance=mode, calibrate=False)
    with pytest.raises(DataError, match=f"--imbalance {mode} is served through the calibration"):
        check_options(options, Objective.SINGLE_LABEL, torch.device("cpu"))
    # auto without calibration is allowed: it serves the model's own scores (imbalance none).
    check_options(TrainOptions(task="single_label", train=Path("t.csv"), output=Path("o"), calibrate=False),
                  Objective.SINGLE_LABEL, torch.device("cpu"))  # fmt: skip
    assert balance_options_given(TrainOptions(task="single_label", train=Path("t"), output=Path("o"), loss="focal")) \
        == BalanceOptions(focal_loss=True)  # fmt: skip


def test_the_correction_divides_out_the_training_prior_and_only_the_reweighting_without_it():
    counts = [1000, 1000, 10]
    plain = np.ones(3)
    balanced = plan_imbalance("logit_adjustment", counts, True)
    traffic = plan_imbalance("none", counts, True)
    np.testing.assert_allclose(decision_ratios(plain, counts, traffic), plain)
    shares = np.array(counts) / sum(counts)
    np.testing.assert_allclose(decision_ratios(plain, counts, balanced), shares)
    # Inverse weights already made the training prior flat: nothing is left to correct.
    weights = class_weights(counts, "inverse")
    correction = prior_correction(decision_ratios(weights, counts, balanced))
    np.testing.assert_allclose(correction, 0.0, atol=1e-12)
    # Oversampled to the largest class's count: the training prior was flat too; the correction
    # would otherwise divide the resampling back out.
    oversampled = np.full(3, 1000.0) / np.array(counts)
    flat = prior_correction(decision_ratios(oversampled, counts, plan_imbalance("auto", counts, True)))
    np.testing.assert_allclose(flat, 0.0, atol=1e-12)
    np.testing.assert_allclose(prior_correction(decision_ratios(oversampled, counts, traffic)),
                               prior_correction(oversampled))  # fmt: skip
    # Without logit adjustment the weights alone are undone (the calibrated, traffic prior).
    np.testing.assert_allclose(prior_correction(decision_ratios(weights, counts, traffic)), prior_correction(weights))


def test_served_decisions_are_the_balanced_bayes_rule_of_a_model_that_learned_the_prior():
    # Three unit-variance Gaussian classes on a line, 100:100:1 in training: a model that learned
    # the training distribution exactly has logits log p(x|y) + log prior(y). Served with the
    # adjustment, its answer must be argmax p(x|y) for every input, and its balanced accuracy the
    # best any rule reaches (the Bayes rule for balanced error), well above the argmax's.
    rng = np.random.default_rng(0)
    means, counts = np.array([-2.0, 2.0, 0.0]), [1000, 1000, 10]
    truth = rng.integers(0, 3, 30_000)
    x = rng.normal(means[truth], 1.0)
    likelihood = norm.logpdf(x[:, None], means[None, :], 1.0)
    logits = likelihood + np.log(np.array(counts) / sum(counts))
    plan = plan_imbalance("logit_adjustment", counts, True)
    calibration = LogitCalibration(prior_correction(decision_ratios(np.ones(3), counts, plan)), np.ones(3))
    served = served_scores(logits, Activation.SOFTMAX, calibration).argmax(axis=1)
    np.testing.assert_array_equal(served, likelihood.argmax(axis=1))

    def balanced_accuracy(predicted: np.ndarray) -> float:
        return float(np.mean([np.mean(predicted[truth == c] == c) for c in range(3)]))

    # The Bayes rule's balanced accuracy: each class's mass on its own decision interval.
    midpoint = 1.0  # between 0 and +-2
    bayes = (norm.cdf(-midpoint, -2.0) + (norm.cdf(midpoint) - norm.cdf(-midpoint)) + norm.sf(midpoint, 2.0)) / 3
    sd = np.sqrt(0.25 / (len(truth) / 3) / 3)
    assert balanced_accuracy(served) == pytest.approx(bayes, abs=4 * sd)
    assert balanced_accuracy(logits.argmax(axis=1)) < bayes - 0.1
    # hflabels calibrate on traffic distributed like training: the temperature refitted with the
    # adjustment kept leaves every decision as it was...
    traffic_truth = rng.choice(3, 20_000, p=np.array(counts) / sum(counts))
    traffic_x = rng.normal(means[traffic_truth], 1.0)
    traffic_logits = norm.logpdf(traffic_x[:, None], means[None, :], 1.0) + np.log(np.array(counts) / sum(counts))
    refit = fit_prior_and_temperature(traffic_logits, traffic_truth, False, calibration.adjustment)
    np.testing.assert_array_equal(refit.adjustment, calibration.adjustment)
    kept = served_scores(logits, Activation.SOFTMAX, refit).argmax(axis=1)
    np.testing.assert_array_equal(kept, served)
    # ...where refitting the prior on it would take the decisions back to the argmax's.
    natural = fit_prior_and_temperature(traffic_logits, traffic_truth, False)
    renatured = served_scores(logits, Activation.SOFTMAX, natural).argmax(axis=1)
    assert balanced_accuracy(renatured) < bayes - 0.1
