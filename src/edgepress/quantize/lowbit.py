"""Weight-only low-bit quantization (8, 4, 2 or 1 bit) with packed storage.

Weights of every Conv / Gemm / MatMul are quantized per output channel, or per group of
``group_size`` consecutive input weights of a channel:

* b = 8, 4, 2: asymmetric unsigned codes ``0 … 2^b − 1`` with a zero point (0 stays exact); for
  b ≤ 4 the range of each channel / group is clipped where that lowers the squared error (a
  small grid search — at 4 bits and below the outliers cost more than the clipping does).
* b = 1: ``w ≈ s · sign(w)`` with ``s = mean|w|`` per channel / group (the L2-optimal scale).

Group scales (and zero points) are stored as fp16, per-channel scales as fp32. Compute stays in
float: the ONNX model dequantizes the codes (DequantizeLinear, int4 / int2 initializers — the
ONNX file itself holds packed codes) and accuracy is that of the dequantized model.
:func:`pack` writes the codes bit-packed (two int4 per byte, four int2, eight 1-bit), and
:func:`packed_nbytes` is the size that takes.

Example:
    >>> import numpy as np
    >>> w = np.random.default_rng(0).normal(size=(16, 128)).astype(np.float32)
    >>> t = quantize_weight(w, axis=0, bits=4)
    >>> packed_nbytes(t) == 16 * 128 // 2 + 16 * 4 + 16 // 2
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from .affine import group_view, ungroup

_CLIP_GRID = np.linspace(1.0, 0.5, 11)


@dataclass
class LowBitTensor:
    """One quantized weight: codes ``[C, groups, g]``, scales and zero points ``[C, groups, 1]``.

    ``codes`` are unsigned ``0 … 2^b − 1``; for 1 bit, code 1 means +s and code 0 means −s.
    """

    codes: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray | None
    bits: int
    shape: tuple[int, ...]
    axis: int
    group_size: int | None

    @property
    def numel(self) -> int:
        """Number of real weights (without group padding)."""
        return int(np.prod(self.shape))

    @property
    def scale_dtype(self) -> type:
        """fp16 scales for groups, fp32 per channel."""
        return np.float16 if self.group_size else np.float32


def _asym(g: np.ndarray, bits: int, shrink: np.ndarray) -> tuple[np.ndarray, ...]:
    qmax = 2**bits - 1
    lo = np.minimum(g.min(-1, keepdims=True), 0.0) * shrink
    hi = np.maximum(g.max(-1, keepdims=True), 0.0) * shrink
    scale = (hi - lo) / qmax
    scale = np.where(scale > 1e-12, scale, 1.0)
    zero = np.clip(np.round(-lo / scale), 0, qmax)
    codes = np.clip(np.round(g / scale) + zero, 0, qmax)
    return codes, scale, zero


def quantize_weight(w: np.ndarray, *, axis: int, bits: int,
                    group_size: int | None = None) -> LowBitTensor:
    """Quantize one weight tensor to ``bits`` (per channel along ``axis``, or per group).

    Raises:
        InputError: ``bits`` not in 1, 2, 4, 8.
    """
    if bits not in (1, 2, 4, 8):
        raise InputError(f"--bits must be one of 1, 2, 4, 8 (got {bits})")
    g = group_view(w, axis, group_size)
    k = int(np.prod(w.shape)) // w.shape[axis]
    valid = (np.arange(g.shape[1] * g.shape[2]) < k).reshape(1, g.shape[1], g.shape[2])
    if bits == 1:
        counts = np.maximum(valid.sum(-1, keepdims=True), 1)
        scale = (np.abs(g) * valid).sum(-1, keepdims=True) / counts
        scale = _round_scale(np.where(scale > 0, scale, 1.0), group_size)
        return LowBitTensor((g >= 0).astype(np.uint8), scale, None, 1, tuple(w.shape), axis,
                            group_size)
    best: list[np.ndarray] = []
    for shrink in (_CLIP_GRID if bits <= 4 else _CLIP_GRID[:1]):
        codes, scale, zero = _asym(g, bits, shrink)
        scale = _round_scale(scale, group_size)
        err = (((codes - zero) * scale - g) ** 2 * valid).sum(-1, keepdims=True)
        if not best:
            best = [codes, scale, zero, err]
        else:
            better = err < best[3]
            for i, v in enumerate((codes, scale, zero, err)):
                best[i] = np.where(better, v, best[i])
    codes, scale, zero, _ = best
    return LowBitTensor(codes.astype(np.uint8), scale, zero.astype(np.uint8), bits,
                        tuple(w.shape), axis, group_size)


def _round_scale(scale: np.ndarray, group_size: int | None) -> np.ndarray:
    """Scales as they are stored: fp16 for groups (many of them), fp32 per channel."""
    dtype = np.float16 if group_size else np.float32
    return np.asarray(scale, dtype).astype(np.float32)


def dequantize_weight(t: LowBitTensor) -> np.ndarray:
    """The float weight the deployed model computes with (original shape)."""
    if t.bits == 1 or t.zero_point is None:
        v = t.scale * (2.0 * t.codes.astype(np.float32) - 1.0)
    else:
        v = t.scale * (t.codes.astype(np.float32) - t.zero_point.astype(np.float32))
    return ungroup(v.astype(np.float32), t.shape, t.axis)


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned ``bits``-bit values, little-end first in each byte (two int4 per byte).

    Example:
        >>> pack_bits(np.array([1, 2, 3], np.uint8), 4).tolist()
        [33, 3]
    """
    flat = np.asarray(values, np.uint8).ravel()
    per = 8 // bits
    v = np.concatenate([flat, np.zeros(-len(flat) % per, np.uint8)]).reshape(-1, per)
    shifts = (np.arange(per) * bits).astype(np.uint8)
    return np.bitwise_or.reduce(v << shifts, axis=1).astype(np.uint8)


def unpack_bits(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: the first ``n`` values."""
    per = 8 // bits
    shifts = (np.arange(per) * bits).astype(np.uint8)
    mask = np.uint8(2**bits - 1)
    return ((np.asarray(packed, np.uint8)[:, None] >> shifts) & mask).ravel()[:n]


def real_codes(t: LowBitTensor) -> np.ndarray:
    """The codes of the real weights, channel-major, without group padding."""
    return t.codes.reshape(t.codes.shape[0], -1)[:, : t.numel // t.codes.shape[0]]


def pack(t: LowBitTensor) -> dict[str, np.ndarray]:
    """The tensors that store ``t``: bit-packed codes, scales, bit-packed zero points."""
    out = {"codes": pack_bits(real_codes(t), t.bits),
           "scale": t.scale.reshape(-1).astype(t.scale_dtype)}
    if t.zero_point is not None:
        out["zero_point"] = pack_bits(t.zero_point.reshape(-1), t.bits)
    return out


def packed_nbytes(t: LowBitTensor) -> int:
    """Bytes of :func:`pack`'s output: ⌈n·b/8⌉ codes + scales + ⌈scales·b/8⌉ zero points."""
    n_scales = t.scale.size
    zp = 0 if t.zero_point is None else -(-n_scales * t.bits // 8)
    return -(-t.numel * t.bits // 8) + n_scales * np.dtype(t.scale_dtype).itemsize + zp


def unpack(stored: dict[str, np.ndarray], *, bits: int, shape: tuple[int, ...], axis: int,
           group_size: int | None) -> LowBitTensor:
    """Rebuild a :class:`LowBitTensor` from :func:`pack`'s tensors."""
    channels = shape[axis]
    k = int(np.prod(shape)) // channels
    g = k if group_size is None else group_size
    n_groups = -(-k // g)
    codes = np.zeros((channels, n_groups * g), np.uint8)
    codes[:, :k] = unpack_bits(stored["codes"], bits, channels * k).reshape(channels, k)
    scale = stored["scale"].astype(np.float32).reshape(channels, n_groups, 1)
    zp = None
    if "zero_point" in stored:
        zp = unpack_bits(stored["zero_point"], bits, channels * n_groups).reshape(
            channels, n_groups, 1)
    return LowBitTensor(codes.reshape(channels, n_groups, g), scale, zp, bits, tuple(shape), axis,
                        group_size)
