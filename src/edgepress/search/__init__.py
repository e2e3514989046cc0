"""``edgepress search``: the measured, constrained Pareto front over every compression family,
on Optuna (:mod:`.run`), with a define-by-run space (:mod:`.space`) and a noise-aware front
(:mod:`.front`).

Example:
    >>> SearchConfig(trials=4).objectives
    ('size', 'latency')
"""

from .config import SearchConfig
from .run import search

__all__ = ["SearchConfig", "search"]
