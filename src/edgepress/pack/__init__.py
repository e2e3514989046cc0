"""The entropy-coded download archive (``.epz``): Deep Compression's storage stage.

:func:`pack` stores a run's PyTorch weights as sparse positions (relative gaps), codebooks with
per-weight indices (clustered or quantized weights) or raw values, and codes every index and
value stream with canonical Huffman, LZMA or nothing — whichever is smallest, measured per
stream. :func:`unpack` rebuilds the run directory with bit-identical weights. See
:mod:`.archive` for the file layout, :mod:`.tensors` for the encodings, :mod:`.huffman` and
:mod:`.coders` for the coders.

Example:
    >>> from edgepress.pack import pack, unpack
    >>> info = pack("runs/mlp", out="mlp.epz")  # doctest: +SKIP
    >>> print(info["bytes"], info["ratio"])  # doctest: +SKIP
"""

from .archive import FORMAT_VERSION, build_archive, pack, read_archive, unpack

__all__ = ["FORMAT_VERSION", "build_archive", "pack", "read_archive", "unpack"]
