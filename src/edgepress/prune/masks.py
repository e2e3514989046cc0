"""Weight masks for unstructured magnitude pruning: which weights to zero (True = keep).

Only the weights of Conv and Linear layers are pruned; biases and BatchNorm stay as they are.
The threshold rule keeps ``|w| > θ`` (the seed article's §5.1 example, done right)::

    1 2 3              0 0 0
    4 5 6   θ = 4  →   0 5 6
    7 8 9              7 8 9

A target sparsity zeroes exactly ``round(s·n)`` weights of each layer (``scope="layer"``), or
``round(s·N)`` weights ranked across all layers (``scope="global"``) while every layer keeps at
least :data:`GLOBAL_MIN_KEEP` of its weights, so no layer is ever emptied.

Example:
    >>> import torch
    >>> w = torch.arange(1.0, 10.0).reshape(3, 3)
    >>> (w * threshold_mask(w, 4.0)).tolist()
    [[0.0, 0.0, 0.0], [0.0, 5.0, 6.0], [7.0, 8.0, 9.0]]
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn

from ..errors import InputError

Masks = dict[str, torch.Tensor]  # layer name -> bool tensor shaped like its weight (True = keep)
# Under --scope global every layer keeps at least this fraction of its weights (and at least one).
GLOBAL_MIN_KEEP = 0.01
PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def weight_of(layer: nn.Module) -> torch.Tensor:
    """A Conv / Linear layer's weight, typed as a tensor."""
    return cast(torch.Tensor, layer.weight)


def prunable_layers(model: nn.Module, skip: tuple[str, ...] = ()) -> dict[str, nn.Module]:
    """The Conv / Linear layers whose weights may be pruned, by name, minus ``skip``.

    A skip entry matches a layer by its full name or by a prefix ending at a dot
    (``features`` skips ``features.0`` and ``features.2``).

    Raises:
        InputError: a skip entry matches no layer (the message lists the layer names).
    """
    layers = {name: m for name, m in model.named_modules() if isinstance(m, PRUNABLE)}
    for s in skip:
        if not any(_matches(name, s) for name in layers):
            raise InputError(f"--skip-layers: no layer named {s!r} (layers: "
                             f"{', '.join(layers)})")
    return {name: m for name, m in layers.items() if not any(_matches(name, s) for s in skip)}


def _matches(name: str, skip: str) -> bool:
    return name == skip or name.startswith(skip + ".")


def threshold_mask(w: torch.Tensor, theta: float) -> torch.Tensor:
    """Keep ``|w| > theta``; weights with ``|w| <= theta`` are pruned."""
    return w.detach().abs() > theta


def smallest_mask(w: torch.Tensor, k: int) -> torch.Tensor:
    """Prune exactly the ``k`` smallest ``|w|`` (ties broken by position)."""
    flat = w.detach().abs().flatten()
    mask = torch.ones_like(flat, dtype=torch.bool)
    if k > 0:
        mask[torch.argsort(flat, stable=True)[:k]] = False
    return mask.view_as(w)


def threshold_masks(layers: dict[str, nn.Module], theta: float) -> Masks:
    """One absolute threshold for every layer.

    Raises:
        InputError: the threshold would remove every weight of a layer.
    """
    masks = {name: threshold_mask(weight_of(m), theta) for name, m in layers.items()}
    for name, mask in masks.items():
        if not mask.any():
            biggest = float(weight_of(layers[name]).detach().abs().max())
            raise InputError(f"--threshold {theta:g} would remove every weight of layer {name!r} "
                             f"(its largest |w| is {biggest:.4g}); lower it or skip the layer")
    return masks


def layer_masks(layers: dict[str, nn.Module], sparsity: float) -> Masks:
    """Each layer loses exactly ``round(sparsity · n)`` of its smallest weights."""
    return {name: smallest_mask(weight_of(m), round(sparsity * weight_of(m).numel()))
            for name, m in layers.items()}


def global_masks(layers: dict[str, nn.Module], sparsity: float) -> Masks:
    """``round(sparsity · N)`` smallest weights across all layers, never emptying a layer.

    A layer that the global ranking would prune beyond its cap (all but
    ``max(1, ceil(GLOBAL_MIN_KEEP · n))`` weights) is held at the cap, and the rest of the budget
    is re-ranked among the other layers, so the total still hits the target.

    Raises:
        InputError: the target cannot be reached without emptying a layer.
    """
    names = list(layers)
    mags = {n: weight_of(layers[n]).detach().abs().flatten() for n in names}
    caps = {n: t.numel() - max(1, math.ceil(GLOBAL_MIN_KEEP * t.numel())) for n, t in mags.items()}
    budget = round(sparsity * sum(t.numel() for t in mags.values()))
    if budget > sum(caps.values()):
        raise InputError(f"--sparsity {sparsity:g} with --scope global would empty a layer (each "
                         f"keeps at least {GLOBAL_MIN_KEEP:.0%} of its weights); lower it")
    counts: dict[str, int] = {}
    active = names
    while True:
        left = budget - sum(counts.values())
        per = _global_counts([mags[n] for n in active], left)
        over = [n for n, c in zip(active, per, strict=True) if c > caps[n]]
        if not over:
            counts.update(zip(active, per, strict=True))
            break
        counts.update({n: caps[n] for n in over})
        active = [n for n in active if n not in over]
    return {n: smallest_mask(weight_of(layers[n]), counts[n]) for n in names}


def _global_counts(mags: list[torch.Tensor], k: int) -> list[int]:
    """How many of the ``k`` smallest values of all ``mags`` together fall in each tensor."""
    if k <= 0 or not mags:
        return [0] * len(mags)
    pool = torch.cat(mags)
    owner = torch.cat([torch.full((t.numel(),), i) for i, t in enumerate(mags)])
    picked = owner[torch.argsort(pool, stable=True)[:k]]
    return torch.bincount(picked, minlength=len(mags)).tolist()


def sparsity_masks(layers: dict[str, nn.Module], sparsity: float, scope: str) -> Masks:
    """Masks reaching ``sparsity`` per layer or globally (see :func:`layer_masks`)."""
    return _SCOPES[scope](layers, sparsity)


_SCOPES = {"layer": layer_masks, "global": global_masks}


@torch.no_grad()
def apply_masks_(model: nn.Module, masks: Masks) -> None:
    """Zero the pruned weights of ``model`` in place (call after every optimizer step)."""
    for name, mask in masks.items():
        weight_of(model.get_submodule(name)).mul_(mask)


def overall_sparsity(layers: dict[str, nn.Module]) -> float:
    """The zero fraction of all these layers' weights together."""
    n = sum(weight_of(m).numel() for m in layers.values())
    nz = sum(int(torch.count_nonzero(weight_of(m))) for m in layers.values())
    return 1.0 - nz / n if n else 0.0


def layer_sparsity(model: nn.Module, names: list[str] | None = None) -> dict[str, dict]:
    """Per Conv / Linear layer: weight shape, count, non-zeros and the zero fraction."""
    layers = prunable_layers(model)
    out = {}
    for name in names if names is not None else layers:
        w = weight_of(layers[name]).detach()
        nz = int(torch.count_nonzero(w))
        out[name] = {"shape": list(w.shape), "params": w.numel(), "nonzero": nz,
                     "sparsity": 1.0 - nz / w.numel()}
    return out
