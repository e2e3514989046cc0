"""Files: their bytes on disk and through ``gzip -9`` (what an app download costs), and their
SHA-256 — plain helpers every layer may use.
"""

from __future__ import annotations

import gzip
import hashlib
import os


def file_sizes(path: str | os.PathLike) -> tuple[int, int]:
    """``(bytes, gzip -9 bytes)`` of a file.

    Example:
        >>> import tempfile
        >>> p = tempfile.mktemp(); _ = open(p, "wb").write(bytes(10000))
        >>> raw, gz = file_sizes(p); raw, gz < 100
        (10000, True)
    """
    with open(path, "rb") as f:
        data = f.read()
    return len(data), len(gzip.compress(data, compresslevel=9, mtime=0))


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file, hex (two records with the same one deployed the same bytes).

    Example:
        >>> import tempfile
        >>> p = tempfile.mktemp(); _ = open(p, "wb").write(b"abc")
        >>> file_sha256(p)[:16]
        'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
