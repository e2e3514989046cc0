"""Latency: ``perf_counter_ns`` around the runtime call only, interleaved across models.

Protocol: warm-up, then round-robin rounds (A B C, B C A, C A B, ...) until every model has at least
``min_runs`` timed runs and ``min_seconds`` of timed inference. Interleaving makes machine drift
(frequency, a neighbour's load) hit every model alike, so their ratio is fair.

A shared host also has *disturbed spells*: for seconds at a time every run is 10-20% slower (a
neighbour on the same core), so the median of two separate 2-second sessions can differ by 18%.
The rounds are therefore grouped into blocks (≥ 20 rounds and ≥ 0.2 s). A block is *disturbed*
by what the models **share**: each model's block median is divided by that model's robust
reference (the lower quartile of its block medians, not the minimum, which one lucky block
sets), and the block is disturbed when the median of these ratios over the models is over
``QUIET_TOLERANCE``. Noise in one model alone then cannot cut off that model's slow blocks only
(which biased its ratio: +4.4% in a simulation with a true ratio of 2), while a spell that slows
every model is still left out. Timing goes on (up to ``MAX_FACTOR`` times the budget) until the
quiet blocks alone meet both minimums; the median and p90 are of the runs in quiet blocks. When
the host is never quiet long enough, every run counts and the record says so
(``quiet_fallback``) with the real quiet fraction. The record always keeps the median and p90 of
all runs. Quiet blocks are the same rounds for every model, so speed-ups stay paired.

Example:
    >>> t = time_interleaved([lambda: sum(range(1000))], min_runs=10, min_seconds=0.01)
    >>> len(t[0].ms) >= 10
    True
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MIN_RUNS, MIN_SECONDS, WARMUP_SECONDS, MIN_WARMUP = 200, 2.0, 0.25, 10
BLOCK_ROUNDS, BLOCK_SECONDS = 20, 0.2  # a block: at least this many rounds and seconds
QUIET_TOLERANCE = 0.05  # a block is disturbed when the models' shared slow-down is over 5%
REFERENCE_QUANTILE = 25  # each model's reference: this percentile of its block medians
MAX_FACTOR = 3  # time at most this many times the budget looking for quiet blocks
SECONDS_ENV = "EDGEPRESS_LATENCY_SECONDS"  # overrides MIN_SECONDS (the test suite sets 0.25)


def timed_seconds() -> float:
    """Timed seconds per model: ``$EDGEPRESS_LATENCY_SECONDS`` if set, else :data:`MIN_SECONDS`."""
    raw = os.environ.get(SECONDS_ENV)
    if not raw:
        return MIN_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        from ..errors import InputError

        raise InputError(f"{SECONDS_ENV}={raw!r} must be a positive number of seconds")
    return value


@dataclass
class Timing:
    """Timed runs (ms, in order) of one model, which of them fell in quiet blocks, how many
    warm-up runs preceded them, and whether the host was never quiet long enough (``fallback``:
    every run is then kept, and the quiet mask still says which were quiet).
    """

    ms: np.ndarray
    warmup: int
    quiet: np.ndarray  # bool per run: in a quiet block
    fallback: bool = False

    @property
    def kept(self) -> np.ndarray:
        """The runs the median is taken over: those in quiet blocks, or all on fallback."""
        return self.ms if self.fallback else self.ms[self.quiet]

    def summary(self) -> dict:
        """The contract's ``latency_ms`` record, plus the all-runs figures and how quiet the
        host was: ``quiet_fraction`` (runs in quiet blocks / all runs, the real figure even on
        fallback), ``quiet_seconds`` (timed seconds in quiet blocks) and ``quiet_fallback``.

        >>> t = Timing(np.array([1.0, 1.0, 2.0, 2.0]), 10, np.array([True, True, False, False]),
        ...            fallback=True)
        >>> s = t.summary()
        >>> s["median"], s["quiet_fraction"], s["quiet_fallback"], s["quiet_seconds"]
        (1.5, 0.5, True, 0.002)
        """
        kept = self.kept
        return {"median": float(np.median(kept)), "p90": float(np.percentile(kept, 90)),
                "runs": int(len(kept)), "warmup": int(self.warmup),
                "mean": float(kept.mean()), "min": float(self.ms.min()),
                "median_all": float(np.median(self.ms)),
                "p90_all": float(np.percentile(self.ms, 90)), "runs_all": int(len(self.ms)),
                "quiet_fraction": float(self.quiet.sum() / len(self.ms)),
                "quiet_seconds": float(self.ms[self.quiet].sum() / 1e3),
                "quiet_fallback": bool(self.fallback)}


def _warmup(fn: Callable[[], object]) -> int:
    n, t0 = 0, time.perf_counter()
    while n < MIN_WARMUP or time.perf_counter() - t0 < WARMUP_SECONDS:
        fn()
        n += 1
    return n


def quiet_blocks(block_medians: np.ndarray, tolerance: float = QUIET_TOLERANCE) -> np.ndarray:
    """Which blocks are quiet: the models' shared slow-down is within ``tolerance``.

    Each model's block medians are divided by its reference (the lower quartile of them); a
    block's slow-down is the median of these ratios over the models. One model's own noise moves
    that median by at most half (two models) and not at all with three or more, while a spell
    that slows every model moves it fully.

    Args:
        block_medians: ``(models, blocks)`` medians of each model's runs in each block.

    >>> quiet_blocks(np.array([[1.0, 1.02, 1.2, 1.01], [2.0, 2.2, 2.4, 2.03]])).tolist()
    [True, False, False, True]
    >>> # one noisy model among three does not make a block disturbed
    >>> quiet_blocks(np.array([[1.0, 1.0, 1.0], [1.0, 1.3, 1.0], [2.0, 2.0, 2.0]])).tolist()
    [True, True, True]
    """
    m = np.asarray(block_medians, np.float64)
    ref = np.percentile(m, REFERENCE_QUANTILE, axis=1, keepdims=True)
    return np.median(m / ref, axis=0) <= 1.0 + tolerance


class _Blocks:
    """Rounds grouped into blocks as they are timed, with each block's per-model medians and
    timed totals, so the quiet runs so far are known without re-reading every run.
    """

    def __init__(self) -> None:
        self.bounds = [0]  # round index where each block starts (and the open block's start)
        self.medians: list[np.ndarray] = []  # per closed block: each model's median (ns)
        self.totals: list[np.ndarray] = []  # per closed block: each model's timed ns
        self.t_start = time.perf_counter()

    def maybe_close(self, times: list[list[int]], rounds: int) -> bool:
        if rounds - self.bounds[-1] < BLOCK_ROUNDS or (
                time.perf_counter() - self.t_start < BLOCK_SECONDS):
            return False
        block = np.array([t[self.bounds[-1]:rounds] for t in times])
        self.medians.append(np.median(block, axis=1))
        self.totals.append(block.sum(axis=1))
        self.bounds.append(rounds)
        self.t_start = time.perf_counter()
        return True

    def quiet(self) -> np.ndarray:
        """Per closed block: quiet or not."""
        return quiet_blocks(np.stack(self.medians, axis=1))

    def enough(self, min_runs: int, goal_ns: int) -> bool:
        """Whether the quiet blocks hold ``min_runs`` rounds and ``goal_ns`` for every model."""
        q = self.quiet()
        rounds = np.diff(self.bounds)[q].sum()
        return bool(rounds >= min_runs and np.stack(self.totals)[q].sum(axis=0).min() >= goal_ns)

    def mask(self) -> np.ndarray:
        """Per round: in a quiet block."""
        return np.repeat(self.quiet(), np.diff(self.bounds))


def time_interleaved(fns: list[Callable[[], object]], *, min_runs: int = MIN_RUNS,
                     min_seconds: float | None = None) -> list[Timing]:
    """Time each zero-argument callable, round-robin, until the runs in quiet blocks meet both
    minimums for all, or every model has ``MAX_FACTOR`` times the budget (``min_seconds`` None:
    :func:`timed_seconds`). Without enough quiet runs by then, all runs count.
    """
    if min_seconds is None:
        min_seconds = timed_seconds()
    warm = [_warmup(fn) for fn in fns]
    times: list[list[int]] = [[] for _ in fns]
    spent = [0] * len(fns)
    goal_ns, cap_ns = int(min_seconds * 1e9), int(MAX_FACTOR * min_seconds * 1e9)
    clock = time.perf_counter_ns
    n, r = len(fns), 0
    blocks = _Blocks()
    while True:
        # rotate the order every round (A B, B A, ...) so no model always runs right after another
        for i in [(r + k) % n for k in range(n)]:
            fn = fns[i]
            t0 = clock()
            fn()
            dt = clock() - t0
            times[i].append(dt)
            spent[i] += dt
        r += 1
        if blocks.maybe_close(times, r) and min(spent) >= goal_ns and r >= min_runs:
            if blocks.enough(min_runs, goal_ns) or min(spent) >= cap_ns:
                break
    quiet = blocks.mask()  # the loop only stops when a block closes: every round is in one
    fallback = not blocks.enough(min_runs, goal_ns)  # never quiet long enough: report every run
    return [Timing(np.asarray(t, np.float64) / 1e6, w, quiet, fallback)
            for t, w in zip(times, warm, strict=True)]


def fallback_warning(records: list[dict]) -> str | None:
    """One warning line when any record's latency fell back to every run (the host was never
    quiet long enough), else ``None``.

    >>> lat = {"quiet_fallback": True, "quiet_fraction": 0.31, "quiet_seconds": 0.62}
    >>> fallback_warning([{"variant": "cnn", "latency_ms": lat}])[:60]
    'warning: the host was never quiet long enough (cnn: 31% of r'
    """
    hit = [r for r in records if r.get("latency_ms", {}).get("quiet_fallback")]
    if not hit:
        return None
    lat = hit[0]["latency_ms"]
    return (f"warning: the host was never quiet long enough ({hit[0].get('variant', '?')}: "
            f"{lat['quiet_fraction']:.0%} of runs, {lat['quiet_seconds']:.2f} s in quiet blocks)"
            "; latency figures include disturbed spells")
