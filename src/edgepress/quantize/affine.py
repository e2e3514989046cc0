"""The arithmetic of affine quantization, framework-free (numpy).

Asymmetric (unsigned) b-bit::

    s = (x_max − x_min) / (2^b − 1),  z = round(−x_min / s),
    q = clamp(round(x / s) + z, 0, 2^b − 1),  x̂ = s · (q − z)

Symmetric (signed) b-bit::

    s = max|x| / (2^(b−1) − 1),  z = 0,  q = clamp(round(x / s), −(2^(b−1) − 1), 2^(b−1) − 1)

The range is first widened to include 0, so that 0 is represented exactly (padding, ReLU zeros
and pruned weights stay exactly 0). Per-tensor uses one (s, z); per-channel one per slice along
``axis``; per-group one per ``group_size`` consecutive elements of each channel.

These are the same formulas ONNX Runtime uses for its QDQ models (uint8 asymmetric activations,
int8 symmetric weights with range ±127), so the numbers here predict what the runtime computes.

Example:
    >>> import numpy as np
    >>> x = np.array([-1.0, 0.0, 0.5, 10.5], np.float32)
    >>> qp = qparams(x, bits=8, symmetric=False)
    >>> quantize(np.float32(10.5), qp).tolist()
    [255]
    >>> dequantize(quantize(np.float32(0.0), qp), qp).tolist()
    [0.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..measurement.stats import sqnr_db

__all__ = ["QParams", "dequantize", "fake_quantize", "qparams", "qrange", "quantize", "sqnr_db"]


def qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    """The integer range ``(q_min, q_max)`` of a b-bit scheme.

    Example:
        >>> qrange(8, False), qrange(8, True), qrange(4, True)
        ((0, 255), (-127, 127), (-7, 7))
    """
    if bits < 1 or bits > 16:
        raise InputError(f"bits must be in 1..16 (got {bits})")
    if symmetric:
        if bits < 2:
            raise InputError("symmetric quantization needs at least 2 bits (1 bit is sign × scale)")
        half = 2 ** (bits - 1) - 1
        return -half, half
    return 0, 2**bits - 1


@dataclass
class QParams:
    """Scale and zero point, broadcastable against the tensor they were computed for."""

    scale: np.ndarray
    zero_point: np.ndarray
    qmin: int
    qmax: int

    @property
    def symmetric(self) -> bool:
        """Whether this is a signed symmetric scheme (zero point 0, q_min = −q_max)."""
        return self.qmin == -self.qmax


def _reduce_dims(x: np.ndarray, axis: int | None) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(x.ndim))
    axis = axis % x.ndim
    return tuple(d for d in range(x.ndim) if d != axis)


def qparams(x: np.ndarray, *, bits: int = 8, symmetric: bool = False, axis: int | None = None,
            x_min: np.ndarray | float | None = None,
            x_max: np.ndarray | float | None = None) -> QParams:
    """Scale and zero point for ``x`` (per tensor, or per slice along ``axis``).

    Args:
        x: the values to cover (weights, or calibration activations).
        bits: bit width.
        symmetric: signed symmetric (z = 0) instead of unsigned asymmetric.
        axis: the channel axis for per-channel parameters; ``None`` for one per tensor.
        x_min, x_max: an explicit range (e.g. a clipped one) instead of ``x``'s own.

    Returns:
        :class:`QParams` shaped to broadcast against ``x``.
    """
    x = np.asarray(x, np.float32)
    dims = _reduce_dims(x, axis)
    lo = np.asarray(x.min(axis=dims, keepdims=True) if x_min is None else x_min, np.float64)
    hi = np.asarray(x.max(axis=dims, keepdims=True) if x_max is None else x_max, np.float64)
    lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)  # 0 must be inside the range: exact zero
    qmin, qmax = qrange(bits, symmetric)
    if symmetric:
        scale = np.maximum(-lo, hi) / qmax
    else:
        scale = (hi - lo) / (qmax - qmin)
    scale = np.where(scale > np.finfo(np.float32).tiny, scale, 1.0).astype(np.float32)
    zero = np.zeros_like(scale, np.int32) if symmetric else np.clip(
        np.round(qmin - lo / scale), qmin, qmax).astype(np.int32)
    return QParams(scale, zero, qmin, qmax)


def quantize(x: np.ndarray, qp: QParams) -> np.ndarray:
    """Integers ``q = clamp(round(x / s) + z, q_min, q_max)`` (int32; round half to even)."""
    q = np.round(np.asarray(x, np.float32) / qp.scale) + qp.zero_point
    return np.clip(q, qp.qmin, qp.qmax).astype(np.int32)


def dequantize(q: np.ndarray, qp: QParams) -> np.ndarray:
    """Reals ``x̂ = s · (q − z)`` (float32)."""
    return (qp.scale * (np.asarray(q, np.int32) - qp.zero_point)).astype(np.float32)


def fake_quantize(x: np.ndarray, qp: QParams) -> np.ndarray:
    """``dequantize(quantize(x))``: what the quantized model sees in place of ``x``."""
    return dequantize(quantize(x, qp), qp)


def group_view(w: np.ndarray, axis: int, group_size: int | None) -> np.ndarray:
    """``w`` as ``[channels, n_groups, group]`` (channel = ``axis``; the rest flattened and cut
    into groups, the last one zero-padded). Without ``group_size``: ``[channels, 1, rest]``.

    Raises:
        InputError: ``group_size`` < 2.
    """
    w2 = np.moveaxis(np.asarray(w, np.float32), axis, 0).reshape(w.shape[axis], -1)
    k = w2.shape[1]
    g = k if group_size is None else group_size
    if g < 2 and k > 1:
        raise InputError(f"group size must be >= 2 (got {g})")
    n = -(-k // g)
    padded = np.zeros((w2.shape[0], n * g), np.float32)
    padded[:, :k] = w2
    return padded.reshape(w2.shape[0], n, g)


def ungroup(v: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """Inverse of :func:`group_view`: drop the padding and restore ``shape``."""
    moved = (shape[axis], *[s for i, s in enumerate(shape) if i != axis % len(shape)])
    k = int(np.prod(moved[1:])) if len(moved) > 1 else 1
    flat = v.reshape(v.shape[0], -1)[:, :k]
    return np.moveaxis(flat.reshape(moved), 0, axis)
