"""Fitting what the served guarantees need, on held-out examples: conformal thresholds, an
abstention threshold with a bound on its error, and the drift reference.

The examples used here must not be the ones the temperature was fitted on (``split_for_guarantees``),
so the held-out scores are exchangeable with the traffic's as conformal prediction assumes.

Abstention (``fit_abstention``) is Learn-then-Test (Angelopoulos, Bates et al. 2021): for each
threshold t of a grid fixed before the held-out scores are seen, the null hypothesis "the error
among inputs answered at t exceeds E" is tested with the exact binomial p-value
P(Binomial(n_answered, E) <= errors); with probability at least ``confidence`` over the held-out
draw, every threshold the procedure accepts, the served one among them, has error at most E among
the inputs it answers. Two families, their accepted thresholds pooled and the loosest served:

- fixed-sequence testing: thresholds from strictest to loosest, each tested at
  (1 - confidence) / 2, stopping at the first that is not rejected; the grid is
  ``GRID_POINTS`` quantiles of the top scores of the examples the temperature was fitted on
  (independent of the held-out ones, and in the model's own score range, which a calibrated
  3-class model can squeeze into 0.49-0.58), starting where the held-out set is expected to answer
  three times the fewest examples a test at that level could reject with;
- Bonferroni over ``ABSTENTION_GRID`` (0.00, 0.01, ..., 1.00), each tested at
  (1 - confidence) / 2 / 101; it still answers where the sequence's strictest test fails.

The union bound over the two halves keeps the stated confidence (``ltt_fixed_sequence_and_bonferroni``).
Without independent scores (``calibrate --keep-scaling``) Bonferroni alone is used, at all of
1 - confidence (``ltt_bonferroni``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import binom

from handler.api.settings import ConformalMethod
from handler.postprocess.conformal import (
    aps_scores,
    conformal_threshold,
    fnr_control_threshold,
    lac_scores,
    minimum_examples,
)
from handler.postprocess.monitoring import CONFIDENCE_EDGES, confidence_bucket, shares
from hflabels.training.choices import DEFAULT_ABSTAIN_CONFIDENCE, DEFAULT_COVERAGES

# Thresholds tried for abstention when no independent scores give the grid.
ABSTENTION_GRID = np.round(np.linspace(0.0, 1.0, 101), 6)
GRID_POINTS = 100


def fixed_sequence_grid(
    independent_top_scores: np.ndarray, held_out: int, max_error: float, confidence: float
) -> np.ndarray:
    """Thresholds from strictest to loosest: quantiles of independent top scores, from the share
    answered at which the held-out set holds three times the fewest examples whose test can reject
    (k with (1 - E)^k <= 1 - confidence) to every input."""
    needed = 3 * math.ceil(math.log(1.0 - confidence) / math.log(1.0 - max_error))
    shares = np.linspace(min(1.0, needed / max(held_out, 1)), 1.0, GRID_POINTS)
    return np.quantile(np.asarray(independent_top_scores, dtype=np.float64), 1.0 - shares)




def as_served(values: Any) -> np.ndarray:
    """``values`` rounded to the float32 the server answers in (the model's logits are float32
    whatever it computes in), kept in float64 so every comparison is exact in either precision.
    Why: a top-label curve serves whole plateaus of one value, and a threshold fitted a float64
    rounding above a plateau's float32 score would abstain on (or leave out of its set) every
    answer on it that the fit answered."""
    return np.asarray(values, dtype=np.float32).astype(np.float64)


class GuaranteeError(ValueError):
    """Held-out data that cannot support what was asked (too few examples for a level)."""


def split_for_guarantees(truth: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices for scaling, indices held out), stratified by label for single-label truth."""
    rng = np.random.default_rng(seed)
    truth = np.asarray(truth)
    if truth.ndim == 1:
        held: list[int] = []
        for label in np.unique(truth):
            members = rng.permutation(np.flatnonzero(truth == label))
            held += members[: int(round(len(members) * share))].tolist()
        held_out = np.sort(np.array(held, dtype=int))
    else:
        order = rng.permutation(len(truth))
        held_out = np.sort(order[: int(round(len(truth) * share))])
    scaling = np.setdiff1d(np.arange(len(truth)), held_out)
    return scaling, held_out


def fit_conformal(
    probabilities: np.ndarray,
    truth: np.ndarray,
    method: ConformalMethod,
    labels: Sequence[str],
    coverages: Sequence[float] = DEFAULT_COVERAGES,
) -> dict[str, Any]:
    """``handler.conformal`` from held-out calibrated scores (single-label truth: label indices;
    fnr_control: a multi-hot matrix)."""
    n = len(truth)
    thresholds: dict[float, Any] = {}
    per_label_counts: dict[str, int] | None = None
    for coverage in coverages:
        alpha = 1.0 - coverage
        try:
            if method is ConformalMethod.FNR_CONTROL:
                thresholds[coverage] = fnr_control_threshold(probabilities, truth, alpha)
            elif method is ConformalMethod.CLASS_CONDITIONAL:
                per_label = {}
                per_label_counts = {}
                for index, label in enumerate(labels):
                    members = np.flatnonzero(truth == index)
                    per_label_counts[label] = len(members)
                    if len(members) < minimum_examples(alpha):
                        raise GuaranteeError(
                            f"class_conditional coverage {coverage:g}: label {label!r} has {len(members)} held-out "
                            f"examples, fewer than the {minimum_examples(alpha)} it needs; use lac or aps, a lower "
                            "coverage, or more held-out data"
                        )
                    scores = lac_scores(probabilities[members], truth[members])
                    per_label[label] = conformal_threshold(scores, alpha)
                thresholds[coverage] = per_label
            else:
                scores = (lac_scores if method is ConformalMethod.LAC else aps_scores)(probabilities, truth)
                thresholds[coverage] = conformal_threshold(scores, alpha)
        except GuaranteeError:
            raise
        except ValueError as error:
            raise GuaranteeError(f"{method.value}: {error}") from None
    fitted: dict[str, Any] = {"method": method.value, "examples": n, "thresholds": thresholds}
    if per_label_counts is not None:
        fitted["examples_per_label"] = per_label_counts
    return fitted


def abstention_p_values(
    top_scores: np.ndarray, correct: np.ndarray, max_error: float, grid: np.ndarray = ABSTENTION_GRID
) -> np.ndarray:
    """Per grid threshold, the exact binomial p-value of "error among the answered > max_error"
    (1 where nothing is answered)."""
    top_scores, wrong = np.asarray(top_scores), ~np.asarray(correct, dtype=bool)
    values = np.ones(len(grid))
    for i, threshold in enumerate(grid):
        answered = top_scores >= threshold
        count = int(answered.sum())
        if count:
            values[i] = float(binom.cdf(int(wrong[answered].sum()), count, max_error))
    return values


def fit_abstention(
    top_scores: np.ndarray,
    correct: np.ndarray,
    max_error: float,
    confidence: float = DEFAULT_ABSTAIN_CONFIDENCE,
    independent_top_scores: np.ndarray | None = None,
) -> dict[str, Any]:
    """``handler.abstention``: the loosest threshold whose answered error is at most ``max_error``
    with probability ``confidence`` (Learn-then-Test: fixed-sequence over quantiles of
    ``independent_top_scores`` and Bonferroni over ABSTENTION_GRID, at half the risk each; or
    Bonferroni alone without independent scores)."""
    if not 0.0 < max_error < 1.0 or not 0.0 < confidence < 1.0:
        raise GuaranteeError(f"abstain error {max_error} and confidence {confidence} must be between 0 and 1")
    delta = 1.0 - confidence
    # The fixed grid, Bonferroni-corrected: at all of delta alone, or at half beside the sequence.
    sequential = independent_top_scores is not None and len(independent_top_scores) >= GRID_POINTS
    share = 0.5 if sequential else 1.0
    top_scores, fixed_grid = as_served(top_scores), as_served(ABSTENTION_GRID)
    p_values = abstention_p_values(top_scores, correct, max_error, fixed_grid)
    accepted = [float(t) for t in fixed_grid[p_values <= share * delta / len(fixed_grid)]]
    if sequential:
        assert independent_top_scores is not None
        grid = as_served(fixed_sequence_grid(independent_top_scores, len(top_scores), max_error, confidence))
        p_values = abstention_p_values(top_scores, correct, max_error, grid)
        failed = np.flatnonzero(p_values > share * delta)
        accepted += [float(t) for t in grid[: len(grid) if not len(failed) else int(failed[0])]]
    if not accepted:
        raise GuaranteeError(
            f"no threshold keeps the error among answered examples at most {max_error:g} with confidence "
            f"{confidence:g} on these {len(top_scores)} held-out examples; allow a larger error or add examples"
        )
    threshold = min(accepted)
    answered = np.asarray(top_scores) >= threshold
    return {
        "threshold": threshold,
        "max_error": max_error,
        "confidence": confidence,
        "examples": len(top_scores),
        "method": "ltt_fixed_sequence_and_bonferroni" if sequential else "ltt_bonferroni",
        # What the held-out examples saw at that threshold (not the guarantee itself).
        "held_out_answered": round(float(answered.mean()), 6),
        "held_out_error": round(float((~np.asarray(correct, dtype=bool))[answered].mean()), 6),
    }


def drift_reference(probabilities: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """``handler.monitoring.reference``: the held-out top-label shares and confidence-bucket shares."""
    top = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    label_shares = shares(np.bincount(top, minlength=len(labels)))
    buckets = np.bincount([confidence_bucket(float(c)) for c in confidence], minlength=len(CONFIDENCE_EDGES) - 1)
    return {
        "examples": len(probabilities),
        "labels": {label: round(float(s), 6) for label, s in zip(labels, label_shares)},
        "confidence": [round(float(s), 6) for s in shares(buckets)],
    }


def config_of(fitted: dict[str, Any]) -> dict[str, Any]:
    """A fitted section as model-config.yaml stores it (what the handler's settings accept)."""
    if "thresholds" in fitted:
        return {key: fitted[key] for key in ("method", "examples", "thresholds")}
    return {key: fitted[key] for key in ("threshold", "max_error", "confidence", "examples")}


# Below this many held-out examples the trainer fits no guarantees (hflabels calibrate can, on
# labelled traffic): each half of the validation split must hold at least this many.


@dataclass(frozen=True)
class GuaranteeOptions:
    # None: lac for single-label models, fnr_control for multi-label ones.
    method: ConformalMethod | None = None
    coverages: tuple[float, ...] = DEFAULT_COVERAGES
    # Fit handler.abstention for this error among answered inputs (single-label); None: no abstention.
    abstain_error: float | None = None
    abstain_confidence: float = DEFAULT_ABSTAIN_CONFIDENCE
    # The share of the labelled examples held out from the temperature fit, for the guarantees.
    held_out_share: float = 0.5


def fit_guarantees(
    probabilities: np.ndarray,
    truth: np.ndarray,
    labels: Sequence[str],
    multi_label: bool,
    options: GuaranteeOptions,
    strict: bool = True,
    independent_top_scores: np.ndarray | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the handler sections to write: conformal, abstention, monitoring.reference; a report)
    from held-out calibrated scores. ``strict`` False (training): an abstention bound the data
    cannot meet is reported in ``abstention_skipped`` instead of raised, so the model is kept.
    ``independent_top_scores``: top scores of examples not held out, for the abstention grid."""
    probabilities = as_served(probabilities)
    if independent_top_scores is not None:
        independent_top_scores = as_served(independent_top_scores)
    method = options.method or (ConformalMethod.FNR_CONTROL if multi_label else ConformalMethod.LAC)
    if method.multi_label != multi_label:
        kind = "multi-label" if multi_label else "single-label"
        raise GuaranteeError(f"conformal method {method.value} does not apply to a {kind} model")
    conformal = fit_conformal(probabilities, truth, method, labels, options.coverages)
    sections: dict[str, Any] = {"conformal": config_of(conformal)}
    report: dict[str, Any] = {"conformal": conformal}
    if options.abstain_error is not None:
        if multi_label:
            raise GuaranteeError("--abstain-error applies to single-label models")
        correct = probabilities.argmax(axis=1) == truth
        top = probabilities.max(axis=1)
        try:
            abstention = fit_abstention(
                top, correct, options.abstain_error, options.abstain_confidence, independent_top_scores
            )
        except GuaranteeError as error:
            if strict:
                raise
            report["abstention_skipped"] = f"{error} (hflabels calibrate can fit it later)"
        else:
            sections["abstention"] = config_of(abstention)
            report["abstention"] = abstention
    reference = drift_reference(probabilities, labels)
    sections["monitoring"] = {"reference": reference}
    report["drift_reference"] = reference
    return sections, report


def merge_sections(handler: dict[str, Any], sections: dict[str, Any]) -> dict[str, Any]:
    """The handler section of model-config.yaml with freshly fitted sections in place of any
    earlier ones (an abstention fitted on other scores is dropped when none is fitted now)."""
    merged = {key: value for key, value in handler.items() if key not in ("conformal", "abstention")}
    for key in ("conformal", "abstention"):
        if key in sections:
            merged[key] = sections[key]
    monitoring = dict(merged.get("monitoring") or {})
    monitoring["reference"] = sections["monitoring"]["reference"]
    merged["monitoring"] = monitoring
    return merged
