"""A user's own model: ``FILE.py:FACTORY[:k=v,…]`` or ``package.module:FACTORY[:k=v,…]``.

The factory is any callable returning an ``nn.Module``; it gets ``num_classes`` and
``input_shape`` (C, H, W) when its signature takes them (or ``**kwargs``), plus the spec's own
options. A run records the source file and its sha256, so a run whose source changed since is
refused rather than silently rebuilt from different code.

Example:
    >>> is_user_spec("models/net.py:build:width=2"), is_user_spec("cnn:width=0.5")
    (True, False)
    >>> is_user_spec("torchvision.models:mobilenet_v3_small")
    True
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from ..errors import InputError

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")


def is_user_spec(text: str) -> bool:
    """Whether ``text`` names a user's factory (``SOURCE:FACTORY…``) rather than a zoo model."""
    source, _, rest = text.partition(":")
    factory = rest.split(":", 1)[0]
    return bool(_IDENT.match(factory)) and (source.endswith(".py") or bool(_MODULE.match(source)))


def split_user_spec(text: str) -> tuple[str, str, str]:
    """``(source, factory, options)`` of ``SOURCE:FACTORY[:k=v,…]``.

    >>> split_user_spec("net.py:build:width=2,depth=3")
    ('net.py', 'build', 'width=2,depth=3')
    """
    source, _, rest = text.partition(":")
    factory, _, options = rest.partition(":")
    return source, factory, options


def canonical_source(source: str) -> str:
    """A file source as an absolute path (a run must find it from anywhere); a module as is."""
    return str(Path(source).resolve()) if source.endswith(".py") else source


def source_file(source: str) -> Path:
    """The file a source's code lives in (a module's ``__file__``).

    Raises:
        InputError: the file does not exist, or the module cannot be imported.
    """
    if source.endswith(".py"):
        p = Path(source)
        if not p.is_file():
            raise InputError(f"model source file {source!r} does not exist")
        return p
    module = _import_module(source)
    file = getattr(module, "__file__", None)
    if not file:
        raise InputError(f"module {source!r} has no source file to record")
    return Path(file)


def source_record(source: str) -> dict[str, str]:
    """``{"source", "file", "sha256"}``: what ``model.json`` records of a user's model code."""
    f = source_file(source)
    return {"source": canonical_source(source), "file": str(f.resolve()),
            "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}


def check_source(record: dict[str, str], where: str) -> None:
    """Refuse a run whose model source file changed (or vanished) since it was made.

    Raises:
        InputError: the file is missing or its sha256 differs.
    """
    f = Path(record["file"])
    if not f.is_file():
        raise InputError(f"{where}: its model source {record['file']} no longer exists")
    now = hashlib.sha256(f.read_bytes()).hexdigest()
    if now != record["sha256"]:
        raise InputError(f"{where}: its model source {record['file']} changed since the run "
                         f"was made (sha256 {record['sha256'][:12]}… then, {now[:12]}… now)")


def load_factory(source: str, factory: str) -> Callable[..., Any]:
    """The factory callable ``factory`` from a file or module.

    Raises:
        InputError: missing file, import error, no such name, or not callable.
    """
    module = _import_file(Path(source)) if source.endswith(".py") else _import_module(source)
    fn = getattr(module, factory, None)
    if fn is None:
        raise InputError(f"{source} does not define {factory!r}")
    if not callable(fn):
        raise InputError(f"{source}:{factory} is not callable")
    return fn


def build_user_model(source: str, factory: str, kwargs: dict[str, Any], *,
                     input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Call the user's factory and check that it returned a model.

    Raises:
        InputError: the factory is missing, raises, or returns something that is not a module.
    """
    fn = load_factory(source, factory)
    args = dict(kwargs)
    params = _parameters(fn)
    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for name, value in (("num_classes", num_classes), ("input_shape", tuple(input_shape))):
        if takes_all or name in params:
            args.setdefault(name, value)
    try:
        model = fn(**args)
    except Exception as e:  # the user's code: any failure is theirs to read, in one line
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise InputError(f"{source}:{factory} raised {type(e).__name__}: {first}") from None
    if not isinstance(model, nn.Module):
        raise InputError(f"{source}:{factory} returned {type(model).__name__}, not a "
                         "torch.nn.Module")
    return model


def _parameters(fn: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):  # a builtin or C callable: pass what the spec gives only
        return {}


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise InputError(f"model source file {str(path)!r} does not exist")
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"edgepress_user_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InputError(f"cannot import {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling-free helpers look modules up here
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise InputError(f"importing {path} failed: {type(e).__name__}: {first}") from None
    return module


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise InputError(f"cannot import module {name!r}: {type(e).__name__}: {first}") from None
