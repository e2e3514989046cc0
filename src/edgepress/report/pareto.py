"""The Pareto front of (cost, accuracy) points: nothing else is both cheaper and more accurate.

Example:
    >>> pareto_front([(1.0, 0.9), (2.0, 0.95), (3.0, 0.94), (0.5, 0.5)])
    [0, 1, 3]
"""

from __future__ import annotations

from collections.abc import Sequence


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices (ascending) of the points no other point dominates.

    A point ``(cost, accuracy)`` is dominated when another has cost ≤ and accuracy ≥ with at
    least one strict. Ties (identical points) are all kept.
    """
    front = []
    for i, (c, a) in enumerate(points):
        dominated = any((c2 <= c and a2 >= a) and (c2 < c or a2 > a)
                        for j, (c2, a2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front
