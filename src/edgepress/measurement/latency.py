"""Latency: ``perf_counter_ns`` around the runtime call only, interleaved across models.

Protocol: warm-up, then round-robin rounds (A B C, B C A, C A B, ...) until every model has at least
``min_runs`` timed runs and ``min_seconds`` of timed inference. Interleaving makes machine drift
(frequency, a neighbour's load) hit every model alike, so their ratio is fair.

Example:
    >>> t = time_interleaved([lambda: sum(range(1000))], min_runs=10, min_seconds=0.01)
    >>> len(t[0]) >= 10
    True
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MIN_RUNS, MIN_SECONDS, WARMUP_SECONDS, MIN_WARMUP = 200, 2.0, 0.25, 10
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
    """Timed runs (ms) of one model and how many warm-up runs preceded them."""

    ms: np.ndarray
    warmup: int

    def summary(self) -> dict:
        """The contract's ``latency_ms`` record."""
        return {"median": float(np.median(self.ms)), "p90": float(np.percentile(self.ms, 90)),
                "runs": int(len(self.ms)), "warmup": int(self.warmup),
                "mean": float(self.ms.mean()), "min": float(self.ms.min())}


def _warmup(fn: Callable[[], object]) -> int:
    n, t0 = 0, time.perf_counter()
    while n < MIN_WARMUP or time.perf_counter() - t0 < WARMUP_SECONDS:
        fn()
        n += 1
    return n


def time_interleaved(fns: list[Callable[[], object]], *, min_runs: int = MIN_RUNS,
                     min_seconds: float | None = None) -> list[Timing]:
    """Time each zero-argument callable, round-robin, until all meet both minimums
    (``min_seconds`` None: :func:`timed_seconds`).
    """
    if min_seconds is None:
        min_seconds = timed_seconds()
    warm = [_warmup(fn) for fn in fns]
    times: list[list[int]] = [[] for _ in fns]
    spent = [0] * len(fns)
    goal_ns = int(min_seconds * 1e9)
    clock = time.perf_counter_ns
    n, r = len(fns), 0
    while min(len(t) for t in times) < min_runs or min(spent) < goal_ns:
        # rotate the order every round (A B, B A, ...) so no model always runs right after another
        for i in [(r + k) % n for k in range(n)]:
            fn = fns[i]
            t0 = clock()
            fn()
            dt = clock() - t0
            times[i].append(dt)
            spent[i] += dt
        r += 1
    return [Timing(np.asarray(t, np.float64) / 1e6, w) for t, w in zip(times, warm, strict=True)]
