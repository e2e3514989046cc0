"""How one tensor becomes streams: sparse positions as gaps, values through a codebook or raw.

A float tensor is stored in one of two layouts, whichever is smaller for it:

* ``dense``: every element's value;
* ``sparse``: the positions of the non-zero elements as relative gaps (Deep Compression's
  relative indexing) + only the non-zero values. Each gap entry has ``gap_bits`` bits; a symbol
  ``s < M = 2**gap_bits - 1`` means "skip ``s`` zeros, then a value", the symbol ``M`` is a
  padding entry "skip ``M`` zeros, no value" for gaps too long for one entry. ``gap_bits`` is
  chosen per tensor (1..8) to minimise the coded size.

The values (all of them, or the non-zero ones) are stored as a ``codebook`` when they take at
most 256 distinct values and that is smaller (clustered or quantized weights: the codebook in
fp16 when that is exact, else in the tensor's type, plus one ``index_bits``-bit index per value),
else ``raw`` (fp16 when exact, else the tensor's type). Float bytes are split into byte planes,
one stream each. Non-float tensors (BatchNorm's step counter) are stored as raw byte planes.

Every tensor round-trips bit for bit, with one deliberate exception: a zero is a zero, so
``-0.0`` comes back as ``+0.0``. Masked pruning leaves ``-0.0`` wherever a negative weight was
cut (``w · 0``); keeping that sign would cost one incompressible bit per pruned weight — as
much as the positions themselves — for a value that equals ``+0.0`` in every computation
(``torch.equal`` and ``==`` hold).

Example:
    >>> import numpy as np
    >>> w = np.zeros(1000, np.float32); w[::100] = 0.5
    >>> entry, streams = encode_tensor("w", w)
    >>> entry["layout"], entry["values"], [s.kind for s in streams]
    ('sparse', 'codebook', ['positions', 'codebook', 'codebook', 'indices'])
    >>> np.array_equal(decode_tensor(entry, [s.symbols for s in streams]), w)
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from .coders import estimate

MAX_CODEBOOK = 256
GAP_BITS = range(1, 9)


@dataclass
class Stream:
    """Symbols of ``width`` bits (≤ 8) and what they hold: ``positions``, ``indices``,
    ``codebook`` or ``values`` (the last two are the bytes of floats).
    """

    kind: str
    symbols: np.ndarray
    width: int


def _uint(dtype: np.dtype) -> np.dtype:
    return np.dtype(f"u{dtype.itemsize}")


def _narrow(values: np.ndarray) -> np.ndarray:
    """``values`` as fp16 when that keeps every bit, else unchanged."""
    if values.dtype != np.float32:
        return values
    half = values.astype(np.float16)
    exact = np.array_equal(half.astype(np.float32).view(np.uint32), values.view(np.uint32))
    return half if exact else values


def _byte_streams(kind: str, a: np.ndarray) -> list[Stream]:
    """One stream per byte plane of ``a`` (byte 0 of every element, then byte 1, ...): the
    sign-and-exponent plane of floats is highly skewed, the low mantissa planes are noise, so
    each is coded on its own (≈20% smaller than coding the interleaved bytes).
    """
    planes = np.ascontiguousarray(a).reshape(-1).view(np.uint8).reshape(-1, a.dtype.itemsize)
    return [Stream(kind, np.ascontiguousarray(planes[:, i]), 8) for i in range(planes.shape[1])]


def _from_planes(planes: list[np.ndarray], dtype: np.dtype) -> np.ndarray:
    if not planes:
        return np.zeros(0, dtype)
    return np.ascontiguousarray(np.stack(planes, axis=1)).view(dtype).reshape(-1)


def gap_entries(positions: np.ndarray, bits: int) -> np.ndarray:
    """Relative-index entries of sorted ``positions`` (see the module docstring)."""
    m = (1 << bits) - 1
    gaps = np.diff(positions, prepend=-1) - 1
    pads = gaps // m
    out = np.full(int(pads.sum()) + len(gaps), m, np.uint8)
    out[np.cumsum(pads + 1) - 1] = gaps - pads * m
    return out


def gap_positions(entries: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of :func:`gap_entries`."""
    m = (1 << bits) - 1
    e = entries.astype(np.int64)
    advance = np.where(e == m, m, e + 1)
    return (np.cumsum(advance) - 1)[e != m]


def _value_streams(values: np.ndarray) -> tuple[dict[str, Any], list[Stream]]:
    """Codebook + indices when the values take ≤ 256 distinct bit patterns and that is smaller,
    else the raw values.
    """
    raw = _narrow(values)
    plain: tuple[dict[str, Any], list[Stream]] = (
        {"values": "raw", "value_dtype": str(raw.dtype)}, _byte_streams("values", raw))
    bits = values.view(_uint(values.dtype))
    uniq, inverse = np.unique(bits, return_inverse=True)
    if len(uniq) > MAX_CODEBOOK or len(uniq) == len(values):
        return plain
    book = _narrow(uniq.view(values.dtype))
    width = int(np.ceil(np.log2(len(uniq)))) if len(uniq) > 1 else 0
    shared: tuple[dict[str, Any], list[Stream]] = (
        {"values": "codebook", "value_dtype": str(book.dtype), "codebook_size": len(uniq),
         "index_bits": width},
        [*_byte_streams("codebook", book),
         Stream("indices", inverse.astype(np.uint8).reshape(-1), width)])
    return min(shared, plain, key=lambda o: _cost(o[1]))


def _cost(streams: list[Stream]) -> int:
    return sum(estimate(s.symbols, s.width) for s in streams)


def _sparse(flat: np.ndarray, nonzero: np.ndarray) -> tuple[dict[str, Any], list[Stream]]:
    positions = np.flatnonzero(nonzero)
    entry, values = _value_streams(flat[positions])
    gaps = {b: Stream("positions", gap_entries(positions, b), b) for b in GAP_BITS}
    best = min(GAP_BITS, key=lambda b: (_cost([gaps[b]]), b))
    return ({"layout": "sparse", "nonzero": len(positions), "gap_bits": best, **entry},
            [gaps[best], *values])


def encode_tensor(name: str, a: np.ndarray) -> tuple[dict[str, Any], list[Stream]]:
    """The manifest entry and the streams of one tensor (the smaller layout, see above)."""
    head: dict[str, Any] = {"name": name, "shape": list(a.shape), "dtype": str(a.dtype)}
    flat = np.ascontiguousarray(a).reshape(-1)
    if not np.issubdtype(a.dtype, np.floating) or flat.size == 0:
        return {**head, "layout": "dense", "values": "raw", "value_dtype": str(a.dtype)}, \
            _byte_streams("values", flat)
    nonzero = flat != 0
    flat = np.where(nonzero, flat, flat.dtype.type(0))  # -0.0 -> +0.0 (see the docstring)
    options = [_value_streams(flat)]
    options[0][0]["layout"] = "dense"
    if not nonzero.all():
        options.append(_sparse(flat, nonzero))
    entry, streams = min(options, key=lambda o: _cost(o[1]))
    return {**head, **entry}, streams


def stream_kinds(entry: dict[str, Any]) -> list[str]:
    """The kinds of a manifest entry's streams, in archive order."""
    planes = np.dtype(entry["value_dtype"]).itemsize
    kinds = ["positions"] if entry["layout"] == "sparse" else []
    if entry["values"] == "codebook":
        return kinds + ["codebook"] * planes + ["indices"]
    return kinds + ["values"] * planes


def decode_tensor(entry: dict[str, Any], streams: list[np.ndarray]) -> np.ndarray:
    """Rebuild a tensor from its manifest entry and its decoded stream symbols.

    Raises:
        InputError: streams that do not fit the entry (a corrupt archive).
    """
    dtype, shape = np.dtype(entry["dtype"]), entry["shape"]
    vdtype = np.dtype(entry["value_dtype"])
    kinds = stream_kinds(entry)
    if len(streams) != len(kinds):
        raise InputError(f"tensor {entry['name']}: {len(streams)} streams, expected {len(kinds)}")
    planes = [s for s, k in zip(streams, kinds, strict=True) if k in ("codebook", "values")]
    positions = None
    if entry["layout"] == "sparse":
        positions = gap_positions(streams[0], int(entry["gap_bits"]))
    if entry["values"] == "codebook":
        book = _from_planes(planes, vdtype).astype(dtype)
        idx = streams[-1]
        if len(book) != entry["codebook_size"] or (idx.size and int(idx.max()) >= len(book)):
            raise InputError(f"tensor {entry['name']}: a cluster index outside its codebook")
        values = book[idx]
    else:
        values = _from_planes(planes, vdtype).astype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    if positions is None:
        flat = values
    else:
        if len(positions) != len(values) or (len(positions) and positions[-1] >= n):
            raise InputError(f"tensor {entry['name']}: sparse positions do not fit its shape")
        flat = np.zeros(n, dtype)
        flat[positions] = values
    if flat.size != n:
        raise InputError(f"tensor {entry['name']}: {flat.size} values for shape {shape}")
    return flat.reshape(shape)
