"""Conformal prediction sets and abstention from calibrated scores: pure functions of arrays.

Split conformal prediction (Vovk et al.; Angelopoulos & Bates, "A Gentle Introduction to
Conformal Prediction", 2021): a nonconformity score s(x, y) is computed on n held-out examples;
the threshold for coverage 1 - alpha is the ceil((n + 1)(1 - alpha))-th smallest of them, and the
set of a new input is every label whose score is at most that threshold. If the held-out examples
and the traffic are exchangeable, the set holds the true label with probability at least 1 - alpha
(and, with continuous scores, at most 1 - alpha + 1/(n + 1)).

Methods (``handler.conformal.method``):

- ``lac``: s = 1 - p(y) (Sadinle et al. 2019), the smallest sets on average;
- ``aps``: s = the probability mass of the labels ranked at or above y (Romano et al. 2020),
  non-randomised: the set is the best labels while their mass stays within the threshold (at
  least the best one); sets adapt to how unsure the model is;
- ``class_conditional``: LAC with one threshold per class, each from that class's held-out
  examples (Mondrian conformal), so coverage holds within each true class, the rare one included;
- ``fnr_control`` (multi-label): conformal risk control (Angelopoulos et al. 2022) of the
  false-negative rate per example: the set is every label scoring at least a threshold chosen so
  that the expected share of an input's true labels left out is at most alpha.

Comparisons allow MAPIE's tie tolerance (``TIE_TOLERANCE``), so sets equal MAPIE's.
"""

from __future__ import annotations

import math

import numpy as np

from handler.api.settings import ConformalMethod

# MAPIE's EPSILON (mapie/_machine_precision.py): scores this close to the threshold are inside it.
TIE_TOLERANCE = 1e-8


def order_statistic_rank(n: int, alpha: float) -> int:
    """The rank (1-based) of the held-out score that is the threshold: ceil((n + 1)(1 - alpha)).
    Rounded first at 1e-9 so that a product such as 101 x 0.9 = 90.9000000001 is not pushed up."""
    return math.ceil(round((n + 1) * (1.0 - alpha), 9))


def minimum_examples(alpha: float) -> int:
    """The fewest held-out examples whose threshold is finite at level 1 - alpha: (1 - alpha) / alpha."""
    n = 1
    while order_statistic_rank(n, alpha) > n:
        n += 1
    return n


def conformal_threshold(scores: np.ndarray, alpha: float) -> float:
    """The ceil((n + 1)(1 - alpha))-th smallest of ``scores``; ValueError when that rank exceeds n
    (too few examples for the level: the only valid set would be every label)."""
    scores = np.sort(np.asarray(scores, dtype=np.float64).reshape(-1))
    rank = order_statistic_rank(len(scores), alpha)
    if rank > len(scores):
        raise ValueError(
            f"coverage {1 - alpha:g} needs at least {minimum_examples(alpha)} held-out examples, got {len(scores)}"
        )
    return float(scores[rank - 1])


def lac_scores(probabilities: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1 - p(true label), per example."""
    return 1.0 - np.take_along_axis(probabilities, np.asarray(truth).reshape(-1, 1), axis=1)[:, 0]


def _ranked_mass(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels best first, the cumulative mass at each of them), per row."""
    order = np.flip(np.argsort(probabilities, axis=-1), axis=-1)
    return order, np.cumsum(np.take_along_axis(probabilities, order, axis=-1), axis=-1)


def aps_scores(probabilities: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The mass of the labels ranked at or above the true one (its own included), per example."""
    order, mass = _ranked_mass(probabilities)
    position = np.argmax(order == np.asarray(truth).reshape(-1, 1), axis=1)
    return np.take_along_axis(mass, position.reshape(-1, 1), axis=1)[:, 0]


def lac_set(probabilities: np.ndarray, threshold: float | np.ndarray) -> tuple[int, ...]:
    """Labels with 1 - p <= threshold (one threshold, or one per label), best first."""
    chosen = np.flatnonzero((1.0 - probabilities) - threshold <= TIE_TOLERANCE)
    return tuple(int(i) for i in chosen[np.argsort(-probabilities[chosen], kind="stable")])


def aps_set(probabilities: np.ndarray, threshold: float) -> tuple[int, ...]:
    """The best labels while their cumulative mass stays at most the threshold, and at least the
    best label (MAPIE's ``include_last_label=False``); a label tied with the last one comes with it.
    (Including the label that crosses the threshold, MAPIE's default, covered 98% of the movie
    domain at a 0.8 target: sets twice as large for no guarantee.)"""
    order, mass = _ranked_mass(probabilities[np.newaxis, :])
    limit = max(threshold, float(mass[0, 0]))
    within = np.flatnonzero(mass[0] - limit <= TIE_TOLERANCE)
    last_score = float(probabilities[order[0, within[-1]]])
    if last_score <= TIE_TOLERANCE:
        # As MAPIE: a zero-probability last label does not bring every other zero with it.
        last_score = float(np.min(probabilities[probabilities > TIE_TOLERANCE], initial=np.inf))
    chosen = np.flatnonzero(probabilities - last_score >= -TIE_TOLERANCE)
    return tuple(int(i) for i in chosen[np.argsort(-probabilities[chosen], kind="stable")])


def labels_scoring_at_least(scores: np.ndarray, threshold: float) -> tuple[int, ...]:
    """Multi-label: every label whose score reaches ``threshold``, best first."""
    chosen = np.flatnonzero(scores >= threshold)
    return tuple(int(i) for i in chosen[np.argsort(-scores[chosen], kind="stable")])


def prediction_set(method: ConformalMethod, scores: np.ndarray, threshold: float | np.ndarray) -> tuple[int, ...]:
    """The label indices of one input's set, best first (``threshold``: per label for
    class_conditional, else one number)."""
    if method is ConformalMethod.APS:
        return aps_set(scores, float(threshold))
    if method is ConformalMethod.FNR_CONTROL:
        return labels_scoring_at_least(scores, float(threshold))
    return lac_set(scores, threshold)


def false_negative_rates(scores: np.ndarray, truth: np.ndarray, threshold: float) -> np.ndarray:
    """Per example: the share of its true labels scoring below ``threshold`` (0 with none)."""
    truth = np.asarray(truth, dtype=bool)
    missed = (truth & (scores < threshold)).sum(axis=1)
    return missed / np.maximum(truth.sum(axis=1), 1)


def fnr_control_threshold(scores: np.ndarray, truth: np.ndarray, alpha: float) -> float:
    """Conformal risk control of the false-negative rate (loss bounded by 1): the largest score
    threshold t with (sum of the examples' FNR at t + 1) / (n + 1) <= alpha. The FNR only changes
    at true labels' scores, so those are the candidates (and 0, which admits every label)."""
    truth = np.asarray(truth, dtype=bool)
    n = len(scores)
    candidates = np.unique(np.concatenate([scores[truth], [0.0]]))[::-1]
    for threshold in candidates:
        if (false_negative_rates(scores, truth, float(threshold)).sum() + 1.0) / (n + 1) <= alpha:
            return float(threshold)
    raise ValueError(f"a false-negative rate of {alpha:g} needs at least {math.ceil(1 / alpha - 1)} held-out examples")


def risk_coverage(top_scores: np.ndarray, correct: np.ndarray) -> list[tuple[float, float, float]]:
    """(threshold, share answered, error among the answered) at every distinct top score, the
    most confident first: the risk-coverage curve of selective classification."""
    order = np.argsort(-np.asarray(top_scores), kind="stable")
    ranked, wrong = np.asarray(top_scores)[order], ~np.asarray(correct, dtype=bool)[order]
    errors = np.cumsum(wrong)
    curve = []
    n = len(ranked)
    for end in range(n):
        # Only where the next score differs: ties are answered or abstained on together.
        if end + 1 < n and ranked[end + 1] == ranked[end]:
            continue
        curve.append((float(ranked[end]), (end + 1) / n, float(errors[end] / (end + 1))))
    return curve
