"""Bytes on disk and through ``gzip -9`` (what an app download costs)."""

from __future__ import annotations

import gzip
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
