"""Module surgery that keeps every surviving layer's name, so saved weights keep their keys.

Removing a child of an ``nn.Sequential`` deletes it *without renumbering* the others (``features.0``
and ``features.2`` stay ``features.0`` and ``features.2`` when ``features.1`` goes): a structural
transform replayed on a fresh model then gives exactly the state-dict keys that were saved.
Outside a ``Sequential`` a removed module becomes ``nn.Identity`` (the parent's ``forward`` still
calls it; ONNX export leaves no node for it).

Example:
    >>> from torch import nn
    >>> m = nn.Sequential(nn.Linear(2, 2), nn.Dropout(), nn.Linear(2, 2))
    >>> remove_module_(m, "1")
    >>> list(dict(m.named_children()))
    ['0', '2']
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InputError

# Modules that compute nothing at inference (eval mode).
NO_OPS: tuple[type[nn.Module], ...] = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d,
                                       nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def get_module(model: nn.Module, name: str) -> nn.Module:
    """``model.get_submodule(name)``, with a clear error.

    Raises:
        InputError: no module of that name.
    """
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise InputError(f"the model has no layer named {name!r}") from None


def _parent(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent, _, attr = name.rpartition(".")
    return (get_module(model, parent) if parent else model), attr


def replace_module_(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where the module ``name`` is (same name, same place in its parent)."""
    get_module(model, name)
    parent, attr = _parent(model, name)
    if isinstance(parent, nn.Sequential):
        parent._modules[attr] = new
    else:
        setattr(parent, attr, new)


def remove_module_(model: nn.Module, name: str) -> None:
    """Delete the module ``name``: from a ``Sequential`` without renumbering, else → Identity."""
    get_module(model, name)
    parent, attr = _parent(model, name)
    if isinstance(parent, nn.Sequential):
        del parent._modules[attr]
    else:
        setattr(parent, attr, nn.Identity())


def sequential_runs(model: nn.Module) -> list[tuple[str, list[tuple[str, nn.Module]]]]:
    """Every ``nn.Sequential`` in ``model`` with its children as ``(full name, module)``, no-ops
    skipped: the chains along which adjacent layers feed each other directly.
    """
    runs = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Sequential):
            prefix = f"{name}." if name else ""
            runs.append((name, [(prefix + k, m) for k, m in mod.named_children()
                                if not isinstance(m, NO_OPS)]))
    return runs


def count_params(model: nn.Module) -> tuple[int, int]:
    """``(parameters, non-zero parameters)`` of a PyTorch model."""
    total = sum(p.numel() for p in model.parameters())
    nonzero = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    return total, nonzero
