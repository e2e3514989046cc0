"""A user's own images: ``imagefolder:DIR[@HxW]``.

Layout: ``DIR/train/<class>/*.png|jpg``, ``DIR/test/<class>/…`` and optionally
``DIR/val/<class>/…``; without ``val``, a deterministic 10% of each training class (the same
files for every seed) is held out for validation. Class names are the folder names, sorted, and
must be the same in every split. Images become float32 N×C×H×W in [0, 1]: one channel when every
image is grayscale, else three (RGB). ``@HxW`` resizes (bilinear); without it every image must
already have the same size. Each split's hash covers its files' relative paths, labels and bytes.

A training split larger than ``$EDGEPRESS_IMAGEFOLDER_MEMORY_MB`` (default 2048 MB decoded)
stays on disk: ``x_train`` is then a :class:`LazyImages`, which decodes the images asked for, and
training streams it through a ``DataLoader`` with worker processes (the same batches, in the same
order, as from memory). Validation and test splits are always decoded into memory.

Example:
    >>> parse_spec("imagefolder:/data/pets@32x32")
    ('/data/pets', (32, 32))
    >>> parse_spec("imagefolder:/data/pets")
    ('/data/pets', None)
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

SUFFIXES = (".png", ".jpg", ".jpeg")
MEMORY_ENV = "EDGEPRESS_IMAGEFOLDER_MEMORY_MB"  # a larger train split streams from disk
DEFAULT_MEMORY_MB = 2048
VAL_FRACTION = 0.10
_GRAY = {"1", "L", "LA", "I", "I;16", "F"}


def parse_spec(spec: str) -> tuple[str, tuple[int, int] | None]:
    """``(folder, (H, W) or None)`` of ``imagefolder:DIR[@HxW]``.

    Raises:
        InputError: no folder, or a size that is not ``HxW`` with positive integers.
    """
    body = spec.split(":", 1)[1] if ":" in spec else ""
    folder, at, size = body.rpartition("@") if "@" in body else (body, "", "")
    if not folder:
        raise InputError("imagefolder data needs a folder: --data imagefolder:DIR")
    return folder, (parse_size(size) if at else None)


def parse_size(text: str) -> tuple[int, int]:
    """``"32x48"`` → ``(32, 48)`` (height, width).

    Raises:
        InputError: not ``HxW`` with positive integers.
    """
    h, x, w = text.lower().partition("x")
    try:
        hw = (int(h), int(w))
    except ValueError:
        hw = (0, 0)
    if not x or min(hw) < 1:
        raise InputError(f"input size {text!r} must be HxW with positive integers, e.g. 32x32")
    return hw


def load_imagefolder(spec: str) -> dict:
    """The arrays of an image folder, for :mod:`edgepress.data` to make a ``Dataset`` of:
    ``{"name", "x": {split: images}, "y": {split: labels}, "classes", "hashes"}``.

    Raises:
        InputError: a missing folder or split, no classes, an empty split, class sets that
            differ between splits, an unreadable image (named), or sizes that differ without
            ``@HxW``.
    """
    folder, size = parse_spec(spec)
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"image folder {folder!r} does not exist")
    files = {s: _split_files(root, s) for s in ("train", "val", "test")
             if (root / s).is_dir() or s != "val"}
    classes = _classes(files, root)
    if "val" not in files:
        files["train"], files["val"] = _hold_out(files["train"])
    labelled = {s: [(p, classes.index(c)) for c, ps in by_class.items() for p in ps]
                for s, by_class in files.items()}
    gray = all(_is_gray(p) for ps in labelled.values() for p, _ in ps)
    shape = _common_size(labelled, size)
    budget = memory_budget()
    x: dict[str, Any] = {s: _read_images([p for p, _ in ps], shape, gray)
                         for s, ps in labelled.items() if s != "train"}
    lazy = LazyImages([p for p, _ in labelled["train"]], shape, gray)
    x["train"] = lazy if lazy.nbytes > budget else lazy[:]
    y = {s: np.array([c for _, c in ps], np.int64) for s, ps in labelled.items()}
    hashes = {s: _hash_split(root, ps) for s, ps in labelled.items()}
    name = f"imagefolder:{root.resolve()}" + (f"@{size[0]}x{size[1]}" if size else "")
    return {"name": name, "x": x, "y": y, "classes": tuple(classes), "hashes": hashes}


def memory_budget() -> int:
    """Bytes of decoded training images held in memory (``$EDGEPRESS_IMAGEFOLDER_MEMORY_MB``).

    Raises:
        InputError: the variable is set but not a number >= 0.
    """
    raw = os.environ.get(MEMORY_ENV)
    try:
        mb = float(raw) if raw else float(DEFAULT_MEMORY_MB)
    except ValueError:
        mb = -1.0
    if not mb >= 0:
        raise InputError(f"{MEMORY_ENV}={raw!r} must be a number of megabytes >= 0")
    return int(mb * 1e6)


class LazyImages:
    """A split's images on disk, decoded when indexed: numpy-like enough for edgepress (``len``,
    ``shape``, ``dtype``, indexing by an int, a slice or an index array gives decoded float32
    arrays). :meth:`head` cuts it without decoding.

    Example:
        >>> imgs = LazyImages([], (8, 8), gray=True)
        >>> imgs.shape, imgs[:].shape
        ((0, 1, 8, 8), (0, 1, 8, 8))
    """

    dtype = np.dtype(np.float32)
    ndim = 4

    def __init__(self, paths: list[Path], hw: tuple[int, int], gray: bool):
        self.paths, self.hw, self.gray = list(paths), (int(hw[0]), int(hw[1])), gray

    @property
    def shape(self) -> tuple[int, int, int, int]:  # noqa: D102
        return (len(self.paths), 1 if self.gray else 3, self.hw[0], self.hw[1])

    @property
    def nbytes(self) -> int:
        """Bytes the decoded images would take."""
        return int(np.prod(self.shape)) * 4

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: object) -> np.ndarray:
        if isinstance(key, int | np.integer):
            return _read_images([self.paths[int(key)]], self.hw, self.gray)[0]
        idx = np.arange(len(self.paths))[np.asarray(key) if not isinstance(key, slice) else key]
        return _read_images([self.paths[i] for i in np.atleast_1d(idx)], self.hw, self.gray)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self[:] if dtype is None else self[:].astype(dtype)

    def head(self, n: int) -> LazyImages:
        """The first ``n`` images, still on disk."""
        return LazyImages(self.paths[:n], self.hw, self.gray)


def _split_files(root: Path, split: str) -> dict[str, list[Path]]:
    d = root / split
    if not d.is_dir():
        raise InputError(f"image folder {root} has no {split}/ folder (expected "
                         f"{root}/{split}/<class>/*.png)")
    out = {}
    for c in sorted(p for p in d.iterdir() if p.is_dir()):
        out[c.name] = sorted(p for p in c.iterdir() if p.suffix.lower() in SUFFIXES)
    if not out:
        raise InputError(f"{d} has no class folders (expected {d}/<class>/*.png)")
    empty = [c for c, ps in out.items() if not ps]
    if empty or not any(out.values()):
        raise InputError(f"{d}/{empty[0] if empty else ''} has no PNG or JPEG images "
                         "(an empty split or class)")
    return out


def _classes(files: dict[str, dict[str, list[Path]]], root: Path) -> list[str]:
    classes = list(files["train"])
    for s, by_class in files.items():
        if list(by_class) != classes:
            only = sorted(set(by_class) ^ set(classes))
            raise InputError(f"{root}: the classes of {s}/ differ from train/'s "
                             f"(not in both: {', '.join(only[:5])})")
    return classes


def _hold_out(train: dict[str, list[Path]]) -> tuple[dict, dict]:
    """A deterministic 10% of each class (at least one image when the class has two)."""
    keep, val = {}, {}
    for c, ps in train.items():
        n_val = min(len(ps) - 1, max(1, math.ceil(VAL_FRACTION * len(ps)))) if len(ps) > 1 else 0
        order = np.random.default_rng(int(hashlib.sha256(c.encode()).hexdigest()[:8], 16)
                                      ).permutation(len(ps))
        held = set(order[:n_val].tolist())
        val[c] = [p for i, p in enumerate(ps) if i in held]
        keep[c] = [p for i, p in enumerate(ps) if i not in held]
    if not any(val.values()):
        raise InputError("the image folder's train/ is too small to hold out a validation "
                         "split (give a val/ folder)")
    return keep, val


def _open(path: Path):  # noqa: ANN202
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(path)
        img.load()
        return img
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise InputError(f"cannot read image {path}: {e}") from None


def _is_gray(path: Path) -> bool:
    img = _open(path)
    if img.mode in _GRAY:
        return True
    if img.mode == "P":
        return img.convert("RGB").convert("L").convert("RGB") == img.convert("RGB")
    return False


def _common_size(labelled: dict[str, list[tuple[Path, int]]],
                 size: tuple[int, int] | None) -> tuple[int, int]:
    if size is not None:
        return size
    first: tuple[Path, tuple[int, int]] | None = None
    for ps in labelled.values():
        for p, _ in ps:
            w, h = _open(p).size
            if first is None:
                first = (p, (h, w))
            elif (h, w) != first[1]:
                raise InputError(f"{p} is {h}x{w} but {first[0]} is {first[1][0]}x{first[1][1]}"
                                 "; give --input-size HxW to resize them all")
    assert first is not None
    return first[1]


def _read_images(paths: list[Path], hw: tuple[int, int], gray: bool) -> np.ndarray:
    from PIL import Image

    out = np.empty((len(paths), 1 if gray else 3, *hw), np.float32)
    for i, p in enumerate(paths):
        img = _open(p).convert("L" if gray else "RGB")
        if img.size != (hw[1], hw[0]):
            img = img.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
        a = np.asarray(img, np.float32) / 255.0
        out[i] = a[None] if gray else a.transpose(2, 0, 1)
    return out


def _hash_split(root: Path, labelled: list[tuple[Path, int]]) -> str:
    h = hashlib.sha256()
    for p, c in labelled:
        h.update(f"{p.relative_to(root)}\0{c}\0".encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:16]
