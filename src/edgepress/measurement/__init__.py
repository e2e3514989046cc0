"""Measurement: size, parameters, MACs, accuracy with CI, latency, memory, kernels, fidelity.

Example:
    >>> from edgepress.measurement import measure, compare
    >>> rec = measure("runs/mlp")  # doctest: +SKIP
"""

from .comparison import REFERENCE_AGAIN, compare, measured_rows
from .record import measure, measure_all

__all__ = ["REFERENCE_AGAIN", "compare", "measure", "measure_all", "measured_rows"]
