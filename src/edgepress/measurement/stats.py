"""Statistics for honest comparisons: Wilson CI, exact McNemar, bootstrap speed-up CI, SQNR.

Example:
    >>> lo, hi = wilson_ci(900, 1000)
    >>> round(lo, 3), round(hi, 3)
    (0.88, 0.917)
    >>> mcnemar_exact([True, True, False], [True, True, False])
    1.0
"""

from __future__ import annotations

import math

import numpy as np

SQNR_CAP_DB = 300.0  # identical outputs: report this rather than +inf (JSON has no infinity)


def wilson_ci(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (well behaved near 0 and 1)."""
    if n == 0:
        return (0.0, 1.0)
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(correct_a, correct_b) -> float:  # noqa: ANN001
    """Exact (binomial) two-sided McNemar p-value on paired per-example correctness."""
    from scipy.stats import binomtest

    a, b = np.asarray(correct_a, bool), np.asarray(correct_b, bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(only_a, only_a + only_b, 0.5).pvalue)


def bootstrap_speedup(ref_ms: np.ndarray, other_ms: np.ndarray, *, n_boot: int = 2000,
                      seed: int = 0) -> tuple[float, float]:
    """95% percentile CI of median(ref)/median(other), resampling interleaved rounds in pairs.

    Both arrays come from the same rounds (A B A B ...), so a round's drift hits both; resampling
    rounds together keeps that pairing.
    """
    ref, other = np.asarray(ref_ms), np.asarray(other_ms)
    n = min(len(ref), len(other))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    ratios = np.median(ref[:n][idx], axis=1) / np.median(other[:n][idx], axis=1)
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    return float(lo), float(hi)


def sqnr_db(reference: np.ndarray, other: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio of ``other`` against ``reference``, in dB."""
    ref = np.asarray(reference, np.float64)
    noise = float(((ref - np.asarray(other, np.float64)) ** 2).sum())
    signal = float((ref ** 2).sum())
    if noise == 0:
        return SQNR_CAP_DB
    if signal == 0:
        return -SQNR_CAP_DB
    return min(SQNR_CAP_DB, 10 * math.log10(signal / noise))
