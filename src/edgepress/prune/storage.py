"""Pruned weights in a compressed sparse file, and what it really costs on disk.

A dense file stores every zero as 4 bytes. Each float tensor is written in whichever of three
encodings is smallest for it:

* ``dense``   — ``4·n`` bytes (biases, BatchNorm, unpruned layers: sparse forms would be larger);
* ``bitmask`` — one bit per weight (``⌈n/8⌉`` bytes) + the non-zero values (``4·nnz``);
* ``index``   — the positions of the non-zeros in the smallest unsigned type that holds them
  (1, 2 or 4 bytes each) + the values: wins only at very high sparsity.

At 50% sparsity a bitmask file is ≈ 0.53× the dense bytes; at 90% ≈ 0.13×; at 0% it would be
1.03×, so the tensor stays dense. The file is a safetensors file (no pickle) whose metadata says
how to rebuild each tensor; :func:`load_sparse` returns exactly the original state dict.

Example:
    >>> import tempfile, torch
    >>> w = torch.zeros(100, 100); w[::10, ::10] = 1.0          # 99% zeros
    >>> path = tempfile.mkdtemp() + "/w.sparse.safetensors"
    >>> info = save_sparse(path, {"w": w, "b": torch.ones(3)})
    >>> info["encodings"]
    {'w': 'index', 'b': 'dense'}
    >>> torch.equal(load_sparse(path)["w"], w)
    True
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import atomic_path
from ..errors import InputError
from ..measurement.size import file_sizes

SPARSE_FILE = "model.sparse.safetensors"
_FORMAT = "edgepress-sparse-1"


def _index_dtype(n: int) -> np.dtype:
    for dt in (np.uint8, np.uint16, np.uint32):
        if n <= np.iinfo(dt).max + 1:
            return np.dtype(dt)
    return np.dtype(np.uint64)


def _encode_dense(a: np.ndarray) -> dict[str, np.ndarray]:
    return {"": a}


def _encode_bitmask(a: np.ndarray) -> dict[str, np.ndarray]:
    flat = a.reshape(-1)
    nz = flat != 0
    return {"mask": np.packbits(nz), "values": flat[nz]}


def _encode_index(a: np.ndarray) -> dict[str, np.ndarray]:
    flat = a.reshape(-1)
    idx = np.flatnonzero(flat)
    return {"index": idx.astype(_index_dtype(flat.size)), "values": flat[idx]}


def _decode_dense(parts: dict[str, np.ndarray], shape: list[int], dtype: np.dtype) -> np.ndarray:
    return parts[""].reshape(shape)


def _decode_bitmask(parts: dict[str, np.ndarray], shape: list[int], dtype: np.dtype) -> np.ndarray:
    n = int(np.prod(shape))
    flat = np.zeros(n, dtype)
    flat[np.unpackbits(parts["mask"], count=n).astype(bool)] = parts["values"]
    return flat.reshape(shape)


def _decode_index(parts: dict[str, np.ndarray], shape: list[int], dtype: np.dtype) -> np.ndarray:
    flat = np.zeros(int(np.prod(shape)), dtype)
    flat[parts["index"].astype(np.int64)] = parts["values"]
    return flat.reshape(shape)


Codec = tuple[Callable[[np.ndarray], dict[str, np.ndarray]], Callable[..., np.ndarray]]
ENCODINGS: dict[str, Codec] = {
    "dense": (_encode_dense, _decode_dense),
    "bitmask": (_encode_bitmask, _decode_bitmask),
    "index": (_encode_index, _decode_index),
}


def encode(a: np.ndarray) -> tuple[str, dict[str, np.ndarray]]:
    """The smallest encoding of ``a`` (only float tensors are considered for sparse forms)."""
    if not np.issubdtype(a.dtype, np.floating) or a.size == 0:
        return "dense", _encode_dense(a)
    options = {name: enc(a) for name, (enc, _) in ENCODINGS.items()}
    best = min(options, key=lambda k: (sum(p.nbytes for p in options[k].values()), k != "dense"))
    return best, options[best]


def save_sparse(path: str | os.PathLike, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Write ``state`` in the compressed sparse form; return sizes and the encoding of each tensor.

    Returns:
        ``{"file", "bytes", "gzip_bytes", "dense_bytes", "encodings": {name: encoding}}`` where
        ``dense_bytes`` is what the same tensors take stored densely.
    """
    from safetensors.numpy import save_file

    tensors: dict[str, np.ndarray] = {}
    meta: dict[str, str] = {"format": _FORMAT}
    encodings, dense = {}, 0
    for name, t in state.items():
        a = t.detach().cpu().contiguous().numpy()
        dense += a.nbytes
        kind, parts = encode(a)
        encodings[name] = kind
        meta[name] = json.dumps({"encoding": kind, "shape": list(a.shape), "dtype": str(a.dtype)})
        for part, arr in parts.items():
            tensors[f"{name}/{part}" if part else name] = np.ascontiguousarray(arr)
    with atomic_path(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    size, gz = file_sizes(path)
    return {"file": Path(path).name, "bytes": size, "gzip_bytes": gz, "dense_bytes": dense,
            "encodings": encodings}


def load_sparse(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Rebuild the dense state dict from a file written by :func:`save_sparse`.

    Raises:
        InputError: the file is missing or not an edgepress sparse file.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except Exception as e:  # safetensors raises its own error types
        raise InputError(f"cannot read sparse weights {path}: {e}") from None
    if meta.get("format") != _FORMAT:
        raise InputError(f"{path} is not an edgepress sparse weights file")
    state = {}
    for name, spec in meta.items():
        if name == "format":
            continue
        info = json.loads(spec)
        prefix = name + "/"
        parts = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
        if info["encoding"] == "dense":
            parts = {"": arrays[name]}
        decode = ENCODINGS[info["encoding"]][1]
        # .copy(), not ascontiguousarray: that would turn a 0-d tensor into a 1-d one
        state[name] = torch.from_numpy(
            decode(parts, info["shape"], np.dtype(info["dtype"])).copy())
    return state
