r"""The ``.epz`` download archive: :func:`pack` a run into one file, :func:`unpack` it back.

Layout (all integers little-endian)::

    offset  bytes  field
    0       8      magic  b"\x89EPZ\r\n\x1a\n"
    8       2      format version (uint16), currently 1
    10      4      manifest length M (uint32)
    14      8      payload length P (uint64)
    22      32     SHA-256 of manifest + payload
    54      M      manifest: UTF-8 JSON, LZMA2-coded (the filter of :mod:`.coders`)
    54+M    P      payload: every tensor's streams, back to back, in manifest order

The manifest holds the run's ``model.json`` (so unpack can rebuild the architecture) and one
entry per state-dict tensor: name, shape, dtype, layout (``dense``/``sparse``), values
(``raw``/``codebook``) and, per stream, its kind, coder, symbol count, width and byte length.
The archive's size is exactly ``54 + M + Σ stream bytes``, and each stream's bytes follow from
its coder's size model (``⌈n·w/8⌉`` raw, table + ``⌈Σ f·ℓ/8⌉`` Huffman, the measured LZMA
output), so :func:`pack` reports the predicted size next to the real one.

Example:
    >>> info = pack("runs/mlp-p92-c5", out="mlp.epz")  # doctest: +SKIP
    >>> info["ratio"], info["bytes"] == info["predicted_bytes"]  # doctest: +SKIP
    (41.3, True)
    >>> rec = unpack("mlp.epz", out="runs/mlp-unpacked")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoint import (
    METRICS,
    MODEL_JSON,
    WEIGHTS,
    Run,
    atomic_dir,
    atomic_path,
    check_output_dir,
    check_output_file,
    load_run,
    write_json,
)
from ..errors import InputError
from ..version import __version__
from .coders import decode_stream, encode_stream, lzma_compress, lzma_decompress
from .tensors import decode_tensor, encode_tensor, stream_kinds

MAGIC = b"\x89EPZ\r\n\x1a\n"
FORMAT_VERSION = 1
_HEAD = struct.Struct("<8sHIQ32s")
HEADER_BYTES = _HEAD.size  # 54
STREAM_KINDS = ("positions", "indices", "codebook", "values")


def build_archive(state: dict[str, np.ndarray], meta: dict[str, Any]) -> tuple[bytes, dict]:
    """Encode a state dict and its run's ``model.json`` into archive bytes.

    Returns:
        ``(archive bytes, size report)`` (see :func:`pack` for the report's fields).
    """
    entries, payload, rows = [], [], []
    for name, a in state.items():
        entry, streams = encode_tensor(name, a)
        entry["streams"], row_streams = [], []
        for s in streams:
            coded = encode_stream(s.symbols, s.width)
            entry["streams"].append({"kind": s.kind, "coder": coded.coder,
                                     "count": int(s.symbols.size), "width": s.width,
                                     "bytes": len(coded.data)})
            row_streams.append({"kind": s.kind, "coder": coded.coder,
                                "symbols": int(s.symbols.size), "width": s.width,
                                "bytes": len(coded.data), "candidates": coded.sizes})
            payload.append(coded.data)
        entries.append(entry)
        rows.append({k: entry[k] for k in entry if k != "streams"} | {"streams": row_streams})
    manifest = lzma_compress(json.dumps(
        {"format": "edgepress-archive", "version": FORMAT_VERSION, "edgepress": __version__,
         "meta": meta, "tensors": entries}, separators=(",", ":")).encode())
    body = b"".join(payload)
    digest = hashlib.sha256(manifest + body).digest()
    blob = _HEAD.pack(MAGIC, FORMAT_VERSION, len(manifest), len(body), digest) + manifest + body
    return blob, _report(state, rows, len(manifest), digest.hex())


def _report(state: dict[str, np.ndarray], rows: list[dict], manifest_bytes: int,
            sha256: str) -> dict[str, Any]:
    streams = [s for r in rows for s in r["streams"]]
    kinds: dict[str, dict[str, Any]] = {}
    for s in streams:
        k = kinds.setdefault(s["kind"], {"streams": 0, "symbols": 0, "bytes": 0, "raw_bytes": 0,
                                         "huffman_bytes": 0, "lzma_bytes": 0, "coders": {}})
        k["streams"] += 1
        k["symbols"] += s["symbols"]
        k["bytes"] += s["bytes"]
        for coder, size in s["candidates"].items():
            k[f"{coder}_bytes"] += size
        k["coders"][s["coder"]] = k["coders"].get(s["coder"], 0) + 1
    params = sum(int(a.size) for a in state.values() if np.issubdtype(a.dtype, np.floating))
    nonzero = sum(int(np.count_nonzero(a)) for a in state.values()
                  if np.issubdtype(a.dtype, np.floating))
    negative_zeros = sum(int(np.count_nonzero((a == 0) & np.signbit(a))) for a in state.values()
                         if np.issubdtype(a.dtype, np.floating))
    payload = sum(s["bytes"] for s in streams)
    predicted = HEADER_BYTES + manifest_bytes + sum(s["candidates"][s["coder"]] for s in streams)
    uncoded = HEADER_BYTES + manifest_bytes + sum(s["candidates"]["raw"] for s in streams)
    return {"format_version": FORMAT_VERSION, "sha256": sha256,
            "bytes": HEADER_BYTES + manifest_bytes + payload, "predicted_bytes": predicted,
            "header_bytes": HEADER_BYTES, "manifest_bytes": manifest_bytes,
            "payload_bytes": payload, "uncoded_bytes": uncoded,
            "params": params, "nonzero": nonzero, "negative_zeros_stored_as_zero": negative_zeros,
            "fp32_bytes": 4 * params,
            "ratio": 4 * params / (HEADER_BYTES + manifest_bytes + payload),
            "streams": {k: kinds[k] for k in STREAM_KINDS if k in kinds}, "tensors": rows}


def _state(run: Run) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(str(run.file(WEIGHTS)))
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise InputError(f"cannot read {run.file(WEIGHTS)}: {e}") from None


def pack(run: str | os.PathLike | Run, *, out: str | os.PathLike) -> dict[str, Any]:
    """Write a run's PyTorch weights and ``model.json`` into an entropy-coded archive.

    The run directory is left untouched; the archive is written to a temp file and renamed.

    Args:
        run: a run directory (or loaded :class:`Run`) with PyTorch weights.
        out: the ``.epz`` file to write (replaced if it exists).

    Returns:
        The size report: ``bytes`` (the file), ``predicted_bytes`` (header + manifest + each
        stream's size from its coder's model: equal to ``bytes``), ``header_bytes``,
        ``manifest_bytes``, ``payload_bytes``, ``uncoded_bytes`` (every stream raw: the size
        without entropy coding), ``params`` and ``nonzero`` (float elements), ``fp32_bytes``
        (4 × params), ``ratio`` (fp32 bytes / file bytes), ``streams`` (per kind: bytes, each
        coder's candidate size, which coders won) and ``tensors`` (per tensor: layout and
        streams), plus ``file`` and ``run``.

    Raises:
        InputError: not a run, a run without PyTorch weights, or an output path that is a
            directory.

    Example:
        >>> info = pack("runs/mlp", out="mlp.epz")  # doctest: +SKIP
    """
    dest = check_output_file(out)
    r = run if isinstance(run, Run) else load_run(run)
    if not r.has_weights:
        raise InputError(f"run {r.name!r} has no PyTorch weights (it came from an ONNX file): "
                         f"pack stores a PyTorch model")
    blob, report = build_archive(_state(r), r.meta)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(blob)
    if dest.stat().st_size != report["bytes"]:
        raise RuntimeError(f"{dest} has {dest.stat().st_size} bytes, expected {report['bytes']}")
    return {"file": str(dest), "run": str(r.path), **report}


def read_archive(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Verify and decode an archive: ``(model.json meta, {tensor name: array})``.

    Raises:
        InputError: missing file, not an archive, an unknown format version, a truncated or
            corrupted file (checksum mismatch), or streams that do not decode.
    """
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{str(p)!r} is a directory, not an archive (.epz)")
    if not p.is_file():
        raise InputError(f"archive {str(p)!r} does not exist")
    blob = p.read_bytes()
    manifest = _verified_manifest(blob, p)
    offset = HEADER_BYTES + manifest["_length"]
    state = {}
    try:
        _check_sizes(manifest["tensors"], len(blob) - offset, p)
        for entry in manifest["tensors"]:
            if [s["kind"] for s in entry["streams"]] != stream_kinds(entry):
                raise InputError(f"{p}: tensor {entry['name']} has unexpected streams")
            symbols = []
            for s in entry["streams"]:
                buf = blob[offset:offset + s["bytes"]]
                offset += s["bytes"]
                symbols.append(decode_stream(buf, s["coder"], s["count"], s["width"]))
            state[entry["name"]] = decode_tensor(entry, symbols)
    except (KeyError, TypeError, ValueError, IndexError, OverflowError, AttributeError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError(f"{p}: corrupt manifest ({type(e).__name__}: {e})"[:300]) from None
    if offset != len(blob):
        raise InputError(f"{p}: the streams do not fill the payload (corrupt archive)")
    return manifest["meta"], state


MAX_VALUES = 1 << 28  # the most tensor values an archive may declare (1 GiB of float32)


def _check_sizes(tensors: list[dict], payload: int, p: Path) -> None:
    """Refuse a manifest that declares more than the payload holds, or more values than
    :data:`MAX_VALUES`, before anything is decoded.
    """
    total_bytes = total_values = 0
    for entry in tensors:
        n = 1
        for d in entry["shape"]:
            if not isinstance(d, int) or d < 0:
                raise InputError(f"{p}: tensor {entry['name']} has a bad shape {entry['shape']}")
            n *= d
        total_values += n
        for s in entry["streams"]:
            if not isinstance(s["bytes"], int) or s["bytes"] < 0 or not isinstance(
                    s["count"], int) or s["count"] < 0 or s["count"] > MAX_VALUES:
                raise InputError(f"{p}: tensor {entry['name']} has a bad stream header")
            total_bytes += s["bytes"]
    if total_bytes != payload:
        raise InputError(f"{p}: the manifest declares {total_bytes:,} stream bytes but the "
                         f"payload holds {payload:,} (corrupt archive)")
    if total_values > MAX_VALUES:
        raise InputError(f"{p} declares {total_values:,} tensor values, more than edgepress "
                         f"unpacks ({MAX_VALUES:,})")


def _verified_manifest(blob: bytes, p: Path) -> dict[str, Any]:
    if len(blob) < HEADER_BYTES or not blob.startswith(MAGIC):
        raise InputError(f"{p} is not an edgepress archive (.epz)")
    _, version, m_len, p_len, digest = _HEAD.unpack_from(blob)
    if version != FORMAT_VERSION:
        raise InputError(f"{p} is an archive of format version {version}; this edgepress "
                         f"({__version__}) reads version {FORMAT_VERSION}")
    if len(blob) != HEADER_BYTES + m_len + p_len:
        raise InputError(f"{p} is truncated or corrupted: {len(blob)} bytes, the header says "
                         f"{HEADER_BYTES + m_len + p_len}")
    if hashlib.sha256(blob[HEADER_BYTES:]).digest() != digest:
        raise InputError(f"{p} is corrupted: SHA-256 checksum mismatch")
    try:
        manifest = json.loads(lzma_decompress(blob[HEADER_BYTES:HEADER_BYTES + m_len]))
        manifest["meta"]["architecture"], manifest["tensors"]  # noqa: B018 - must exist
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: unreadable manifest ({e})") from None
    manifest["_length"] = m_len
    return manifest


def unpack(archive: str | os.PathLike, *, out: str | os.PathLike) -> dict[str, Any]:
    """Rebuild a complete run directory from an archive; return its measurement record.

    The weights are bit-for-bit those that were packed (a ``-0.0`` comes back as ``+0.0``, see
    :mod:`.tensors`); ``model.json`` is the packed run's, with
    an ``archive`` field added (file, SHA-256, format version, bytes). The deployment is
    exported as that ``model.json`` records it and measured like every produced run.

    Raises:
        InputError: see :func:`read_archive`; an output path that is a file; an architecture
            the weights do not fit.

    Example:
        >>> rec = unpack("mlp.epz", out="runs/mlp-unpacked")  # doctest: +SKIP
    """
    import torch
    from safetensors.torch import save_file

    from ..export.deploy import export_run
    from ..produce import measure_in_place

    final = check_output_dir(out)
    meta, state = read_archive(archive)
    blob_path = Path(archive)
    meta = {**meta, "archive": {"file": str(blob_path), "bytes": blob_path.stat().st_size,
                                "sha256": hashlib.sha256(blob_path.read_bytes()).hexdigest(),
                                "format_version": FORMAT_VERSION}}
    with atomic_dir(final) as tmp:
        tensors = {k: torch.from_numpy(np.ascontiguousarray(v).copy()) for k, v in state.items()}
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt", "edgepress": __version__})
        write_json(tmp / MODEL_JSON, meta)
        run = Run(tmp, meta)
        run.build_model()  # the weights must fit the recorded architecture
        export_run(run, "onnx")
        record = measure_in_place(tmp, final)
        record["archive"] = meta["archive"]
        write_json(tmp / METRICS, record)
    return record
