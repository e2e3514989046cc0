"""Load a user's pretrained weights into a model: safetensors, or a PyTorch state dict read with
``torch.load(weights_only=True)`` (never pickle).

A state dict that does not fit is refused with what is wrong: how many keys are missing and
unexpected (the first of each) and the first tensor whose shape differs.

Example:
    >>> import torch, tempfile, os
    >>> from safetensors.torch import save_file
    >>> m = torch.nn.Linear(3, 2)
    >>> p = os.path.join(tempfile.mkdtemp(), "w.safetensors")
    >>> save_file({k: v.contiguous() for k, v in m.state_dict().items()}, p)
    >>> load_weights_(torch.nn.Linear(3, 2), p)
    2
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import InputError

_NESTED = ("state_dict", "model_state_dict", "model", "weights")  # common checkpoint wrappers


def read_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (safetensors, or a state dict loaded without pickle).

    Raises:
        InputError: missing file, unreadable, needs pickle, not a dict of tensors, or NaN/inf.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"weights file {str(p)!r} does not exist")
    state = _read_safetensors(p) if _is_safetensors(p) else _read_torch(p)
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise InputError(f"{p} has NaN/inf weights in {bad[0]!r}")
    return state


def load_weights_(model: nn.Module, path: str | os.PathLike) -> int:
    """Load the weights file into ``model`` (strictly); return how many tensors were loaded.

    Raises:
        InputError: the file cannot be read, or its tensors do not fit the model.
    """
    state = read_state(path)
    check_fits(model, state, str(path))
    model.load_state_dict(state, strict=True)
    return len(state)


def check_fits(model: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """Refuse a state dict whose keys or shapes differ from the model's, saying how.

    Raises:
        InputError: missing or unexpected keys, or a shape that differs.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (first {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (first {unexpected[0]!r})")
        raise InputError(f"{where} does not fit the model: keys {', '.join(parts)}")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise InputError(f"{where} does not fit the model: {k!r} is "
                             f"{list(state[k].shape)} in the file, {list(v.shape)} in the model")


def _is_safetensors(p: Path) -> bool:
    if p.suffix == ".safetensors":
        return True
    head = p.read_bytes()[:16]
    return len(head) >= 9 and head[8:9] == b"{"  # 8-byte header length, then the JSON header


def _read_safetensors(p: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(p))
    except (SafetensorError, OSError, ValueError) as e:
        raise InputError(f"cannot read {p} as safetensors: {e}") from None


_REFUSED = "Weights only load failed"  # how torch.load(weights_only=True) refuses pickled objects


def _read_torch(p: Path) -> dict[str, torch.Tensor]:
    try:
        obj: Any = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # refused objects, zip, EOF, unknown format: all a bad weights file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        if _REFUSED in str(e):
            raise InputError(f"{p} cannot be loaded without pickle (weights_only=True refused "
                             f"it); save a state dict of tensors, or safetensors") from None
        raise InputError(f"cannot read {p} as PyTorch weights: {first}") from None
    if isinstance(obj, dict):
        for key in _NESTED:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise InputError(f"{p} is not a state dict (a dict of parameter names to tensors)")
    return dict(obj)
