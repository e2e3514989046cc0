"""``--data photos``: real photographs that installed packages ship, without labels.

A pretrained network (``efficientnet-lite0``) is compressed without its training data: what
edgepress has are photographs. They come from the wheels edgepress installs — scikit-image's
sample images (the ``[pretrained]`` extra), matplotlib's ``grace_hopper.jpg`` and
scikit-learn's ``china.jpg`` / ``flower.jpg`` — listed in :data:`MANIFEST` with each file's
package and licence. 21 files of 20 distinct scenes (the stereo motorcycle pair is one scene,
and both its views are in the same split).

Splits are drawn from *disjoint* photographs: calibration (4 scenes × 128 crops = 512 images),
fine-tuning (``train``: 6 scenes, 7 files × 192 = 1,344), validation (3 × 64 = 192) and
evaluation (``test``: 7 × 147 = 1,029). Every crop is deterministic: crop 0 of a photograph is
the whole picture, the others a random-resized crop (10–100% of the area, aspect 3:4–4:3,
mirrored half the time) drawn from a generator seeded by the file name and the crop number, then
resized (bilinear, antialiased) to the model's input, 224×224 unless ``photos@HxW`` says. Grey
photographs are repeated over the three channels. There are no labels (``y`` is −1): records
report agreement with a reference model instead of accuracy.

``photos:DIR[@HxW]`` does the same with a user's own folder of photographs (``*.jpg``,
``*.jpeg``, ``*.png``, sorted by name; at least 4): file ``i`` goes to test, val, calibration,
train by ``i mod 10`` (0–3, 4, 5–6, 7–9), and each split gets as many crops per file as make
its target number of images.

Example:
    >>> p = load_photos("photos@32x32")
    >>> p["x"]["test"].shape, len(p["x"]["calib"]), p["name"]
    ((1029, 3, 32, 32), 512, 'photos@32x32')
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError

DEFAULT_SIZE = (224, 224)
SPLITS = ("test", "val", "calib", "train")
TARGETS = {"test": 1029, "val": 192, "calib": 512, "train": 1344}  # images per split (a folder)
MIN_AREA, MAX_ASPECT = 0.10, 4 / 3
SKIMAGE_INSTALL = ("pip install 'edgepress[pretrained]' (it brings scikit-image's sample "
                   "photographs)")


@dataclass(frozen=True)
class Photo:
    """One photograph of the built-in set: where it ships and under which terms."""

    name: str
    package: str      # the Python package (import name) that ships it
    path: str         # inside that package
    licence: str
    split: str
    crops: int
    scene: str = ""   # photographs of one scene share it (and their split)


_SK = "skimage"
MANIFEST: tuple[Photo, ...] = (
    # evaluation: 7 scenes × 147 crops = 1,029 images
    Photo("astronaut", _SK, "data/astronaut.png", "public domain (NASA)", "test", 147),
    Photo("chelsea", _SK, "data/chelsea.png", "CC0 (Stefan van der Walt)", "test", 147),
    Photo("coffee", _SK, "data/coffee.png", "CC0 (Rachel Michetti)", "test", 147),
    Photo("rocket", _SK, "data/rocket.jpg", "public domain (SpaceX)", "test", 147),
    Photo("flower", "sklearn", "datasets/images/flower.jpg", "CC BY 2.0 (vultilion, Flickr)",
          "test", 147),
    Photo("camera", _SK, "data/camera.png", "CC0 (Lav Varshney)", "test", 147),
    Photo("coins", _SK, "data/coins.png", "no known copyright restrictions (Brooklyn Museum)",
          "test", 147),
    # validation: 3 scenes × 64 crops = 192 images
    Photo("grace_hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg",
          "public domain (U.S. Navy)", "val", 64),
    Photo("grass", _SK, "data/grass.png", "CC0 (linolafett, DeviantArt)", "val", 64),
    Photo("text", _SK, "data/text.png", "public domain (Wikipedia: Corner.png)", "val", 64),
    # calibration: 4 scenes × 128 crops = 512 images
    Photo("china", "sklearn", "datasets/images/china.jpg", "CC BY 2.0 (danielbuechele, Flickr)",
          "calib", 128),
    Photo("hubble_deep_field", _SK, "data/hubble_deep_field.jpg", "public domain (NASA)",
          "calib", 128),
    Photo("moon", _SK, "data/moon.png", "not stated (scikit-image sample data, BSD-3-Clause "
          "package)", "calib", 128),
    Photo("cell", _SK, "data/cell.png", "CC0 (Guck lab)", "calib", 128),
    # fine-tuning: 6 scenes, 7 files × 192 crops = 1,344 images
    Photo("motorcycle_left", _SK, "data/motorcycle_left.png", "Middlebury 2014 stereo "
          "benchmark (free for research)", "train", 192, "motorcycle"),
    Photo("motorcycle_right", _SK, "data/motorcycle_right.png", "Middlebury 2014 stereo "
          "benchmark (free for research)", "train", 192, "motorcycle"),
    Photo("ihc", _SK, "data/ihc.png", "no known copyright restrictions (CMMI)", "train", 192),
    Photo("retina", _SK, "data/retina.jpg", "CC0 (Wikimedia Commons)", "train", 192),
    Photo("gravel", _SK, "data/gravel.png", "CC0 (CC0Textures)", "train", 192),
    Photo("clock_motion", _SK, "data/clock_motion.png", "public domain (Stefan van der Walt)",
          "train", 192),
    Photo("brick", _SK, "data/brick.png", "CC0 (CC0Textures)", "train", 192),
)


def parse_photos_spec(spec: str) -> tuple[Path | None, tuple[int, int]]:
    """``photos[:DIR][@HxW]`` → (the folder or ``None`` for the built-in set, the size).

    >>> parse_photos_spec("photos@96x96")
    (None, (96, 96))

    Raises:
        InputError: a missing folder, a bad size.
    """
    from .imagefolder import parse_size

    base, _, size = spec.partition("@")
    hw = parse_size(size) if size else DEFAULT_SIZE
    _, colon, folder = base.partition(":")
    if not colon:
        return None, hw
    root = Path(folder)
    if not folder.strip() or not root.is_dir():
        raise InputError(f"photos folder {folder!r} does not exist (--data photos:DIR)")
    return root, hw


def package_root(package: str) -> Path:
    """The folder of an installed package, found without importing it.

    Raises:
        InputError: the package is not installed (the install command is said).
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        hint = SKIMAGE_INSTALL if package == _SK else f"pip install {package}"
        raise InputError(f"--data photos needs the package {package!r}: {hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def manifest() -> list[dict]:
    """The built-in photographs as records: name, package, file, licence, split, crops, sha256.

    Raises:
        InputError: a package or file is missing.
    """
    rows = []
    for p in MANIFEST:
        f = package_root(p.package) / p.path
        if not f.is_file():
            raise InputError(f"--data photos: {f} is missing from the installed {p.package}")
        rows.append({"name": p.name, "package": p.package, "file": str(f), "licence": p.licence,
                     "split": p.split, "crops": p.crops, "scene": p.scene or p.name,
                     "sha256": hashlib.sha256(f.read_bytes()).hexdigest()})
    return rows


def folder_manifest(root: Path) -> list[dict]:
    """A user's folder as manifest rows (splits by file order; crops to reach the targets).

    Raises:
        InputError: fewer than 4 photographs.
    """
    files = sorted(f for f in root.iterdir()
                   if f.is_file() and f.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if len(files) < 4:
        raise InputError(f"photos folder {str(root)!r} holds {len(files)} photographs "
                         "(*.jpg, *.jpeg, *.png); at least 4 are needed (test, validation, "
                         "calibration and fine-tuning draw from disjoint photographs)")
    by_split: dict[str, list[Path]] = {s: [] for s in SPLITS}
    for i, f in enumerate(files):
        r = i % 10
        split = "test" if r < 4 else "val" if r == 4 else "calib" if r < 7 else "train"
        by_split[split].append(f)
    if not by_split["train"]:  # 4–7 files: the fine-tuning split takes the last one
        by_split["train"].append(by_split["test"].pop())
    rows = []
    for split, fs in by_split.items():
        for f in fs:
            rows.append({"name": f.name, "package": None, "file": str(f), "licence": "the user's",
                         "split": split, "crops": math.ceil(TARGETS[split] / len(fs)),
                         "scene": f.name, "sha256": hashlib.sha256(f.read_bytes()).hexdigest()})
    return rows


def read_photo(path: str | Path) -> np.ndarray:
    """The photograph as uint8 H×W×3 (grey repeated over three channels; alpha dropped).

    Raises:
        InputError: not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise InputError(f"cannot read the photograph {path}: {e}") from None


def crop_boxes(name: str, n: int, h: int, w: int) -> list[tuple[int, int, int, int]]:
    """``n`` deterministic crop boxes ``(left, top, right, bottom)`` of an ``h``×``w`` picture:
    the whole picture first, then random-resized crops seeded by ``name``.

    >>> crop_boxes("x", 2, 100, 200)[0]
    (0, 0, 200, 100)
    """
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    boxes = [(0, 0, w, h)]
    while len(boxes) < n:
        area = rng.uniform(MIN_AREA, 1.0) * h * w
        aspect = math.exp(rng.uniform(-math.log(MAX_ASPECT), math.log(MAX_ASPECT)))
        cw = int(round(math.sqrt(area * aspect)))
        ch = int(round(math.sqrt(area / aspect)))
        if not (0 < cw <= w and 0 < ch <= h):
            continue
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        boxes.append((left, top, left + cw, top + ch))
    return boxes


def crops(image: np.ndarray, name: str, n: int, hw: tuple[int, int]) -> np.ndarray:
    """``n`` crops of ``image`` (uint8 H×W×3) resized to ``hw``: uint8 N×3×H×W; crops with an
    odd draw are mirrored (never crop 0).
    """
    from PIL import Image

    im = Image.fromarray(image)
    rng = np.random.default_rng(zlib.crc32(f"{name}/mirror".encode()))
    flips = rng.random(n) < 0.5
    out = np.empty((n, 3, hw[0], hw[1]), np.uint8)
    for i, box in enumerate(crop_boxes(name, n, image.shape[0], image.shape[1])):
        c = im.resize((hw[1], hw[0]), Image.Resampling.BILINEAR, box=box,
                      reducing_gap=2.0)
        a = np.asarray(c)
        if i and flips[i]:
            a = a[:, ::-1]
        out[i] = a.transpose(2, 0, 1)
    return out


def _as_float(parts: list[np.ndarray]) -> np.ndarray:
    """uint8 crops as one float32 array in [0, 1], scaled in place (one float copy, not two:
    1.1 GB of Lite0 crops at 224×224).
    """
    out = np.concatenate(parts).astype(np.float32)
    out /= 255.0
    return out


def load_photos(spec: str) -> dict:
    """The ``photos`` images (see the module), for :func:`edgepress.data.load_data`:
    ``{"name", "x": {split: float32 N×3×H×W}, "tag", "manifest"}`` (``tag`` hashes the files,
    their splits and crops, and the size).

    Raises:
        InputError: a missing package, file or folder; a bad size; an unreadable photograph.
    """
    root, hw = parse_photos_spec(spec)
    rows = manifest() if root is None else folder_manifest(root)
    x: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for row in rows:
        x[row["split"]].append(crops(read_photo(row["file"]), row["name"], row["crops"], hw))
    arrays = {s: _as_float(v) for s, v in x.items()}
    digest = hashlib.sha256(repr([(r["sha256"], r["split"], r["crops"]) for r in rows]
                                 + [hw]).encode())
    name = "photos" if root is None else f"photos:{root}"
    if hw != DEFAULT_SIZE:
        name += f"@{hw[0]}x{hw[1]}"
    return {"name": name, "x": arrays, "tag": digest.hexdigest()[:12], "manifest": rows}
