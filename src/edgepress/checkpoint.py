"""Run directories: ``model.safetensors`` + ``model.json``, written atomically.

A run directory holds one model and everything needed to rebuild, deploy and measure it::

    RUN/model.json  RUN/model.safetensors  RUN/model.onnx  RUN/metrics.json

No pickle anywhere: weights are safetensors, metadata is JSON.

Example:
    >>> import tempfile, torch
    >>> from edgepress.zoo import create_model
    >>> m = create_model("mlp", input_shape=(1, 8, 8), num_classes=10)
    >>> meta = new_meta(zoo="mlp", kwargs={}, input_shape=(1, 8, 8), num_classes=10, data="digits")
    >>> d = tempfile.mkdtemp() + "/run"
    >>> with atomic_dir(d) as tmp:
    ...     save_model(tmp, m, meta)
    >>> r = load_run(d)
    >>> torch.equal(r.build_model().classifier.weight, m.classifier.weight)
    True
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import InputError
from .records import META_SCHEMA, RunMeta
from .version import __version__

SCHEMA = META_SCHEMA
MODEL_JSON, WEIGHTS, ONNX, PTE, METRICS = (
    "model.json", "model.safetensors", "model.onnx", "model.pte", "metrics.json")


def new_meta(*, zoo: str | None = None, kwargs: dict | None = None, onnx_source: str | None = None,
             input_shape: tuple[int, ...], num_classes: int, data: str,
             splits: dict | None = None, parent: str | None = None, config: dict | None = None,
             seed: int | None = None) -> dict[str, Any]:
    """A fresh ``model.json`` dict (architecture, data, splits, provenance, deployment)."""
    arch = architecture_record(zoo=zoo, kwargs=kwargs, input_shape=input_shape,
                               num_classes=num_classes)
    if onnx_source is not None:
        arch["onnx"] = onnx_source
    return RunMeta.new(architecture=arch, data=data, splits=splits, parent=parent,
                       config=config, seed=seed).to_dict()


def architecture_record(*, zoo: str | None, kwargs: dict | None, input_shape: tuple[int, ...],
                        num_classes: int) -> dict[str, Any]:
    """The ``architecture`` record of a model built from the zoo (or a user's file: its source
    and sha256 are recorded too).

    >>> architecture_record(zoo="mlp", kwargs={}, input_shape=(1, 8, 8), num_classes=10)
    {'input_shape': [1, 8, 8], 'num_classes': 10, 'zoo': 'mlp', 'kwargs': {}}
    """
    arch: dict[str, Any] = {"input_shape": list(input_shape), "num_classes": num_classes}
    if zoo is not None:
        arch.update(zoo=zoo, kwargs=dict(kwargs or {}))
        arch.update(_user_source(zoo))
    return arch


def _user_source(zoo: str) -> dict[str, Any]:
    """``{"source": {...}}`` for a user's model (its file and sha256), else nothing."""
    from .zoo.user import is_user_spec, source_record, split_user_spec

    return {"source": source_record(split_user_spec(zoo)[0])} if is_user_spec(zoo) else {}


@dataclass
class Run:
    """A loaded run directory: its path and its ``model.json``."""

    path: Path
    meta: dict[str, Any]

    def file(self, name: str) -> Path:
        """Path of a file inside the run."""
        return self.path / name

    def parent_path(self) -> Path | None:
        """The run this one was made from: the recorded path, else the path recorded relative
        to this run (a folder of runs that moved together), else ``None`` (moved apart or
        deleted; :meth:`parent_note` says which).
        """
        prov = self.meta.get("provenance") or {}
        parent, rel = prov.get("parent"), prov.get("parent_relative")
        if isinstance(parent, str) and parent and Path(parent).exists():
            return Path(parent)
        if isinstance(rel, str) and rel and (self.path / rel).exists():
            return (self.path / rel).resolve()
        return None

    def parent_note(self) -> str | None:
        """Why the parent recorded in ``model.json`` cannot be found (``None``: found, or none
        recorded).
        """
        prov = self.meta.get("provenance") or {}
        if not prov.get("parent") or self.parent_path() is not None:
            return None
        return (f"the parent run {prov['parent']!r} is not there (moved or deleted): no "
                "fidelity figure")

    @property
    def name(self) -> str:
        """The run's display name (its directory name)."""
        return self.path.name

    @property
    def model_name(self) -> str:
        """``cnn:width=0.5`` for a zoo model, the ONNX file name for a foreign one."""
        arch = self.meta["architecture"]
        if "zoo" in arch:
            opts = ",".join(f"{k}={v}" for k, v in arch.get("kwargs", {}).items())
            name = arch["zoo"]
            if "source" in arch:  # a user's FILE.py:FACTORY: the file's name is enough here
                source, _, factory = name.rpartition(":")
                name = f"{Path(source).name}:{factory}"
            return f"{name}:{opts}" if opts else name
        return Path(arch.get("onnx", "model.onnx")).name

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One image's shape (C, H, W)."""
        return tuple(self.meta["architecture"]["input_shape"])

    @property
    def has_weights(self) -> bool:
        """Whether a PyTorch model (safetensors) backs this run."""
        return self.file(WEIGHTS).is_file() and "zoo" in self.meta["architecture"]

    def build_model(self) -> nn.Module:
        """Rebuild the PyTorch model exactly: zoo architecture + safetensors weights.

        Raises:
            InputError: the run has no PyTorch weights, or they are corrupt or non-finite.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from .zoo import create_model

        if not self.has_weights:
            raise InputError(f"run {str(self.path)!r} has no PyTorch weights (model.safetensors)")
        arch = self.meta["architecture"]
        if "source" in arch:  # a user's model: its code must be the code the run was made with
            from .zoo.user import check_source

            check_source(arch["source"], f"run {str(self.path)!r}")
        model = create_model(arch["zoo"] + _kwargs_suffix(arch.get("kwargs", {})),
                             input_shape=self.input_shape, num_classes=arch["num_classes"])
        try:
            state = load_file(str(self.file(WEIGHTS)))
        except (SafetensorError, OSError, ValueError) as e:
            raise InputError(f"cannot read {self.file(WEIGHTS)}: {e}") from None
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise InputError(f"{self.file(WEIGHTS)} has NaN/inf weights in {bad[0]}")
        if arch.get("transforms"):  # structure methods changed the layers (edgepress.structure)
            replay_transforms_(model, arch["transforms"])
        if arch.get("pruned_shapes"):  # channel-pruned: layers are narrower than the zoo's
            resize_to_state_(model, state)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[-1].strip()
            raise InputError(
                f"{self.file(WEIGHTS)} does not fit {self.model_name}: {first}") from None
        return model.eval()


# Structural transforms recorded in ``architecture.transforms`` are replayed by the functions
# their owners register (``edgepress.structure.replay``: fold, merge, lowrank, drop_blocks); the
# modules are named here and imported on first use, so the run layer does not depend on them.
Replay = Callable[[nn.Module, list[dict]], None]
REPLAY_MODULES = ["edgepress.structure.replay"]
_REPLAY: list[Replay] = []


def register_replay(fn: Replay) -> Replay:
    """Make ``fn(model, transforms)`` the replayer of recorded structural transforms."""
    _REPLAY[:] = [fn]
    return fn


def replay_transforms_(model: nn.Module, transforms: list[dict]) -> None:
    """Rebuild the recorded structural ``transforms`` on a fresh zoo ``model`` (in place).

    Raises:
        InputError: no replayer in this build, or a transform it cannot replay.
    """
    if not _REPLAY:
        import importlib

        for module in REPLAY_MODULES:
            try:
                importlib.import_module(module)
            except ImportError as e:
                raise InputError(f"this run has structural transforms but {module} is not "
                                 f"available ({e})") from None
    _REPLAY[0](model, transforms)


def resize_to_state_(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Swap each Conv2d / Linear / BatchNorm2d whose saved tensors have another shape for one of
    the saved shape (a channel-pruned model saved with ``"pruned_shapes": true``).

    A depthwise conv (groups = channels) stays depthwise at its new width.
    """
    for name, mod in list(model.named_modules()):
        resize = _RESIZERS.get(type(mod))
        key = f"{name}.weight" if isinstance(mod, nn.Conv2d | nn.Linear) else f"{name}.running_mean"
        if resize is None or key not in state:
            continue
        saved = tuple(state[key].shape)
        current = tuple(getattr(mod, key.rsplit(".", 1)[-1]).shape)
        bias = f"{name}.bias" in state  # a re-fit (prune --reconstruct) may have given one
        if saved != current or (isinstance(mod, nn.Conv2d | nn.Linear)
                                and bias != (mod.bias is not None)):
            parent, _, attr = name.rpartition(".")
            setattr(model.get_submodule(parent), attr, resize(mod, saved, bias))


def _resized_conv(m: nn.Conv2d, shape: tuple[int, ...], bias: bool) -> nn.Conv2d:
    out, in_per_group = shape[0], shape[1]
    depthwise = m.groups > 1 and m.groups == m.in_channels == m.out_channels
    groups = out if depthwise else m.groups
    same: dict[str, Any] = {"kernel_size": m.kernel_size, "stride": m.stride,
                            "padding": m.padding, "dilation": m.dilation,
                            "bias": bias, "padding_mode": m.padding_mode}
    return nn.Conv2d(in_per_group * groups, out, groups=groups, **same)


def _resized_linear(m: nn.Linear, shape: tuple[int, ...], bias: bool) -> nn.Linear:
    return nn.Linear(shape[1], shape[0], bias=bias)


def _resized_bn(m: nn.BatchNorm2d, shape: tuple[int, ...], _bias: bool) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(shape[0], eps=m.eps, momentum=m.momentum, affine=m.affine,
                          track_running_stats=m.track_running_stats)


_RESIZERS: dict[type, Any] = {nn.Conv2d: _resized_conv, nn.Linear: _resized_linear,
                              nn.BatchNorm2d: _resized_bn}


def _kwargs_suffix(kwargs: dict) -> str:
    return (":" + ",".join(f"{k}={v}" for k, v in kwargs.items())) if kwargs else ""


def load_run(path: str | os.PathLike) -> Run:
    """Open a run directory.

    Raises:
        InputError: the directory does not exist, or has no readable ``model.json``.
    """
    p = Path(path)
    if not p.is_dir():
        raise InputError(f"run directory {str(p)!r} does not exist")
    mj = p / MODEL_JSON
    if not mj.is_file():
        raise InputError(f"{str(p)!r} is not a run: it has no {MODEL_JSON}")
    try:
        meta = json.loads(mj.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{mj} is not a valid run description: {e}") from None
    try:
        RunMeta.from_dict(meta)
    except InputError as e:
        raise InputError(f"{mj} is not a valid run description: {e}") from None
    return Run(p, meta)


def save_model(run_dir: str | os.PathLike, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write ``model.safetensors`` and ``model.json`` into ``run_dir`` (each atomically)."""
    from safetensors.torch import save_file

    d = Path(run_dir)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(d / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "edgepress": __version__})
    write_json(d / MODEL_JSON, meta)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (temp file in the same folder, then rename)."""
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it over ``path``, else delete it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def relative_parent(parent: str | os.PathLike, child: str | os.PathLike) -> str:
    """``parent`` as seen from the run directory ``child`` (what ``model.json`` records beside
    the absolute path, so a folder of runs moved together keeps its links).

    >>> relative_parent("/w/runs/cnn", "/w/runs/cnn-int8")
    '../cnn'
    """
    return os.path.relpath(Path(parent).absolute(), Path(child).absolute())


def check_output_dir(out: str | os.PathLike,
                     inputs: tuple[str | os.PathLike | Run, ...] = ()) -> Path:
    """Validate an output run directory path before any work is done: the one guard every
    producing command goes through.

    Args:
        out: the run directory to write.
        inputs: the runs (or files) the command reads; ``out`` may be none of them, or the
            command would replace what it is reading (an fp32 run silently becoming its own
            int8 child).

    Raises:
        InputError: the path exists and is not a directory, its parent cannot be created, or
            it is one of ``inputs``.
    """
    p = Path(out)
    for given in inputs:
        src = given.path if isinstance(given, Run) else Path(given)
        if src.exists() and p.exists() and p.resolve() == src.resolve():
            raise InputError(f"--out {str(p)!r} is the run being read; write the result "
                             "somewhere else")
    if p.exists() and not p.is_dir():
        raise InputError(f"output path {str(p)!r} exists and is not a directory")
    for parent in p.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"output path {str(p)!r}: {parent} is not a directory")
            break
    return p


def check_output_file(path: str | os.PathLike) -> Path:
    """Validate an output file path (it may exist as a file, to be replaced).

    Raises:
        InputError: the path is a directory, or a parent on the way is a file.
    """
    p = Path(path)
    if p.is_dir():
        raise InputError(f"output file {str(p)!r} is a directory")
    for parent in p.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"output path {str(p)!r}: {parent} is not a directory")
            break
    return p


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike) -> Iterator[Path]:
    """Build a run directory in a temp folder and move it into place only when complete.

    An existing directory at ``out`` is replaced; if anything fails, ``out`` is left as it was.
    """
    final = check_output_dir(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, old / "run")
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def open_trainable(run: str | os.PathLike | Run, data: str | None = None, *,
                   technique: str = "this method") -> tuple[Run, Any]:
    """A run whose PyTorch weights a technique will change, and its data (``data`` or the
    run's own), checked to fit.

    Example:
        >>> open_trainable("model.onnx", technique="pruning")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        InputError: 'model.onnx' is a plain ONNX file: pruning needs a PyTorch model ...

    Raises:
        InputError: a plain ONNX file, a run without weights, or images that do not fit.
    """
    from .data import load_data

    if isinstance(run, Run):
        parent = run
    else:
        p = Path(run)
        if p.is_file() or p.suffix == ".onnx":
            raise InputError(f"{str(p)!r} is a plain ONNX file: {technique} needs a PyTorch "
                             f"model (a run directory with model.safetensors, e.g. from "
                             f"edgepress train)")
        parent = load_run(p)
    if not parent.has_weights:
        raise InputError(f"run {parent.name!r} has no PyTorch weights (it came from an ONNX "
                         f"file): {technique} needs a PyTorch model")
    ds = load_data(data or parent.meta["data"])
    if tuple(ds.input_shape) != parent.input_shape:
        raise InputError(f"{ds.name} images are {list(ds.input_shape)} but {parent.name} takes "
                         f"{list(parent.input_shape)}")
    return parent, ds
