"""The noise-aware constrained Pareto front, its hypervolume and its knee.

Each point is a feasible trial: gzip'd bytes (exact: smaller is better) and a speed-up with its
95% CI (larger is better). ``a`` beats ``b`` only when the figures say so beyond the noise: ``a``
is no larger and no slower — ``b``'s speed-up CI does not lie wholly above ``a``'s — and it is
strictly smaller, or faster with the two CIs apart. Points the noise cannot separate both stay.

Example:
    >>> a = Point("a", 100, 2.0, (1.9, 2.1)); b = Point("b", 120, 1.95, (1.9, 2.0))
    >>> c = Point("c", 120, 1.2, (1.1, 1.3))
    >>> [p.name for p in front([a, b, c])]
    ['a']
    >>> [p.name for p in front([Point("x", 100, 2.0, (1.9, 2.1)),
    ...                         Point("y", 100, 2.05, (1.95, 2.15))])]
    ['x', 'y']
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Point:
    """A feasible trial's objectives: bytes, speed-up and its CI (``(s, s)`` when latency is
    not an objective).
    """

    name: str
    size: int
    speedup: float
    ci: tuple[float, float]


def beats(a: Point, b: Point, *, latency: bool = True) -> bool:
    """Whether ``a`` dominates ``b`` beyond the noise (see the module)."""
    if a.size > b.size:
        return False
    if not latency:
        return a.size < b.size
    if b.ci[0] > a.ci[1]:  # b is surely faster
        return False
    return a.size < b.size or a.ci[0] > b.ci[1]


def front(points: list[Point], *, latency: bool = True) -> list[Point]:
    """The points no other point beats, in the order given."""
    return [p for p in points if not any(beats(q, p, latency=latency)
                                         for q in points if q is not p)]


def hypervolume(points: list[Point], *, reference_size: int) -> float:
    """The area dominated by ``points`` in (size ratio, 1 / speed-up), both minimised, up to the
    reference (1, 1): what the front buys over the uncompressed model; 0 when nothing beats it.

    >>> hypervolume([Point("a", 50, 2.0, (2.0, 2.0))], reference_size=100)
    0.25
    """
    pts = sorted((p.size / reference_size, 1.0 / p.speedup) for p in points
                 if p.size < reference_size and p.speedup > 1.0)
    area, best_y = 0.0, 1.0
    for x, y in pts:
        if y < best_y:
            area += (1.0 - x) * (best_y - y)
            best_y = y
    return area


def knee(points: list[Point], *, reference_size: int) -> Point | None:
    """The front point closest to the ideal corner (no bytes, infinite speed) after scaling
    each objective to the front's range: the balanced choice.

    >>> knee([Point("s", 10, 1.1, (1.1, 1.1)), Point("m", 40, 2.5, (2.5, 2.5)),
    ...       Point("f", 90, 2.7, (2.7, 2.7))], reference_size=100).name
    'm'
    """
    if not points:
        return None
    xs = [p.size / reference_size for p in points]
    ys = [1.0 / p.speedup for p in points]

    def scaled(v: float, vs: list[float]) -> float:
        lo, hi = min(vs), max(vs)
        return 0.0 if hi == lo else (v - lo) / (hi - lo)

    return min(points, key=lambda p: scaled(p.size / reference_size, xs) ** 2
               + scaled(1.0 / p.speedup, ys) ** 2)
