"""Prediction sets, abstention and drift against their references (MAPIE, scipy) and their
guarantees over many seeded splits of the real VADER data.

The scores come from a real classifier on real data: TF-IDF + logistic regression (the real-data
issue's baseline) trained on a domain's training split, scoring its validation and test splits.
The guarantees hold for any scores, so a fast model proves them as well as a slow one; the served
path with a fine-tuned MiniLM is tests/test_e2e_guarantees.py.

Tolerances are derived, not guessed. For split conformal at rank k = ceil((n + 1)(1 - alpha)),
the coverage given the calibration draw is Beta(k, n + 1 - k) distributed, so one split's test
coverage has variance k(n + 1 - k) / ((n + 1)^2 (n + 2)) + c(1 - c) / m (m test examples); the
mean over S independent splits has that over S, and is held to 4 standard errors of the bounds
1 - alpha and 1 - alpha + 1 / (n + 1), which hold exactly over random permutations of a fixed pool.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr
from scipy.stats import binom

from handler.api.settings import ConformalMethod
from handler.postprocess.conformal import (
    aps_scores,
    aps_set,
    conformal_threshold,
    false_negative_rates,
    fnr_control_threshold,
    lac_scores,
    lac_set,
    minimum_examples,
    order_statistic_rank,
    risk_coverage,
)
from handler.postprocess.monitoring import (
    CONFIDENCE_EDGES,
    AlarmState,
    DriftWindow,
    confidence_bucket,
    jensen_shannon_distance,
    population_stability_index,
    smoothed,
)
from hflabels.training.guarantees import (
    ABSTENTION_GRID,
    GuaranteeError,
    GuaranteeOptions,
    as_served,
    fit_abstention,
    fit_conformal,
    fit_guarantees,
    split_for_guarantees,
)
from hflabels.vader_data import LABELS, fetch_sdist, read_corpora, stratified_splits

REPO = Path(__file__).resolve().parents[2]
LEVELS = (0.8, 0.9, 0.95)


def real_scores(domain: str) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, truth) of TF-IDF + LR trained on ``domain``'s training split, on its
    validation and test splits (3,182 movie sentences; 1,557 NYT ones)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    sentences = read_corpora(fetch_sdist(REPO / "build" / "downloads"), [domain])[domain]
    splits = stratified_splits(sentences, seed=42)
    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True), LogisticRegression(max_iter=2000)
    )
    model.fit([s.text for s in splits["train"]], [s.label for s in splits["train"]])
    held = splits["validation"] + splits["test"]
    assert list(model.classes_) == list(LABELS)
    return model.predict_proba([s.text for s in held]), np.array([LABELS.index(s.label) for s in held])


@pytest.fixture(scope="module")
def movies() -> tuple[np.ndarray, np.ndarray]:
    return real_scores("movies")


@pytest.fixture(scope="module")
def nyt() -> tuple[np.ndarray, np.ndarray]:
    return real_scores("nyt")


# ---- thresholds and sets against the definitions and MAPIE -------------------------------------


@pytest.mark.parametrize("n", [19, 50, 99, 137, 500])
@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2, 0.37])
def test_the_threshold_is_the_ceil_order_statistic(n, alpha):
    scores = np.random.default_rng(n).random(n)
    rank = math.ceil((n + 1) * (1 - alpha) - 1e-9)
    if rank > n:
        with pytest.raises(ValueError, match=f"at least {minimum_examples(alpha)} held-out examples"):
            conformal_threshold(scores, alpha)
        return
    assert order_statistic_rank(n, alpha) == rank
    assert conformal_threshold(scores, alpha) == np.sort(scores)[rank - 1]


def test_the_fewest_examples_for_a_level():
    assert [minimum_examples(a) for a in (0.05, 0.1, 0.2)] == [19, 9, 4]


class ProbabilityStub:
    """A fitted scikit-learn classifier whose probabilities are given: X holds row indices."""

    def __init__(self, probabilities: np.ndarray) -> None:
        self.probabilities = probabilities
        self.classes_ = np.arange(probabilities.shape[1])
        self.n_features_in_ = 1

    def fit(self, X, y):  # noqa: ANN001, N803
        return self

    def predict_proba(self, X):  # noqa: ANN001, N803
        return self.probabilities[np.asarray(X, dtype=int).ravel()]

    def predict(self, X):  # noqa: ANN001, N803
        return self.predict_proba(X).argmax(axis=1)

    def get_params(self, deep: bool = True) -> dict:
        return {}


def mapie_sets(probabilities, truth, calibration, test, score, levels=LEVELS):
    """MAPIE's thresholds and sets (SplitConformalClassifier, prefit)."""
    from mapie.classification import SplitConformalClassifier
    from sklearn.base import BaseEstimator, ClassifierMixin

    class Stub(ClassifierMixin, BaseEstimator, ProbabilityStub):
        def __init__(self) -> None:
            ProbabilityStub.__init__(self, probabilities)

    estimator = Stub()
    mapie = SplitConformalClassifier(
        estimator=estimator, confidence_level=list(levels), conformity_score=score, prefit=True, random_state=0
    )
    rows = np.arange(len(probabilities)).reshape(-1, 1)
    mapie.conformalize(rows[calibration], truth[calibration])
    params = None if score == "lac" else {"include_last_label": False}
    _, sets = mapie.predict_set(rows[test], conformity_score_params=params)
    return mapie._mapie_classifier.conformity_score_function_.quantiles_, sets


def non_random_aps():
    """MAPIE's APS with its calibration randomisation (u * p(true label)) left out: the
    non-randomised score this project serves; sets are built by MAPIE's own code."""
    from mapie.conformity_scores import APSConformityScore

    class NonRandomAPS(APSConformityScore):
        def get_conformity_scores(self, y, y_pred, y_enc=None, **kwargs):  # noqa: ANN001, ANN003
            scores, self.cutoff = self.get_true_label_cumsum_proba(y, y_pred, self.classes)
            return scores

    return NonRandomAPS()


@pytest.mark.parametrize("method", ["lac", "aps"])
def test_thresholds_and_sets_equal_mapies(movies, method):
    probabilities, truth = movies
    # n = 1001: (n + 1)(1 - alpha) is no integer at these levels, so no rounding decides the rank.
    calibration, test = np.arange(1001), np.arange(1001, len(truth))
    quantiles, expected = mapie_sets(probabilities, truth, calibration, test,
                                     "lac" if method == "lac" else non_random_aps())  # fmt: skip
    fitted = fit_conformal(probabilities[calibration], truth[calibration], ConformalMethod(method), LABELS, LEVELS)
    chosen = lac_set if method == "lac" else aps_set
    for position, level in enumerate(LEVELS):
        assert fitted["thresholds"][level] == pytest.approx(quantiles[position], abs=1e-12)
        ours = np.zeros((len(test), len(LABELS)), dtype=bool)
        for row, index in enumerate(test):
            ours[row, list(chosen(probabilities[index], fitted["thresholds"][level]))] = True
        differ = np.argwhere(ours != expected[:, :, position])
        assert not len(differ), f"{method} {level}: {differ[:5]}"
    # Sizes differ between levels: the comparison is not of all-label sets.
    assert len({int(expected[:, :, p].sum()) for p in range(len(LEVELS))}) == len(LEVELS)


def test_aps_sets_equal_mapies_for_its_own_randomised_thresholds(movies):
    # Stock MAPIE APS (randomised calibration scores): given its thresholds, our sets are its sets.
    probabilities, truth = movies
    calibration, test = np.arange(1001), np.arange(1001, len(truth))
    quantiles, expected = mapie_sets(probabilities, truth, calibration, test, "aps")
    for position in range(len(LEVELS)):
        for row, index in enumerate(test):
            ours = set(aps_set(probabilities[index], quantiles[position]))
            assert ours == set(np.flatnonzero(expected[row, :, position]))


def test_sets_are_best_first_and_aps_scores_are_ranked_mass():
    p = np.array([[0.2, 0.5, 0.3]])
    assert aps_scores(p, np.array([2]))[0] == pytest.approx(0.8)
    assert lac_scores(p, np.array([0]))[0] == pytest.approx(0.8)
    assert lac_set(p[0], 0.75) == (1, 2)
    assert aps_set(p[0], 0.79) == (1,)
    assert aps_set(p[0], 0.81) == (1, 2)
    # Never empty: the best label even when its own mass is over the threshold.
    assert aps_set(p[0], 0.3) == (1,)


# ---- coverage over many random splits of the real data -------------------------------------------


def split_coverage_bounds(n: int, m: int, alpha: float, splits: int) -> tuple[float, float]:
    rank = order_statistic_rank(n, alpha)
    beta_variance = rank * (n + 1 - rank) / ((n + 1) ** 2 * (n + 2))
    test_variance = (1 - alpha) * alpha / m
    tolerance = 4 * math.sqrt((beta_variance + test_variance) / splits)
    return 1 - alpha - tolerance, 1 - alpha + 1 / (n + 1) + tolerance


def set_members(probabilities: np.ndarray, threshold: float, method: str) -> np.ndarray:
    """Every input's set as a boolean matrix, vectorised (for 300 splits); equal to the served
    lac_set / aps_set, which the first splits check."""
    if method == "lac":
        return (1.0 - probabilities) - threshold <= 1e-8
    order = np.flip(np.argsort(probabilities, axis=1), axis=1)
    mass = np.cumsum(np.take_along_axis(probabilities, order, axis=1), axis=1)
    limit = np.maximum(threshold, mass[:, :1])
    members = np.zeros_like(probabilities, dtype=bool)
    np.put_along_axis(members, order, mass - limit <= 1e-8, axis=1)
    return members


@pytest.mark.parametrize("method", ["lac", "aps"])
def test_mean_coverage_over_random_splits_is_within_the_conformal_bounds(movies, method):
    probabilities, truth = movies
    n, splits = 500, 300
    rng = np.random.default_rng(7)
    coverage = {level: [] for level in LEVELS}
    sizes = []
    served_set = lac_set if method == "lac" else aps_set
    for split in range(splits):
        order = rng.permutation(len(truth))
        calibration, test = order[:n], order[n:]
        fitted = fit_conformal(probabilities[calibration], truth[calibration], ConformalMethod(method), LABELS)
        for level in LEVELS:
            members = set_members(probabilities[test], fitted["thresholds"][level], method)
            if split < 5:
                for row, i in enumerate(test):
                    assert set(served_set(probabilities[i], fitted["thresholds"][level])) == set(
                        np.flatnonzero(members[row]))  # fmt: skip
            coverage[level].append(members[np.arange(len(test)), truth[test]].mean())
            if level == 0.9:
                sizes.append(members.sum(axis=1).mean())
    for level in LEVELS:
        low, high = split_coverage_bounds(n, len(truth) - n, 1 - level, splits)
        assert low <= np.mean(coverage[level]) <= high, (method, level, np.mean(coverage[level]), low, high)
    # Informative sets: on average fewer than all three labels at 90%.
    assert np.mean(sizes) < 2.5


def test_class_conditional_coverage_holds_within_every_class(nyt):
    probabilities, truth = nyt
    n, splits = 700, 200
    rng = np.random.default_rng(11)
    per_class = {(level, c): [] for level in LEVELS for c in range(3)}
    counts = []
    for _ in range(splits):
        order = rng.permutation(len(truth))
        calibration, test = order[:n], order[n:]
        fitted = fit_conformal(probabilities[calibration], truth[calibration], ConformalMethod.CLASS_CONDITIONAL,
                               LABELS)  # fmt: skip
        counts.append([fitted["examples_per_label"][label] for label in LABELS])
        for level in LEVELS:
            thresholds = np.array([fitted["thresholds"][level][label] for label in LABELS])
            for c in range(3):
                members = test[truth[test] == c]
                per_class[level, c].append(np.mean([c in lac_set(probabilities[i], thresholds) for i in members]))
    mean_counts = np.mean(counts, axis=0)
    for (level, c), values in per_class.items():
        n_c = int(mean_counts[c])
        low, high = split_coverage_bounds(n_c, int((len(truth) - n) * n_c / n), 1 - level, splits)
        # The class's count varies a little between splits: its bounds are taken at the mean count.
        assert low - 0.01 <= np.mean(values) <= high + 0.01, (level, LABELS[c], np.mean(values), low, high)


def test_class_conditional_refuses_a_class_with_too_few_examples(movies):
    probabilities, truth = movies
    # The movie domain's neutral class is 2%: 300 examples hold about 6 of it.
    message = "label 'neutral' has [0-9]+ held-out examples, fewer than the [0-9]+ it needs"
    with pytest.raises(GuaranteeError, match=message):
        fit_conformal(probabilities[:300], truth[:300], ConformalMethod.CLASS_CONDITIONAL, LABELS)


# ---- multi-label: conformal risk control of the false-negative rate --------------------------------


def test_fnr_control_keeps_the_expected_false_negative_rate_at_most_alpha():
    # No real multi-label corpus ships here: seeded scores with label-dependent noise stand in; the
    # guarantee (E[FNR] <= alpha, and >= alpha - 2/(n + 1)) holds for any exchangeable data.
    rng = np.random.default_rng(3)
    total, labels = 6000, 5
    truth = rng.random((total, labels)) < 0.3
    scores = 1 / (1 + np.exp(-(2.5 * (truth - 0.5) + rng.normal(0, 1.2, (total, labels)))))
    n, splits, alpha = 400, 200, 0.1
    rates = []
    for _ in range(splits):
        order = rng.permutation(total)
        threshold = fnr_control_threshold(scores[order[:n]], truth[order[:n]], alpha)
        rates.append(false_negative_rates(scores[order[n:]], truth[order[n:]], threshold).mean())
    tolerance = 4 * np.std(rates) / math.sqrt(splits)
    assert alpha - 2 / (n + 1) - tolerance <= np.mean(rates) <= alpha + tolerance


# ---- abstention ---------------------------------------------------------------------------------------


def test_abstention_keeps_the_answered_error_within_its_bound_with_the_stated_confidence(movies):
    # The pool is the population: each calibration set is drawn from it with replacement, and the
    # chosen threshold's true error among answered inputs is computed on the whole pool.
    probabilities, truth = movies
    top, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == truth
    max_error, confidence, n, splits = 0.15, 0.9, 800, 300
    rng = np.random.default_rng(5)
    violations, answered = 0, []
    for _ in range(splits):
        rows = rng.integers(0, len(truth), n)
        threshold = fit_abstention(top[rows], correct[rows], max_error, confidence)["threshold"]
        kept = top >= threshold
        violations += (~correct[kept]).mean() > max_error
        answered.append(kept.mean())
    delta = 1 - confidence
    assert violations / splits <= delta + 3 * math.sqrt(delta * (1 - delta) / splits)
    # The bound is not met by abstaining on everything: most splits answer a real share.
    assert np.median(answered) > 0.2


def test_fixed_sequence_with_bonferroni_keeps_its_bound_and_answers_more_than_bonferroni_alone(movies):
    # As above, with the grid from an independent draw (the temperature's examples, in training).
    probabilities, truth = movies
    top, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == truth
    max_error, confidence, n, splits = 0.15, 0.9, 800, 300
    rng = np.random.default_rng(6)
    violations, answered, bonferroni = 0, [], []
    for _ in range(splits):
        rows, independent = rng.integers(0, len(truth), n), rng.integers(0, len(truth), n)
        fitted = fit_abstention(top[rows], correct[rows], max_error, confidence, top[independent])
        assert fitted["method"] == "ltt_fixed_sequence_and_bonferroni"
        kept = top >= fitted["threshold"]
        violations += (~correct[kept]).mean() > max_error
        answered.append(kept.mean())
        bonferroni.append((top >= fit_abstention(top[rows], correct[rows], max_error, confidence)["threshold"]).mean())
    delta = 1 - confidence
    assert violations / splits <= delta + 3 * math.sqrt(delta * (1 - delta) / splits)
    assert np.median(answered) > np.median(bonferroni)


def test_abstention_p_values_are_exact_binomial_tails():
    top = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.55])
    correct = np.array([True, True, False, True, False, True])
    fitted = fit_abstention(np.tile(top, 100), np.tile(correct, 100), 0.2, 0.9)
    threshold = fitted["threshold"]
    # Scores and grid as tried: rounded to the float32 the server answers in.
    top, grid = as_served(top), as_served(ABSTENTION_GRID)
    kept = np.tile(top, 100) >= threshold
    errors = int((~np.tile(correct, 100))[kept].sum())
    assert binom.cdf(errors, int(kept.sum()), 0.2) <= 0.1 / len(ABSTENTION_GRID)
    lower = grid[grid < threshold].max()
    below = np.tile(top, 100) >= lower
    assert binom.cdf(int((~np.tile(correct, 100))[below].sum()), int(below.sum()), 0.2) > 0.1 / len(ABSTENTION_GRID)


def test_no_threshold_at_that_error_is_an_error_saying_what_to_do():
    with pytest.raises(GuaranteeError, match="allow a larger error or add examples"):
        fit_abstention(np.full(30, 0.9), np.zeros(30, dtype=bool), 0.05)


def test_risk_coverage_equals_the_direct_computation():
    rng = np.random.default_rng(2)
    top = np.round(rng.random(200), 2)
    correct = rng.random(200) < top
    for threshold, share, error in risk_coverage(top, correct):
        kept = top >= threshold
        assert share == pytest.approx(kept.mean())
        assert error == pytest.approx((~correct[kept]).mean())


# ---- drift -----------------------------------------------------------------------------------------


FIXED = [
    ([0.5, 0.3, 0.2], [0.4, 0.4, 0.2]),
    ([0.1, 0.0, 0.9], [0.3, 0.3, 0.4]),
    ([1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]),
]


@pytest.mark.parametrize(("observed", "reference"), FIXED)
def test_psi_and_js_equal_scipys(observed, reference):
    p, q = smoothed(observed), smoothed(reference)
    assert population_stability_index(observed, reference) == pytest.approx(
        float(np.sum(rel_entr(p, q) + rel_entr(q, p))), rel=1e-12
    )
    assert jensen_shannon_distance(observed, reference) == pytest.approx(float(jensenshannon(p, q, base=2)), rel=1e-9)


def test_windows_are_consecutive_and_buckets_are_half_open():
    assert [confidence_bucket(x) for x in (0.0, 0.49, 0.5, 0.949, 0.95, 0.99, 1.0)] == [0, 0, 1, 5, 6, 7, 7]
    assert len(CONFIDENCE_EDGES) == 9
    window = DriftWindow(3, labels=2, representations=True)
    done = [window.add(label, confidence, np.full(2, float(i))) for i, (label, confidence) in
            enumerate([(0, 0.99), (1, 0.6), (1, 0.7), (0, 0.55)])]  # fmt: skip
    assert done[0] is None and done[1] is None and done[3] is None
    assert done[2].label_counts.tolist() == [1, 2]
    assert done[2].bucket_counts.tolist() == [0, 0, 1, 1, 0, 0, 0, 1]
    assert done[2].representations.tolist() == [[0, 0], [1, 1], [2, 2]]
    assert window.count == 1 and window.label_counts.tolist() == [1, 0]  # the next window began
    # An answer without a representation leaves the input test out of that window.
    partial = DriftWindow(2, labels=2, representations=True)
    partial.add(0, 0.9, None)
    assert partial.add(1, 0.9, np.zeros(2)).representations is None


def test_the_alarm_rises_at_once_and_clears_after_quiet_windows():
    alarm = AlarmState(clear_windows=2)
    verdicts = [False, True, False, True, False, False, False]
    changes = [alarm.update(v) for v in verdicts]
    raised = []
    alarm = AlarmState(clear_windows=2)
    for verdict in verdicts:
        alarm.update(verdict)
        raised.append(alarm.raised)
    assert raised == [False, True, True, True, True, False, False]
    assert changes == [False, True, False, False, False, True, False]


# ---- fitting on held-out data ----------------------------------------------------------------------


def test_the_held_out_split_is_stratified_and_disjoint(movies):
    _, truth = movies
    scaling, held_out = split_for_guarantees(truth, 0.5, seed=1)
    assert not set(scaling) & set(held_out) and len(scaling) + len(held_out) == len(truth)
    for c in range(3):
        assert abs((truth[held_out] == c).sum() - (truth == c).sum() / 2) <= 1


def test_fitted_sections_load_as_handler_settings(movies):
    from handler.api.settings import HandlerSettings

    probabilities, truth = movies
    sections, report = fit_guarantees(probabilities, truth, LABELS, False, GuaranteeOptions(abstain_error=0.1))
    settings = HandlerSettings.from_mapping(sections)
    assert settings.conformal.levels() == LEVELS
    assert settings.abstention.max_error == 0.1
    assert sum(settings.monitoring.reference.labels.values()) == pytest.approx(1.0, abs=1e-5)
    assert report["conformal"]["examples"] == len(truth)
    with pytest.raises(GuaranteeError, match="does not apply to a single-label model"):
        fit_guarantees(probabilities, truth, LABELS, False, GuaranteeOptions(method=ConformalMethod.FNR_CONTROL))


def test_thresholds_fitted_on_plateaus_decide_the_float32_served_scores_as_the_fit_did():
    # A top-label curve serves whole plateaus of one value (here 9/14, 0.7, 0.8, 13/15). Fitted on
    # float64 scores, a threshold landing on 9/14 sits a rounding above its float32 served score,
    # and every answer on that plateau abstained (and fell out of its set) though the fit answered it.
    rng = np.random.default_rng(0)
    plateaus = np.array([9 / 14, 0.7, 0.8, 13 / 15])
    top = plateaus[rng.integers(0, len(plateaus), 2000)]
    probabilities = np.stack([top, 1.0 - top], axis=1)
    truth = np.where(rng.random(2000) < top, 0, 1)
    served = probabilities.astype(np.float32)
    independent = plateaus[rng.integers(0, len(plateaus), 2000)]
    for error in (0.2, 0.25, 0.3):
        for grid_from in (None, independent):
            options = GuaranteeOptions(abstain_error=error)
            sections, report = fit_guarantees(probabilities, truth, ("a", "b"), False, options,
                                              independent_top_scores=grid_from)  # fmt: skip
            threshold = sections["abstention"]["threshold"]
            answered = np.array([float(row.max()) >= threshold for row in served])
            assert answered.mean() == pytest.approx(report["abstention"]["held_out_answered"], abs=1e-6)
        for level, q in sections["conformal"]["thresholds"].items():
            # The threshold is the k-th smallest fitted score, so at least k examples are covered.
            covered = sum(t in lac_set(row, q) for row, t in zip(served, truth))
            assert covered >= order_statistic_rank(len(truth), 1 - level), (error, level)


def test_evaluate_reports_the_realised_guarantees_and_the_curve_is_plotted(movies, tmp_path):
    from handler.api.settings import HandlerSettings
    from hflabels.evaluation import realised_guarantees
    from hflabels.plotting import plot_risk_coverage
    from hflabels.training.data import Example

    probabilities, truth = movies
    half = len(truth) // 2
    sections, _ = fit_guarantees(probabilities[:half], truth[:half], LABELS, False, GuaranteeOptions(abstain_error=0.2))
    settings = HandlerSettings.from_mapping(sections)
    served = [dict(zip(LABELS, map(float, row))) for row in probabilities[half:]]
    examples = [Example(text="", label=LABELS[t], line=i) for i, t in enumerate(truth[half:])]
    found = realised_guarantees(served, examples, list(LABELS), settings)
    test_p, test_truth = probabilities[half:], truth[half:]
    kept = test_p.max(axis=1) >= settings.abstention.threshold
    assert found["abstention"]["answered"] == pytest.approx(kept.mean(), abs=1e-6)
    assert found["abstention"]["error_answered"] == pytest.approx(
        (test_p.argmax(axis=1) != test_truth)[kept].mean(), abs=1e-6
    )
    threshold = settings.conformal.thresholds[0.9]
    covered = np.mean([t in lac_set(row, threshold) for row, t in zip(test_p, test_truth)])
    assert found["prediction_sets"]["levels"]["0.9"]["coverage"] == pytest.approx(covered, abs=1e-6)
    curve = found["risk_coverage"]
    assert curve[-1]["answered"] == 1.0
    assert curve[-1]["error"] == pytest.approx((test_p.argmax(axis=1) != test_truth).mean(), abs=1e-6)
    assert all(a["answered"] <= b["answered"] for a, b in zip(curve, curve[1:]))
    plot_risk_coverage(found, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 10_000
