"""Calibration on unseen data: each calibrator fitted on validation examples, measured on a test
split it never saw, with the estimator's noise shown (``python -m lab calibration``).

ECE is measured two ways (15 equal-width bins, Guo et al.; 15 equal-mass bins) with a bootstrap
90% interval over test examples, for the fit on the seeded half ``hflabels train`` itself uses, and
as the mean and worst over random halves (how much the choice of validation examples moves it).
Conformal coverage of the shipped calibrator's prediction sets on the test split, fitted on the
other half, shows the guarantees still hold on top of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import minimize

from handler.api.settings import ConformalMethod, HandlerSettings
from handler.postprocess.conformal import prediction_set
from handler.postprocess.scoring import LogitCalibration, softmax
from hflabels.training.calibration import (
    calibration_metrics,
    expected_calibration_error,
    fit_prior_and_temperature,
    fit_temperature,
    fit_top_label_map,
)
from hflabels.training.guarantees import fit_conformal, split_for_guarantees

Calibrator = Callable[[np.ndarray], np.ndarray]
BOOTSTRAP_DRAWS = 200
COVERAGES = (0.8, 0.9, 0.95)
DTYPE_TOLERANCE = HandlerSettings.from_mapping({}).loading.dtype_tolerance


def equal_mass_ece(probabilities: np.ndarray, truth: np.ndarray, bins: int = 15) -> float:
    """ECE over ``bins`` bins holding as many examples each (sorted by top-label confidence)."""
    confidence = probabilities.max(axis=-1)
    correct = probabilities.argmax(axis=-1) == truth
    order = np.argsort(confidence, kind="stable")
    return float(sum(len(part) / len(truth) * abs(correct[part].mean() - confidence[part].mean())
                     for part in np.array_split(order, bins) if len(part)))  # fmt: skip


def vector_scaling(logits: np.ndarray, truth: np.ndarray) -> Calibrator:
    """softmax(w * logits + b), w and b per label, fitted by NLL (Guo et al.'s vector scaling)."""
    labels = logits.shape[1]

    def nll(params: np.ndarray) -> float:
        shifted = logits * params[:labels] + params[labels:]
        shifted = shifted - shifted.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-log_p[np.arange(len(truth)), truth].mean())

    found = minimize(nll, np.concatenate([np.ones(labels), np.zeros(labels)]), method="L-BFGS-B").x
    return lambda z: softmax(z * found[:labels] + found[labels:])


def calibrators(logits: np.ndarray, truth: np.ndarray) -> dict[str, Calibrator]:
    """Every candidate fitted on (logits, truth); "temperature + top-label curve" is what
    ``hflabels train`` ships, "prior + temperature + top-label curve" what ``hflabels calibrate`` does."""
    temperature = fit_temperature(logits, truth)
    curve = fit_top_label_map(softmax(logits / temperature), truth)
    prior = fit_prior_and_temperature(logits, truth, multi_label=False)
    prior_only = LogitCalibration(prior.adjustment, prior.temperature)
    shipped = LogitCalibration(np.zeros(logits.shape[1]), np.full(logits.shape[1], temperature), curve)
    plain = LogitCalibration(shipped.adjustment, shipped.temperature,
                             fit_top_label_map(softmax(logits / temperature), truth, centred=False))  # fmt: skip

    def served(calibration: LogitCalibration) -> Calibrator:
        def scores(z: np.ndarray) -> np.ndarray:
            probabilities = softmax(calibration.apply(z))
            return probabilities if calibration.top_label is None else calibration.top_label.apply(probabilities)

        return scores

    return {
        "none": softmax,
        "temperature": lambda z: softmax(z / temperature),
        "prior + temperature": served(prior_only),
        "vector scaling": vector_scaling(logits, truth),
        "temperature + top-label curve": served(shipped),
        "temperature + plain isotonic curve (before 2026-12-04)": served(plain),
        "prior + temperature + top-label curve": served(prior),
    }


def interval(values: list[float]) -> list[float]:
    low, high = np.percentile(values, [5, 95])
    return [round(float(low), 4), round(float(high), 4)]


def low_precision_change(scores: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """How far one calibrator's served scores move when the test logits come from bf16 autocast:
    the largest change a row, its 99th percentile, and the share of rows past dtype_tolerance."""
    change = np.abs(scores - candidate).max(axis=1)
    return {"max": round(float(change.max()), 4), "p99": round(float(np.quantile(change, 0.99)), 4),
            "share_over_tolerance": round(float((change > DTYPE_TOLERANCE).mean()), 4)}  # fmt: skip


def study(validation: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], seed: int, share: float,
          halves: int, low_precision_test: np.ndarray | None = None) -> dict[str, Any]:  # fmt: skip
    """The comparison for one model's validation and test logits (label indices as truth);
    ``low_precision_test``: the test logits under bf16 autocast, to measure each calibrator's change."""
    (val_logits, val_truth), (test_logits, test_truth) = validation, test
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(test_truth), len(test_truth)) for _ in range(BOOTSTRAP_DRAWS)]
    scaling, held_out = split_for_guarantees(val_truth, share, seed)
    seeded = calibrators(val_logits[scaling], val_truth[scaling])
    rows: dict[str, dict[str, Any]] = {}
    for name, calibrate in seeded.items():
        scores = calibrate(test_logits)
        rows[name] = {
            **calibration_metrics(scores, test_truth),
            "ece_equal_mass": round(equal_mass_ece(scores, test_truth), 6),
            "ece_interval_90": interval([expected_calibration_error(scores[d], test_truth[d]) for d in draws]),
            "ece_equal_mass_interval_90": interval([equal_mass_ece(scores[d], test_truth[d]) for d in draws]),
            "accuracy": round(float((scores.argmax(axis=1) == test_truth).mean()), 4),
            "held_out_validation_ece": round(
                expected_calibration_error(calibrate(val_logits[held_out]), val_truth[held_out]), 6
            ),
        }
        if low_precision_test is not None:
            rows[name]["bf16_served_change"] = low_precision_change(scores, calibrate(low_precision_test))
    over_halves: dict[str, list[tuple[float, float]]] = {name: [] for name in seeded}
    for half in range(halves):
        scaling_h, _ = split_for_guarantees(val_truth, share, seed + 1 + half)
        for name, calibrate in calibrators(val_logits[scaling_h], val_truth[scaling_h]).items():
            scores = calibrate(test_logits)
            width, mass = expected_calibration_error(scores, test_truth), equal_mass_ece(scores, test_truth)
            over_halves[name].append((width, mass))
    for name, found in over_halves.items():
        widths, masses = [w for w, _ in found], [m for _, m in found]
        rows[name]["halves"] = {"count": halves, "ece_mean": round(float(np.mean(widths)), 4),
                                "ece_max": round(float(np.max(widths)), 4),
                                "ece_equal_mass_mean": round(float(np.mean(masses)), 4),
                                "ece_equal_mass_max": round(float(np.max(masses)), 4)}  # fmt: skip
    shipped = seeded["temperature + top-label curve"]
    fitted = fit_conformal(shipped(val_logits[held_out]), val_truth[held_out], ConformalMethod.LAC,
                           [str(i) for i in range(val_logits.shape[1])], COVERAGES)  # fmt: skip
    test_scores = shipped(test_logits)
    coverage = {}
    for level, threshold in fitted["thresholds"].items():
        sets = [prediction_set(ConformalMethod.LAC, row, threshold) for row in test_scores]
        covered = np.mean([truth in chosen for truth, chosen in zip(test_truth, sets)])
        size = float(np.mean([len(chosen) for chosen in sets]))
        coverage[str(level)] = {"coverage": round(float(covered), 4), "mean_set_size": round(size, 3)}
    return {"validation_examples": len(val_truth), "calibration_examples": len(scaling),
            "held_out_examples": len(held_out), "test_examples": len(test_truth), "calibrators": rows,
            "conformal_lac_on_test": coverage}  # fmt: skip
