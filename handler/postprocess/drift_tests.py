"""Two-sample tests for drift, with p-values: pure functions (numpy only).

Inputs: a kernel maximum mean discrepancy (MMD) test between a window of served inputs'
representations and a reference sample of held-out ones (Gretton et al. 2012, as Alibi Detect's
``MMDDrift`` computes it: a Gaussian RBF kernel whose bandwidth is the median heuristic on the
reference, the unbiased MMD^2 estimate, and a permutation test).

Outputs: a chi-square test of homogeneity between a window's counts (top labels, confidence
buckets) and the reference's counts, categories with small expected counts merged first.

A p-value is the probability, were the window drawn like the reference, of a statistic at least as
large; a window tested at level alpha rejects with probability at most alpha when nothing drifted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# A chi-square category needs this many expected counts in each sample for the chi-square
# approximation to hold (Cochran's rule); sparser categories are merged together.
MIN_EXPECTED = 5.0


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances, rows of ``a`` against rows of ``b`` (float64, >= 0)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    found = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(found, 0.0)


def median_bandwidth(reference: np.ndarray) -> float:
    """The RBF bandwidth sigma of the median heuristic, as Alibi Detect infers it from its reference
    (``sigma_median``): sqrt(median of the off-diagonal pairwise squared distances / 2)."""
    distances = squared_distances(reference, reference)
    n = len(distances)
    off_diagonal = np.sort(distances[~np.eye(n, dtype=bool)])
    sigma = math.sqrt(0.5 * float(off_diagonal[len(off_diagonal) // 2 - 1 + len(off_diagonal) % 2]))
    return sigma if sigma > 0 else 1.0


def rbf_kernel(a: np.ndarray, b: np.ndarray, bandwidth: float) -> np.ndarray:
    return np.exp(-squared_distances(a, b) / (2.0 * bandwidth * bandwidth))


def unbiased_mmd2(kernel: np.ndarray, first: int) -> float:
    """The unbiased MMD^2 estimate from the joint kernel matrix of a sample of ``first`` rows
    followed by another: mean of K(x, x') (x != x') + mean of K(y, y') (y != y') - 2 mean K(x, y)."""
    n, m = first, len(kernel) - first
    k_xx, k_yy, k_xy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float(sum_xx / (n * (n - 1)) + sum_yy / (m * (m - 1)) - 2.0 * k_xy.mean())


@dataclass(frozen=True)
class TwoSampleResult:
    statistic: float
    p_value: float


def mmd_permutation_test(
    reference: np.ndarray, window: np.ndarray, bandwidth: float, permutations: int, seed: int = 0
) -> TwoSampleResult:
    """MMD^2 of ``window`` against ``reference`` and its permutation p-value,
    (1 + #{permuted MMD^2 >= observed}) / (1 + permutations): valid at any number of permutations
    (the smallest p-value it can give is 1 / (1 + permutations))."""
    joined = np.concatenate([np.asarray(reference, dtype=np.float64), np.asarray(window, dtype=np.float64)])
    n, total = len(reference), len(joined)
    m = total - n
    kernel = rbf_kernel(joined, joined, bandwidth)
    np.fill_diagonal(kernel, 0.0)
    observed = unbiased_mmd2(kernel, n)
    # Each permutation as an indicator of which rows form the second sample: with the diagonal
    # zeroed, its within sums are quadratic forms, so all permutations cost one matrix product.
    rng = np.random.default_rng(seed)
    chosen = np.zeros((permutations, total))
    for row in range(permutations):
        chosen[row, rng.choice(total, size=m, replace=False)] = 1.0
    row_sums = kernel.sum(1)
    everything = row_sums.sum()
    within_second = np.einsum("pi,pi->p", chosen @ kernel, chosen)
    across = chosen @ row_sums - within_second
    within_first = everything - 2.0 * across - within_second
    permuted = within_first / (n * (n - 1)) + within_second / (m * (m - 1)) - 2.0 * across / (n * m)
    # A tolerance for rounding: the observed split computed the same way may differ in its last bits.
    exceeded = int(np.sum(permuted >= observed - 1e-12 * max(1.0, abs(observed))))
    return TwoSampleResult(observed, (1 + exceeded) / (1 + permutations))


def merged_categories(window: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both samples' counts with every category whose smaller expected count is under
    ``MIN_EXPECTED`` merged into one (kept apart only if the merged one is itself large enough)."""
    window, reference = np.asarray(window, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    pooled = window + reference
    total_w, total_r = window.sum(), reference.sum()
    expected_small = np.minimum(pooled * total_w, pooled * total_r) / max(total_w + total_r, 1.0)
    sparse = expected_small < MIN_EXPECTED
    kept_w, kept_r = list(window[~sparse]), list(reference[~sparse])
    if sparse.any():
        kept_w.append(window[sparse].sum())
        kept_r.append(reference[sparse].sum())
    return np.array(kept_w), np.array(kept_r)


def chi_square_sf(statistic: float, dof: int) -> float:
    """P(chi-square with ``dof`` degrees of freedom >= ``statistic``), exact for integer dof (the
    closed forms of the regularised upper incomplete gamma at half-integers)."""
    if dof < 1:
        return 1.0
    if statistic <= 0:
        return 1.0
    half = statistic / 2.0
    if dof % 2 == 0:
        term, total = 1.0, 1.0
        for i in range(1, dof // 2):
            term *= half / i
            total += term
        return min(1.0, math.exp(-half) * total)
    total = math.erfc(math.sqrt(half))
    # exp(-x/2) sum_{i=1}^{(k-1)/2} (x/2)^(i-1/2) / Gamma(i+1/2)
    term = math.sqrt(half) / math.gamma(1.5)
    for i in range(1, (dof - 1) // 2 + 1):
        if i > 1:
            term *= half / (i - 0.5)
        total += math.exp(-half) * term
    return min(1.0, total)


def chi_square_homogeneity(window: Sequence[float], reference: Sequence[float]) -> TwoSampleResult:
    """Pearson's chi-square test that two samples' counts over the same categories come from one
    distribution (what ``scipy.stats.chi2_contingency(..., correction=False)`` gives on the merged
    2 x k table)."""
    observed_w, observed_r = merged_categories(np.asarray(window), np.asarray(reference))
    keep = (observed_w + observed_r) > 0
    observed_w, observed_r = observed_w[keep], observed_r[keep]
    if len(observed_w) < 2 or observed_w.sum() == 0 or observed_r.sum() == 0:
        return TwoSampleResult(0.0, 1.0)
    table = np.stack([observed_w, observed_r])
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    return TwoSampleResult(statistic, chi_square_sf(statistic, len(observed_w) - 1))
