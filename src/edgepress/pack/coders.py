"""Stream coders of the archive: fixed-width bits, canonical Huffman, and stdlib LZMA.

Every stream in an archive is a sequence of ``width``-bit symbols (``width`` ≤ 8: gap and cluster
indices, or the bytes of float values). Each stream is written with whichever coder makes it
smallest — measured, not assumed: Huffman wins on skewed index streams, LZMA on repetitive
bytes, and tiny streams stay raw. The sizes of all candidates are kept for the report.

* ``raw``: the symbols bit-packed at ``width`` bits, MSB first (``⌈n·width/8⌉`` bytes);
* ``huffman``: the code lengths (a nibble per symbol of the ``2**width`` alphabet) then the
  canonical codes (:mod:`.huffman`);
* ``lzma``: one byte per symbol through LZMA2 (raw format, the filter fixed by :data:`FILTERS`:
  no container header to pay for).

Example:
    >>> import numpy as np
    >>> s = np.repeat(np.arange(4, dtype=np.uint8), [700, 200, 60, 40])
    >>> np.random.default_rng(0).shuffle(s)       # skewed, no repeats for LZMA to find
    >>> coded = encode_stream(s, 2)
    >>> coded.coder, coded.sizes["raw"], coded.sizes["huffman"], coded.sizes["lzma"] > 250
    ('huffman', 250, 177, True)
    >>> decode_stream(coded.data, coded.coder, 1000, 2).tolist() == s.tolist()
    True
"""

from __future__ import annotations

import lzma
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from . import huffman

# Fixed by the format version: a decoder needs the same filter chain (LZMA2, 8 MiB dictionary).
FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 6}]


@dataclass
class Coded:
    """A coded stream: the bytes, the coder that made them, every candidate's size."""

    data: bytes
    coder: str
    sizes: dict[str, int] = field(default_factory=dict)


def _bits(symbols: np.ndarray, width: int) -> bytes:
    if width == 8:
        return symbols.astype(np.uint8).tobytes()
    if width == 0 or symbols.size == 0:
        return b""
    bits = np.unpackbits(symbols.astype(np.uint8).reshape(-1, 1), axis=1)[:, 8 - width:]
    return np.packbits(bits.reshape(-1)).tobytes()


def _unbits(buf: bytes, n: int, width: int) -> np.ndarray:
    if width == 0:
        return np.zeros(n, np.uint8)
    if len(buf) != -(-n * width // 8):
        raise InputError("a raw stream in the archive has the wrong length")
    if width == 8:
        return np.frombuffer(buf, np.uint8).copy()
    bits = np.unpackbits(np.frombuffer(buf, np.uint8))[:n * width].reshape(n, width)
    return np.packbits(np.pad(bits, ((0, 0), (8 - width, 0))), axis=1).reshape(-1)


def _raw_size(freqs: np.ndarray, n: int, width: int) -> int:
    return -(-n * width // 8)


def _huffman_size(freqs: np.ndarray, n: int, width: int) -> int:
    return huffman.table_bytes(1 << width) + huffman.encoded_bytes(
        freqs, huffman.code_lengths(freqs))


def _huffman_encode(symbols: np.ndarray, width: int) -> bytes:
    lengths = huffman.code_lengths(np.bincount(symbols, minlength=1 << width))
    return huffman.pack_lengths(lengths) + huffman.encode(symbols, lengths)


def _huffman_decode(buf: bytes, n: int, width: int) -> np.ndarray:
    head = huffman.table_bytes(1 << width)
    if len(buf) < head:
        raise InputError("a Huffman stream in the archive is truncated")
    return huffman.decode(buf[head:], n, huffman.unpack_lengths(buf[:head], 1 << width))


def lzma_compress(data: bytes) -> bytes:
    """LZMA2 with the archive's fixed filter chain, no container."""
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=FILTERS)


MAX_DECODED_BYTES = 1 << 30  # no stream of an archive decodes past 1 GiB


def lzma_decompress(data: bytes, limit: int | None = None) -> bytes:
    """Inverse of :func:`lzma_compress`, refusing to decode past ``limit`` bytes (default
    :data:`MAX_DECODED_BYTES`).

    Raises:
        InputError: the data is not a valid LZMA2 stream, or decodes past ``limit``.
    """
    limit = MAX_DECODED_BYTES if limit is None else limit
    try:
        d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=FILTERS)
        out = d.decompress(data, max_length=limit + 1)
    except lzma.LZMAError as e:
        raise InputError(f"corrupt LZMA stream in the archive: {e}") from None
    if len(out) > limit:
        raise InputError(f"an LZMA stream in the archive decodes to more than {limit:,} bytes: "
                         "refused (a decompression bomb, or not an edgepress archive)")
    return out


def _lzma_decode(buf: bytes, n: int, width: int) -> np.ndarray:
    out = np.frombuffer(lzma_decompress(buf), np.uint8)
    if len(out) != n or (width < 8 and n and int(out.max()) >= 1 << width):
        raise InputError("an LZMA stream in the archive decodes to the wrong symbols")
    return out.copy()


# coder -> (size from the symbol counts, or None to size it by encoding; encode; decode)
SizeFn = Callable[[np.ndarray, int, int], int]
CODERS: dict[str, tuple[SizeFn | None, Callable[[np.ndarray, int], bytes],
                        Callable[[bytes, int, int], np.ndarray]]] = {
    "raw": (_raw_size, _bits, _unbits),
    "huffman": (_huffman_size, _huffman_encode, _huffman_decode),
    "lzma": (None, lambda s, w: lzma_compress(s.astype(np.uint8).tobytes()), _lzma_decode),
}


def estimate(symbols: np.ndarray, width: int) -> int:
    """The smaller of the raw and Huffman sizes, from symbol counts only (cheap: used to choose
    between encodings of a tensor before the real coding).
    """
    freqs = np.bincount(symbols, minlength=1 << width)
    return min(_raw_size(freqs, symbols.size, width), _huffman_size(freqs, symbols.size, width))


def encode_stream(symbols: np.ndarray, width: int) -> Coded:
    """Code ``symbols`` (each < ``2**width``) with every coder; keep the smallest.

    Ties go to the simpler coder (raw, then Huffman, then LZMA).
    """
    symbols = np.asarray(symbols, np.uint8)
    freqs = np.bincount(symbols, minlength=1 << width)
    sizes: dict[str, int] = {}
    made: dict[str, bytes] = {}
    for name, (size_fn, enc, _) in CODERS.items():
        if size_fn is not None and not (name == "huffman" and width == 0):
            sizes[name] = size_fn(freqs, symbols.size, width)
        elif size_fn is None:
            made[name] = enc(symbols, width)
            sizes[name] = len(made[name])
    best = min(sizes, key=lambda k: (sizes[k], list(CODERS).index(k)))
    data = made[best] if best in made else CODERS[best][1](symbols, width)
    if len(data) != sizes[best]:  # the format's size model must be exact
        raise RuntimeError(f"{best} wrote {len(data)} bytes, predicted {sizes[best]}")
    return Coded(data, best, sizes)


def decode_stream(buf: bytes, coder: str, n: int, width: int) -> np.ndarray:
    """Inverse of :func:`encode_stream`.

    Raises:
        InputError: an unknown coder name or a corrupt stream.
    """
    if coder not in CODERS:
        raise InputError(f"unknown stream coder {coder!r} in the archive")
    return CODERS[coder][2](buf, n, width)
