"""Datasets with fixed splits: Fashion-MNIST, scikit-learn digits, and a user's own ``.npz``.

Every image reaches a model as float32 N×C×H×W in [0, 1]. Splits never move with the seed:

* ``fashion-mnist``: train = the first 55,000 training images, validation = the last 5,000,
  test = the 10,000 test images;
* ``digits``: a fixed stratified 70 / 15 / 15 split (``random_state=0``);
* ``npz:PATH``: ``x_train, y_train, x_test, y_test`` (optionally ``x_val, y_val``; otherwise the
  last 10% of train is validation).

Example:
    >>> ds = load_data("digits")
    >>> ds.x_train.shape[1:], ds.x_train.dtype
    ((1, 8, 8), dtype('float32'))
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError, note_once

DEFAULT_CALIBRATION = 512  # calibration images unless told (a smaller split: all of it, said)
FASHION_DIRS = ("/usr/share/datasets/fashion-mnist",)
FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_LOADERS: dict[str, Callable[[str], Dataset]] = {}


@dataclass
class Dataset:
    """Three fixed splits of images (float32 N×C×H×W in [0, 1]) and integer labels.

    ``index_hashes`` identify which source rows make each split, so a run records exactly what it
    was trained, tuned and tested on.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    index_hashes: dict[str, str] = field(default_factory=dict)
    # a left-right mirrored image is still an image of the same class (clothing: yes; digits: no)
    mirror_invariant: bool = False
    classes: tuple[str, ...] | None = None  # class names, when the data has them (imagefolder)
    # calibration images of their own (photos: disjoint from train); None: drawn from train
    x_calib: np.ndarray | None = None
    labelled: bool = True  # False: every y is -1 (photos); records report agreement instead
    extra: dict = field(default_factory=dict)  # e.g. the photographs' manifest

    @property
    def streamed(self) -> bool:
        """Whether the train split stays on disk (an image folder larger than memory)."""
        return not isinstance(self.x_train, np.ndarray)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one image, e.g. ``(1, 28, 28)``."""
        return tuple(self.x_train.shape[1:])

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(x, y)`` of ``train``, ``val`` or ``test``."""
        if name not in ("train", "val", "test"):
            raise InputError(f"unknown split {name!r} (train, val, test)")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def splits_record(self) -> dict:
        """Split sizes and index hashes, as ``model.json`` records them (and ``calib`` when the
        data has its own calibration images).
        """
        rec = {
            s: {"size": int(len(self.split(s)[1])), "index_hash": self.index_hashes.get(s, "")}
            for s in ("train", "val", "test")
        }
        if self.x_calib is not None:
            rec["calib"] = {"size": int(len(self.x_calib)),
                            "index_hash": self.index_hashes.get("calib", "")}
        return rec

    @property
    def calibration_pool(self) -> tuple[np.ndarray, str]:
        """The images calibration draws from and the split's name: ``calib`` when the data
        has its own (photos), else ``train``.
        """
        return (self.x_train, "train") if self.x_calib is None else (self.x_calib, "calib")

    def require_labels(self, what: str) -> None:
        """Raise a clear error when ``what`` needs labels and this data has none.

        >>> load_data("digits").require_labels("accuracy")  # labelled: nothing happens

        Raises:
            InputError: unlabelled data (the line says agreement is reported instead).
        """
        if not self.labelled:
            raise InputError(f"{what} needs labels, and {self.name} has none: on unlabelled "
                             "data edgepress reports agreement with a reference model (the "
                             "parent run, or the first run of a compare) instead of accuracy")

    def sample(self, *, test: int | None = None, val: int | None = None) -> Dataset:
        """A copy whose test and / or validation split is a fixed random sample of that many
        images (the same for every call; order kept), named ``NAME[test=N,val=M]``; train
        unchanged.

        >>> ds = load_data("digits").sample(test=100, val=50)
        >>> len(ds.y_test), len(ds.y_val), ds.name
        (100, 50, 'digits[test=100,val=50]')
        """
        changes: dict = {}
        hashes = dict(self.index_hashes)
        tags = []
        for split, n in (("test", test), ("val", val)):
            y = getattr(self, f"y_{split}")
            if n is None or n >= len(y):
                continue
            idx = np.sort(np.random.default_rng(0).choice(len(y), size=n, replace=False))
            changes[f"x_{split}"], changes[f"y_{split}"] = getattr(self, f"x_{split}")[idx], y[idx]
            hashes[split] = _hash_indices(idx, hashes.get(split, ""))
            tags.append(f"{split}={n}")
        if not tags:
            return self
        return dataclasses.replace(self, name=f"{self.name}[{','.join(tags)}]",
                                   index_hashes=hashes, **changes)

    def subset(self, n_train: int | None = None) -> Dataset:
        """A copy whose train split is cut to its first ``n_train`` images (val/test unchanged)."""
        if n_train is None or n_train >= len(self.y_train):
            return self
        h = _hash_indices(np.arange(n_train), f"{self.index_hashes.get('train', '')}[:{n_train}]")
        head = getattr(self.x_train, "head", None)  # images still on disk stay there
        return dataclasses.replace(self, x_train=head(n_train) if head else self.x_train[:n_train],
                                   y_train=self.y_train[:n_train],
                                   index_hashes={**self.index_hashes, "train": h})


def register_data(name: str) -> Callable:
    """Register a loader ``fn(spec) -> Dataset`` under ``name`` (the part before any ``:``)."""

    def deco(fn: Callable[[str], Dataset]) -> Callable[[str], Dataset]:
        _LOADERS[name] = fn
        return fn

    return deco


SAMPLE_SUFFIX = re.compile(r"^(?P<base>.+)\[(?P<opts>[^\[\]]*)\]$")


@dataclass(frozen=True)
class DataSpec:
    """A parsed ``--data`` spec: the loader's spec (``base``), its key, and the fixed test /
    validation sample sizes of a ``[test=N,val=M]`` suffix.
    """

    base: str
    key: str
    test: int | None = None
    val: int | None = None


def parse_data_spec(spec: str) -> DataSpec:
    """Parse a ``--data`` spec without loading anything.

    >>> parse_data_spec("digits[test=100,val=50]")
    DataSpec(base='digits', key='digits', test=100, val=50)

    Raises:
        InputError: an unknown loader, a malformed sample suffix, an image folder spec without
            a folder or with a bad size, ``npz:`` without a path.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InputError("--data needs a data set name (digits, fashion-mnist, npz:PATH, "
                         "imagefolder:DIR)")
    sizes: dict[str, int] = {}
    base = spec
    m = SAMPLE_SUFFIX.match(spec)
    if m:
        base = m["base"]
        for part in m["opts"].split(","):
            key, _, value = part.partition("=")
            value = value.strip()
            if key.strip() not in ("test", "val") or not (value.isascii() and value.isdigit()) \
                    or int(value) < 1 or key.strip() in sizes:
                raise InputError(f"{spec!r}: expected [test=N], [val=M] or [test=N,val=M] "
                                 "with positive numbers of images")
            sizes[key.strip()] = int(value)
    key = re.split("[:@]", base, maxsplit=1)[0]
    if key not in _LOADERS or "[" in base or "]" in base:
        raise InputError(f"unknown data {spec!r} (known: {', '.join(sorted(_LOADERS))}, npz:PATH, "
                         "imagefolder:DIR, photos[:DIR])")
    if key == "imagefolder":
        from .imagefolder import parse_spec

        parse_spec(base)  # raises on a missing folder or a bad size
    elif key == "photos":
        from .photos import parse_photos_spec

        parse_photos_spec(base)  # raises on a missing folder or a bad size
    elif key == "npz" and not base.partition(":")[2].strip():
        raise InputError("npz data needs a file: --data npz:PATH")
    return DataSpec(base, key, sizes.get("test"), sizes.get("val"))


def load_data(spec: str) -> Dataset:
    """Load a dataset by name: ``fashion-mnist``, ``digits``, ``npz:PATH`` or
    ``imagefolder:DIR[@HxW]``; any of them with ``[test=N]``, ``[val=M]`` or
    ``[test=N,val=M]`` keeps a fixed sample of N test / M validation images
    (:meth:`Dataset.sample`; the quick study's smoke-test figures).

    Raises:
        InputError: unknown name, missing files, or malformed data.
    """
    d = parse_data_spec(spec)
    ds = _LOADERS[d.key](d.base)
    return ds.sample(test=d.test, val=d.val) if (d.test or d.val) else ds


def with_input_size(spec: str | None, size: str | None) -> str | None:
    """``spec`` with an ``--input-size HxW`` folded in: ``imagefolder:DIR@HxW``.

    >>> with_input_size("imagefolder:pets", "32x32"), with_input_size("digits", None)
    ('imagefolder:pets@32x32', 'digits')

    Raises:
        InputError: a size for data that is not an image folder, or not ``HxW``.
    """
    if size is None:
        return spec
    from .imagefolder import parse_size

    if not spec or not (spec.startswith("imagefolder:") or spec.split(":")[0].split("@")[0]
                        == "photos"):
        raise InputError("--input-size resizes an image folder or photographs: use it with "
                         "--data imagefolder:DIR or --data photos")
    h, w = parse_size(size)
    return f"{spec.split('@', 1)[0] if '@' in spec else spec}@{h}x{w}"


def default_data() -> str:
    """``fashion-mnist`` when its files are installed, else ``digits`` — and then one line on
    stderr says so (a default that falls back is never silent).
    """
    if _fashion_dir() is not None:
        return "fashion-mnist"
    note_once("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): using "
               "the digits data instead (--data chooses)")
    return "digits"


def calibration_indices(ds: Dataset, n: int, seed: int = 0) -> np.ndarray:
    """Indices of ``n`` training images for calibration, drawn without replacement.

    Raises:
        InputError: ``n`` is not positive.
    """
    if n <= 0:
        raise InputError(f"calibration set must have at least one image (got {n})")
    pool, split = ds.calibration_pool
    have = len(pool)
    what = "training split" if split == "train" else "calibration split"
    if n > have:
        if n != DEFAULT_CALIBRATION:
            raise InputError(f"--calibration {n} asks for more images than the {what} "
                             f"of {ds.name} holds ({have}): give --calibration {have} or fewer")
        note_once(f"calibration: {ds.name}'s {what} has {have} images, fewer than the "
                   f"default {n}: calibrating on all {have} (--calibration N chooses)")
        n = have
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(have, size=n, replace=False))


def calibration_subset(ds: Dataset, n: int, seed: int = 0) -> tuple[np.ndarray, str]:
    """``n`` calibration images (from train, or the data's own calibration split) and the hash
    of their indices.
    """
    idx = calibration_indices(ds, n, seed)
    pool, split = ds.calibration_pool
    return pool[idx], _hash_indices(idx, split)


def _hash_indices(idx: np.ndarray, tag: str) -> str:
    h = hashlib.sha256(tag.encode())
    h.update(np.ascontiguousarray(idx, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


DATA_DIR_ENV = "EDGEPRESS_DATA_DIR"


def _fashion_dir() -> Path | None:
    """The folder of the four Fashion-MNIST files: ``$EDGEPRESS_DATA_DIR`` when set (an error
    when it does not hold them: never a quiet substitute), else the Debian package's.
    """
    given = os.environ.get(DATA_DIR_ENV)
    if given:
        p = Path(given)
        if not p.is_dir():
            raise InputError(f"{DATA_DIR_ENV}={given!r} is not a folder (unset it to use the "
                             "installed Fashion-MNIST)")
        missing = [f for f in FASHION_FILES.values() if not (p / f).is_file()]
        if missing:
            raise InputError(f"{DATA_DIR_ENV}={given!r} lacks the Fashion-MNIST file(s) "
                             f"{', '.join(missing)}")
        return p
    for d in FASHION_DIRS:
        p = Path(d)
        if all((p / f).is_file() for f in FASHION_FILES.values()):
            return p
    return None


def _read_idx(path: Path) -> np.ndarray:
    """Read one idx(.gz) file (the MNIST format): magic, dims, then uint8 data."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
        if zero != 0 or dtype != 0x08:
            raise ValueError("not a uint8 idx file")
        dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
        return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    except (OSError, ValueError, struct.error, EOFError) as e:
        raise InputError(f"cannot read {path}: {e}") from None


@register_data("fashion-mnist")
def _load_fashion(spec: str) -> Dataset:
    root = _fashion_dir()
    if root is None:
        raise InputError(
            "Fashion-MNIST not found: install it with 'apt-get install dataset-fashion-mnist' "
            "or set EDGEPRESS_DATA_DIR to a folder with the four idx.gz files "
            "(or use --data digits)"
        )
    a = {k: _read_idx(root / f) for k, f in FASHION_FILES.items()}
    x = a["x_train"].astype(np.float32)[:, None] / 255.0
    xt = a["x_test"].astype(np.float32)[:, None] / 255.0
    y, yt = a["y_train"].astype(np.int64), a["y_test"].astype(np.int64)
    n_tr = 55_000
    return Dataset("fashion-mnist", x[:n_tr], y[:n_tr], x[n_tr:], y[n_tr:], xt, yt, 10, {
        "train": _hash_indices(np.arange(n_tr), "fmnist-train"),
        "val": _hash_indices(np.arange(n_tr, len(y)), "fmnist-train"),
        "test": _hash_indices(np.arange(len(yt)), "fmnist-test"),
    }, mirror_invariant=True)


@register_data("digits")
def _load_digits(spec: str) -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    y = d.target.astype(np.int64)
    idx = np.arange(len(y))
    i_tr, i_rest = train_test_split(idx, test_size=0.30, stratify=y, random_state=0)
    i_val, i_te = train_test_split(i_rest, test_size=0.50, stratify=y[i_rest], random_state=0)
    return Dataset("digits", x[i_tr], y[i_tr], x[i_val], y[i_val], x[i_te], y[i_te], 10, {
        s: _hash_indices(i, "digits") for s, i in (("train", i_tr), ("val", i_val), ("test", i_te))
    })


@register_data("npz")
def _load_npz(spec: str) -> Dataset:
    path = Path(spec.split(":", 1)[1]) if ":" in spec else Path("")
    if not path.is_file():
        raise InputError(f"npz data file {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile/ValueError/OSError: all mean a malformed file
        raise InputError(f"cannot read {path} as .npz: {e}") from None
    missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in a]
    if missing:
        raise InputError(
            f"{path} lacks {', '.join(missing)} (needs x_train, y_train, x_test, y_test)")
    if ("x_val" in a) != ("y_val" in a):
        raise InputError(f"{path} has only one of x_val / y_val")
    if "x_val" not in a:
        n_val = max(1, len(a["y_train"]) // 10)
        a["x_val"], a["y_val"] = a["x_train"][-n_val:], a["y_train"][-n_val:]
        a["x_train"], a["y_train"] = a["x_train"][:-n_val], a["y_train"][:-n_val]
    xs = {s: _as_images(a[f"x_{s}"], path, s) for s in ("train", "val", "test")}
    ys = {s: _as_labels(a[f"y_{s}"], len(xs[s]), path, s) for s in ("train", "val", "test")}
    if len({x.shape[1:] for x in xs.values()}) != 1:
        raise InputError(f"{path}: train, val and test images differ in shape")
    n_cls = int(max(int(y.max(initial=0)) for y in ys.values()) + 1)
    hashes = {s: hashlib.sha256(xs[s].tobytes()).hexdigest()[:16] for s in xs}
    return Dataset(f"npz:{path}", xs["train"], ys["train"], xs["val"], ys["val"], xs["test"],
                   ys["test"], n_cls, hashes)


def _as_images(x: np.ndarray, path: Path, split: str) -> np.ndarray:
    """N×H×W or N×C×H×W (uint8 0..255 or float 0..1) -> float32 N×C×H×W in [0, 1]."""
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or len(x) == 0:
        raise InputError(f"{path}: x_{split} must be a non-empty N×H×W or N×C×H×W array")
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"{path}: x_{split} must be uint8 or float, not {x.dtype}")
    x = x.astype(np.float32)
    if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
        raise InputError(f"{path}: float x_{split} must hold finite values in [0, 1]")
    return x


def _as_labels(y: np.ndarray, n: int, path: Path, split: str) -> np.ndarray:
    if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
        raise InputError(f"{path}: y_{split} must be {n} non-negative integer labels")
    return y.astype(np.int64)


@register_data("photos")
def _load_photos(spec: str) -> Dataset:
    from .photos import SPLITS, load_photos

    p = load_photos(spec)
    x = p["x"]
    hashes = {s: _hash_indices(np.arange(len(x[s])), f"photos-{p['tag']}-{s}") for s in SPLITS}
    y = {s: np.full(len(x[s]), -1, np.int64) for s in SPLITS}  # no labels
    return Dataset(p["name"], x["train"], y["train"], x["val"], y["val"], x["test"], y["test"], 0,
                   hashes, mirror_invariant=True, x_calib=x["calib"], labelled=False,
                   extra={"manifest": p["manifest"]})


@register_data("imagefolder")
def _load_imagefolder(spec: str) -> Dataset:
    from .imagefolder import load_imagefolder

    a = load_imagefolder(spec)
    x, y = a["x"], a["y"]
    return Dataset(a["name"], x["train"], y["train"], x["val"], y["val"], x["test"], y["test"],
                   len(a["classes"]), a["hashes"], classes=a["classes"])
