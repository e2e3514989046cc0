"""Measurement: size, parameters, MACs, accuracy with CI, latency, memory, kernels, fidelity.

Example:
    >>> from edgepress.measurement import measure, compare
    >>> rec = measure("runs/mlp")  # doctest: +SKIP
"""

from .comparison import compare
from .record import measure, measure_all

__all__ = ["compare", "measure", "measure_all"]
