"""The drift tests' statistics and p-values against scipy (the oracle) and their stated error rate."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import cdist

from handler.postprocess.drift_tests import (
    chi_square_homogeneity,
    chi_square_sf,
    median_bandwidth,
    merged_categories,
    mmd_permutation_test,
    rbf_kernel,
    squared_distances,
    unbiased_mmd2,
)


def alibi_mmd2(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    """Alibi Detect's mmd2 (utils/pytorch/distance.py) written out term by term."""
    n, m = len(x), len(y)

    def k(a, b):
        return math.exp(-float(np.sum((a - b) ** 2)) / (2 * bandwidth**2))

    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(a, b) for a in x for b in y) / (n * m)
    return xx + yy - 2 * xy


def test_squared_distances_equal_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 5)), rng.normal(size=(4, 5))
    np.testing.assert_allclose(squared_distances(a, b), cdist(a, b, "sqeuclidean"), rtol=1e-10, atol=1e-12)


def test_median_bandwidth_is_half_the_median_squared_distance_rooted():
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(9, 3))
    distances = cdist(reference, reference, "sqeuclidean")
    # Alibi Detect's sigma_median: zeros of the diagonal first, then the lower middle element.
    flat = np.sort(distances.ravel())
    n = len(reference)
    expected = math.sqrt(0.5 * flat[n + (n * n - n) // 2 - 1])
    assert median_bandwidth(reference) == pytest.approx(expected, rel=1e-12)


def test_unbiased_mmd2_equals_the_term_by_term_formula():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(8, 3)), rng.normal(0.5, 1.0, size=(6, 3))
    joined = np.concatenate([x, y])
    assert unbiased_mmd2(rbf_kernel(joined, joined, 1.3), 8) == pytest.approx(alibi_mmd2(x, y, 1.3), rel=1e-10)
    assert mmd_permutation_test(x, y, 1.3, 10).statistic == pytest.approx(alibi_mmd2(x, y, 1.3), rel=1e-10)


@pytest.mark.parametrize("shift", [0.0, 0.8, 2.0])
def test_permutation_p_value_matches_scipys_exact_permutation_test(shift):
    # Small samples, so scipy can enumerate every split: its exact p-value against ours from
    # 20,000 random permutations, within 4 binomial standard errors.
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(6, 2)), rng.normal(shift, 1.0, size=(5, 2))
    bandwidth = 1.0

    rows = np.concatenate([x, y])

    # scipy permutes 1-D samples: row numbers stand for the 2-D rows.
    def statistic(first, second):
        joined = rows[np.concatenate([first, second]).astype(int)]
        return unbiased_mmd2(rbf_kernel(joined, joined, bandwidth), len(first))

    exact = stats.permutation_test(
        (np.arange(6), np.arange(6, 11)), statistic, permutation_type="independent", alternative="greater",
        n_resamples=np.inf, vectorized=False,
    ).pvalue  # fmt: skip
    ours = mmd_permutation_test(x, y, bandwidth, 20_000, seed=4).p_value
    splits = math.comb(11, 5)
    assert splits < 20_000  # scipy enumerated them all
    assert abs(ours - exact) <= 4 * math.sqrt(exact * (1 - exact) / 20_000) + 1 / 20_000


def test_mmd_false_alarm_rate_is_within_its_level_and_power_is_high_on_a_shift():
    # 300 windows drawn like the reference: rejections at 0.05 within the binomial bound; a mean
    # shift of half a standard deviation in 8 dimensions rejected nearly always.
    # The level holds over draws of both samples (a fixed reference makes it hold on average
    # over references), so each null trial draws its own reference.
    rng = np.random.default_rng(5)
    null = []
    for seed in range(300):
        reference = rng.normal(size=(120, 8))
        window = rng.normal(size=(60, 8))
        null.append(mmd_permutation_test(reference, window, median_bandwidth(reference), 99, seed=seed).p_value)
    rate = np.mean(np.array(null) <= 0.05)
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 300)
    # Uniform under the null: not piled at 1 either (a test that never rejects would pass the bound).
    assert 0.4 <= np.mean(np.array(null) <= 0.5) <= 0.6
    reference = rng.normal(size=(120, 8))
    bandwidth = median_bandwidth(reference)
    shifted = [
        mmd_permutation_test(reference, rng.normal(0.5, 1.0, size=(60, 8)), bandwidth, 99, seed=s).p_value
        for s in range(20)
    ]
    assert np.mean(np.array(shifted) <= 0.05) >= 0.9


def test_chi_square_sf_equals_scipy():
    for dof, x in itertools.product(range(1, 31), [0.01, 0.5, 1.0, 3.3, 10.0, 25.0, 60.0, 150.0]):
        assert chi_square_sf(x, dof) == pytest.approx(stats.chi2.sf(x, dof), rel=1e-9, abs=1e-300), (dof, x)
    assert chi_square_sf(0.0, 3) == 1.0


def test_chi_square_homogeneity_equals_scipy_on_the_merged_table():
    window = np.array([120, 60, 15, 3, 2, 0])
    reference = np.array([300, 250, 40, 6, 3, 1])
    merged_w, merged_r = merged_categories(window, reference)
    # The three sparse categories (expected < 5 in the window) merged into one.
    assert list(merged_w) == [120, 60, 15, 5] and list(merged_r) == [300, 250, 40, 10]
    expected = stats.chi2_contingency(np.stack([merged_w, merged_r]), correction=False)
    found = chi_square_homogeneity(window, reference)
    assert found.statistic == pytest.approx(expected.statistic, rel=1e-10)
    assert found.p_value == pytest.approx(expected.pvalue, rel=1e-8)


def test_chi_square_homogeneity_holds_its_level_on_windows_drawn_like_the_reference():
    rng = np.random.default_rng(6)
    shares = np.array([0.55, 0.3, 0.1, 0.04, 0.01])
    reference = rng.multinomial(600, shares)
    p_values = np.array([chi_square_homogeneity(rng.multinomial(200, shares), reference).p_value for _ in range(2000)])
    # The reference is fixed, so windows are not independent of it; the rate is over both draws
    # only on average: a loose bound here, the served alarm's rate is measured on real data.
    assert np.mean(p_values <= 0.01) <= 0.03
    assert chi_square_homogeneity(rng.multinomial(200, [0.2, 0.3, 0.3, 0.1, 0.1]), reference).p_value < 1e-6
