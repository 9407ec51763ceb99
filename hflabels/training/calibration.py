"""Calibrated scores: fitting a temperature and a prior correction on held-out logits, and measuring
calibration (expected calibration error, negative log-likelihood, Brier score). Pure numpy.

Served scores are ``softmax((logits - correction) / T)`` (multi-label: ``sigmoid((logits -
correction) / T_label)``). The correction undoes a training that re-weighted or resampled classes
on purpose (logit adjustment: a class weighted by w is learned with its logit raised by log w), and
the temperature undoes over-confidence (Guo et al. 2017).

Solver: the validation NLL is convex in s = 1/T (a log-sum-exp of linear functions of s, minus a
linear term), so its derivative is increasing in s; bisection on the derivative's sign over
log s in [-ln 1e4, ln 1e4] (T from 1e-4 to 1e4, what handler.calibration accepts) finds the
minimiser to 1e-10 in 80 steps, with no step size to tune.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# The served activations themselves, so a fitted and a served score are one function.
from handler.postprocess.scoring import LogitCalibration, sigmoid, softmax
from handler.postprocess.top_label import TopLabelMap

__all__ = ["sigmoid", "softmax"]  # re-exported for the fitting code and its tests

ECE_BINS = 15


def expected_calibration_error(probabilities: np.ndarray, truth: np.ndarray, bins: int = ECE_BINS) -> float:
    """Guo et al.'s ECE: top-label confidence in ``bins`` equal-width bins, the gap between each
    bin's accuracy and mean confidence weighted by its share of examples."""
    confidence = probabilities.max(axis=-1)
    correct = probabilities.argmax(axis=-1) == truth
    edges = np.linspace(0.0, 1.0, bins + 1)
    error = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high) if low > 0 else (confidence >= low) & (confidence <= high)
        if inside.any():
            error += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(error)


def reliability(probabilities: np.ndarray, truth: np.ndarray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Per bin of top-label confidence: its range, count, mean confidence and accuracy."""
    confidence = probabilities.max(axis=-1)
    correct = probabilities.argmax(axis=-1) == truth
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high) if low > 0 else (confidence >= low) & (confidence <= high)
        count = int(inside.sum())
        rows.append({"low": float(low), "high": float(high), "count": count,
                     "confidence": float(confidence[inside].mean()) if count else 0.0,
                     "accuracy": float(correct[inside].mean()) if count else 0.0})  # fmt: skip
    return rows


def negative_log_likelihood(probabilities: np.ndarray, truth: np.ndarray) -> float:
    picked = probabilities[np.arange(len(truth)), truth]
    return float(-np.log(np.clip(picked, 1e-12, 1.0)).mean())


def brier_score(probabilities: np.ndarray, truth: np.ndarray) -> float:
    """Mean over examples of the squared distance to the one-hot truth (summed over classes)."""
    onehot = np.eye(probabilities.shape[-1])[truth]
    return float(((probabilities - onehot) ** 2).sum(axis=-1).mean())


def calibration_metrics(probabilities: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {
        "ece": round(expected_calibration_error(probabilities, truth), 6),
        "nll": round(negative_log_likelihood(probabilities, truth), 6),
        "brier": round(brier_score(probabilities, truth), 6),
    }


LOG_S_RANGE = float(np.log(1e4))


def _bisect_increasing(derivative, low: float = -LOG_S_RANGE, high: float = LOG_S_RANGE, steps: int = 80) -> float:  # noqa: ANN001
    """The log s where an increasing ``derivative(s)`` changes sign (the ends if it does not)."""
    if derivative(np.exp(low)) >= 0:
        return low
    if derivative(np.exp(high)) <= 0:
        return high
    for _ in range(steps):
        middle = (low + high) / 2
        if derivative(np.exp(middle)) > 0:
            high = middle
        else:
            low = middle
    return (low + high) / 2


def fit_temperature(logits: np.ndarray, truth: np.ndarray) -> float:
    """The T > 0 minimising the NLL of ``softmax(logits / T)`` for ``truth`` (class indices)."""
    picked = logits[np.arange(len(truth)), truth]

    def derivative(s: float) -> float:
        # d/ds mean(logsumexp(s z) - s z_y) = mean(E_softmax(s z)[z] - z_y)
        return float(((softmax(s * logits) * logits).sum(axis=-1) - picked).mean())

    return float(1.0 / np.exp(_bisect_increasing(derivative)))


# Below this many validation examples a fitted temperature says more about those few examples than
# about the model (12 examples gave T = 0.084, scores of 0.42 served as 0.98): it is kept within
# SMALL_SAMPLE_BOUNDS and the run warns.
MIN_CALIBRATION_EXAMPLES = 50
SMALL_SAMPLE_BOUNDS = (0.5, 2.0)


def temperature_interval(logits: np.ndarray, truth: np.ndarray, draws: int = 100, seed: int = 0) -> tuple[float, float]:
    """A 90% bootstrap interval of the fitted temperature: how far another validation draw of the
    same size would move it."""
    rng = np.random.default_rng(seed)
    fitted = [fit_temperature(logits[rows], truth[rows]) for rows in rng.integers(0, len(truth), (draws, len(truth)))]
    low, high = np.percentile(fitted, [5, 95])
    return float(low), float(high)


def fit_label_temperatures(logits: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Multi-label: per label, the T > 0 minimising the Bernoulli NLL of ``sigmoid(logits / T)``."""
    temperatures = []
    for column in range(logits.shape[1]):
        z, y = logits[:, column], truth[:, column].astype(float)

        def derivative(s: float, z: np.ndarray = z, y: np.ndarray = y) -> float:
            # d/ds mean(log(1 + exp(s z)) - y s z) = mean((sigmoid(s z) - y) z)
            return float(((sigmoid(s * z) - y) * z).mean())

        temperatures.append(1.0 / np.exp(_bisect_increasing(derivative)))
    return np.array(temperatures)


def prior_correction(ratios: Sequence[float], centred: bool = True) -> np.ndarray:
    """The logit adjustment that undoes training with class ``ratios`` (loss weights, or the
    resampled-to-original count ratios): the log of each. Softmax ignores a shared shift, so it is
    centred; a multi-label model's sigmoids do not (``centred=False``: positives weighted by w)."""
    adjustment = np.log(np.asarray(ratios, dtype=np.float64))
    return adjustment - adjustment.mean() if centred else adjustment


# T within 0.05-20 and adjustments within +-50 logits: a model whose logits say nothing would
# otherwise be fitted an unbounded temperature with an unbounded prior shift to match.
LOG_S_BOUNDS = (float(np.log(1 / 20)), float(np.log(20)))
BIAS_BOUNDS = (-50.0, 50.0)


def fit_prior_and_temperature(
    logits: np.ndarray, truth: np.ndarray, multi_label: bool, kept_adjustment: np.ndarray | None = None
) -> LogitCalibration:
    """From labelled examples distributed like the traffic: the logit adjustment (a prior
    correction, centred for softmax) and temperature(s) minimising the NLL of
    ``activation((logits - adjustment) / T)`` jointly (single-label: one T and a bias per label;
    multi-label: per label, Platt scaling). L-BFGS-B on log(1/T) and the biases, within bounds,
    with the analytic gradient. Single-label, the top-label curve of the same examples follows.
    ``kept_adjustment`` (single-label): the adjustment is that one, only T and the curve are fitted
    (a model whose decisions weigh every class alike keeps them: hflabels.training.imbalance)."""
    from scipy.optimize import minimize

    logits = np.asarray(logits, dtype=np.float64)
    if kept_adjustment is not None and not multi_label:
        bias = np.asarray(kept_adjustment, dtype=np.float64)
        temperature = np.full(logits.shape[1], fit_temperature(logits - bias, truth))
        return LogitCalibration(bias, temperature, fit_top_label_map(softmax((logits - bias) / temperature), truth))
    if multi_label:
        adjustments, temperatures = [], []
        for column in range(logits.shape[1]):
            z, y = logits[:, column], truth[:, column].astype(float)

            def nll(params: np.ndarray, z: np.ndarray = z, y: np.ndarray = y) -> tuple[float, np.ndarray]:
                log_s, bias = params
                s = np.exp(log_s)
                x = s * (z - bias)
                p = sigmoid(x)
                loss = float(np.mean(np.logaddexp(0.0, x) - y * x))
                grad_x = (p - y) / len(z)
                return loss, np.array([float((grad_x * x).sum()), float((grad_x * -s).sum())])

            found = minimize(nll, np.zeros(2), jac=True, method="L-BFGS-B", bounds=[LOG_S_BOUNDS, BIAS_BOUNDS])
            adjustments.append(found.x[1])
            temperatures.append(1.0 / np.exp(found.x[0]))
        return LogitCalibration(np.array(adjustments), np.array(temperatures))
    truth = np.asarray(truth, dtype=int)
    onehot = np.eye(logits.shape[1])[truth]

    def nll(params: np.ndarray) -> tuple[float, np.ndarray]:
        log_s, bias = params[0], params[1:]
        s = np.exp(log_s)
        x = s * (logits - bias)
        p = softmax(x)
        loss = float(np.mean(np.log(np.exp(x - x.max(axis=1, keepdims=True)).sum(axis=1)) + x.max(axis=1)
                             - x[np.arange(len(truth)), truth]))  # fmt: skip
        grad_x = (p - onehot) / len(truth)
        return loss, np.concatenate([[float((grad_x * x).sum())], -s * grad_x.sum(axis=0)])

    bounds = [LOG_S_BOUNDS] + [BIAS_BOUNDS] * logits.shape[1]
    found = minimize(nll, np.zeros(logits.shape[1] + 1), jac=True, method="L-BFGS-B", bounds=bounds)
    bias = found.x[1:] - found.x[1:].mean()
    temperature = np.full(logits.shape[1], 1.0 / np.exp(found.x[0]))
    top_label = fit_top_label_map(softmax((logits - bias) / temperature), truth)
    return LogitCalibration(bias, temperature, top_label)


# Below this many examples the top-label curve is not fitted: on the movie model of
# ``python -m lab calibration`` it still lowered held-out ECE on average from 100 examples
# (0.044 against temperature alone 0.053, 20 random draws), with a worst draw as bad as temperature's.
MIN_TOP_LABEL_EXAMPLES = 100


@dataclass(frozen=True)
class IsotonicBlocks:
    """The least-squares non-decreasing fit of y on x (pool adjacent violators) as its blocks, in
    order of x: each block's smallest and largest x, the mean x of its points, its fitted value (the
    mean y of its points, rising strictly from block to block) and its number of points."""

    first: np.ndarray
    last: np.ndarray
    centre: np.ndarray
    value: np.ndarray
    count: np.ndarray


def isotonic_blocks(x: np.ndarray, y: np.ndarray) -> IsotonicBlocks:
    order = np.argsort(x, kind="stable")
    distinct, starts, counts = np.unique(x[order], return_index=True, return_counts=True)
    sums = np.add.reduceat(y[order].astype(np.float64), starts)
    # Blocks as [y sum, points, x sum, first distinct index]; merged while a block's mean is not
    # above the previous one's.
    blocks: list[list[float]] = []
    for i, (total, weight, value) in enumerate(zip(sums, counts.astype(np.float64), distinct)):
        blocks.append([total, weight, value * weight, i])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            total_y, points, total_x, _ = blocks.pop()
            blocks[-1][0] += total_y
            blocks[-1][1] += points
            blocks[-1][2] += total_x
    first = np.array([int(block[3]) for block in blocks])
    last = np.append(first[1:] - 1, len(distinct) - 1)
    weight = np.array([block[1] for block in blocks])
    return IsotonicBlocks(distinct[first], distinct[last], np.array([block[2] for block in blocks]) / weight,
                          np.array([block[0] for block in blocks]) / weight, weight.astype(int))  # fmt: skip


def plain_knots(blocks: IsotonicBlocks) -> tuple[np.ndarray, np.ndarray]:
    """Each block's first and last x at its value: the same piecewise-linear function as
    scikit-learn's IsotonicRegression with linear interpolation."""
    knots = np.column_stack([blocks.first, blocks.last]).ravel()
    values = np.repeat(blocks.value, 2)
    keep = np.append(True, np.diff(knots) > 0)  # a block of one distinct x is one knot
    return knots[keep], values[keep]


def centred_knots(blocks: IsotonicBlocks) -> tuple[np.ndarray, np.ndarray]:
    """Centred isotonic regression (Oron & Flournoy 2017): each block collapsed to the mean x of
    its points, straight lines between them. The plain fit rises between the last x of one block
    and the first x of the next, which can lie 5e-5 apart: its slope reached about 1,000 on a real
    model's validation half, so a change of 1e-4 in a confidence (bf16, or float32 sums in another
    order) moved a served score by 0.07-0.15. Centred, its largest slope there was 28."""
    if len(blocks.value) == 1 and blocks.first[0] < blocks.last[0]:
        return np.array([blocks.first[0], blocks.last[0]]), np.repeat(blocks.value, 2)
    return blocks.centre, blocks.value


def isotonic_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return plain_knots(isotonic_blocks(x, y))


def fit_top_label_map(probabilities: np.ndarray, truth: np.ndarray, centred: bool = True) -> TopLabelMap | None:
    """The curve of held-out accuracy against top-label confidence (centred isotonic; ``centred``
    False: the plain isotonic fit, kept for comparison), for handler.postprocess.top_label; None
    below MIN_TOP_LABEL_EXAMPLES examples or where every answer has one confidence. The end blocks
    are held half an example away from 0 and 1 (no answer served as certain, or as surely wrong,
    from a finite sample), never past their neighbour block: a top block of one right answer would
    otherwise pull every score above it to 0.75 or to 1."""
    if len(truth) < MIN_TOP_LABEL_EXAMPLES:
        return None
    confidence = probabilities.max(axis=-1)
    correct = (probabilities.argmax(axis=-1) == truth).astype(np.float64)
    blocks = isotonic_blocks(confidence, correct)
    knots, accuracy = (centred_knots if centred else plain_knots)(blocks)
    accuracy = accuracy.copy()  # the end blocks are clamped below
    if len(knots) < 2:
        return None
    values = np.unique(accuracy)
    if len(values) > 1:
        top, bottom = accuracy == values[-1], accuracy == values[0]
        top_count, bottom_count = int(blocks.count[-1]), int(blocks.count[0])
        accuracy[top] = max(min(values[-1], 1.0 - 0.5 / (top_count + 1)), values[-2])
        accuracy[bottom] = min(max(values[0], 0.5 / (bottom_count + 1)), values[1])
    else:
        accuracy = np.clip(accuracy, 0.5 / (len(truth) + 1), 1.0 - 0.5 / (len(truth) + 1))
    return TopLabelMap(knots, accuracy)
