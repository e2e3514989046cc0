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
                      n_blocks: int = 40, seed: int = 0) -> tuple[float, float]:
    """95% CI of median(ref)/median(other) by a paired block bootstrap over interleaved rounds.

    Both arrays come from the same rounds (A B, B A, ...), so resampling rounds together keeps
    the pairing. Timing noise comes in bursts (a neighbour's load, frequency changes), so rounds
    are resampled in ``n_blocks`` contiguous blocks rather than one by one; a burst then widens
    the interval instead of hiding in it. Fast models are first binned (medians of consecutive
    runs); the median of bin medians is not the raw median, so the interval is re-centred on the
    raw ratio (its relative width kept), which it then always contains.
    """
    ref_ms, other_ms = np.asarray(ref_ms), np.asarray(other_ms)
    ref, other = _binned(ref_ms), _binned(other_ms)
    nb = min(n_blocks, len(ref), len(other))
    size = min(len(ref), len(other)) // nb
    pairs = np.stack([ref[: nb * size], other[: nb * size]]).reshape(2, nb, size)
    pick = np.random.default_rng(seed).integers(0, nb, (n_boot, nb))
    sample = pairs[:, pick].reshape(2, n_boot, nb * size)  # whole blocks, pairs kept together
    ratios = np.median(sample[0], axis=1) / np.median(sample[1], axis=1)
    lo, hi = np.percentile(ratios, [2.5, 97.5])
    binned = float(np.median(pairs[0]) / np.median(pairs[1]))
    raw = float(np.median(ref_ms) / np.median(other_ms))
    scale = raw / binned
    lo, hi = min(lo * scale, raw), max(hi * scale, raw)
    return float(lo), float(hi)


SESSION_RESOLUTION = 0.01  # see with_session_resolution


def with_session_resolution(speedup: float, ci: tuple[float, float],
                            resolution: float = SESSION_RESOLUTION) -> tuple[float, float]:
    """Widen a timing CI to at least ±``resolution`` (relative) around ``speedup``.

    The bootstrap sees only the noise within one session. Two ONNX Runtime sessions of the *same*
    file also differ by a fixed amount (where their buffers landed in memory): ten ``compare A A``
    runs here gave speed-ups from 0.998 to 1.007, each with a bootstrap CI a few 0.1% wide that
    excluded 1 half the time. Differences under 1% are therefore not resolved, and the reported
    interval says so.

    >>> [round(v, 5) for v in with_session_resolution(1.007, (1.0067, 1.0073))]
    [0.99693, 1.01707]
    >>> with_session_resolution(2.0, (1.9, 2.1))
    (1.9, 2.1)
    """
    return min(ci[0], speedup * (1 - resolution)), max(ci[1], speedup * (1 + resolution))


def _binned(ms: np.ndarray, max_points: int = 2000) -> np.ndarray:
    """Medians of consecutive runs, so that at most ``max_points`` remain (fast models give
    100,000 runs in 2 s; the bootstrap only needs the time structure).
    """
    k = -(-len(ms) // max_points)
    if k <= 1:
        return ms
    return np.median(ms[: len(ms) // k * k].reshape(-1, k), axis=1)


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
