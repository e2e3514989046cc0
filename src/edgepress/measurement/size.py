"""Bytes on disk and through ``gzip -9`` (what an app download costs); see :mod:`edgepress.files`.

Example:
    >>> callable(file_sizes) and callable(file_sha256)
    True
"""

from ..files import file_sha256, file_sizes

__all__ = ["file_sha256", "file_sizes"]
