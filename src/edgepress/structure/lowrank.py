"""``--method lowrank``: a layer's weight replaced by its truncated SVD, as two thinner layers.

A Linear ``W`` (m×n) ≈ ``U_r S_r V_rᵀ`` becomes ``Linear(n→r, no bias)`` with weight
``√S_r V_rᵀ`` then ``Linear(r→m)`` with ``U_r √S_r`` and the original bias (the best rank-r
approximation in the Frobenius norm, Eckart–Young). A Conv2d (groups 1) is the same on its kernel
reshaped to ``cout × (cin·k·k)``: a k×k conv to r channels (same stride / padding) then a 1×1 conv.
The rank is ``--rank R`` for every layer or, per layer, the smallest r keeping ``--energy E`` of
``Σσ²``. A layer is skipped (and reported) when the factors would not have fewer parameters than
the layer: ``r(m + n) ≥ mn``.

Example:
    >>> from torch import nn
    >>> pair = factorise(nn.Linear(20, 30), rank=5)
    >>> [tuple(m.weight.shape) for m in pair]
    [(5, 20), (30, 5)]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .config import StructureConfig
from .surgery import get_module, replace_module_


def _matrix(layer: Any) -> torch.Tensor:
    """The weight as ``out × fan-in``."""
    return layer.weight.detach().reshape(layer.weight.shape[0], -1)


def candidates(model: nn.Module, skip: tuple[str, ...] = ()) -> dict[str, nn.Module]:
    """The Linear and Conv2d (groups 1) layers that may be factorised, minus ``skip``.

    Raises:
        InputError: a skip entry matches no layer.
    """
    layers = {n: m for n, m in model.named_modules()
              if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.groups == 1)}
    for s in skip:
        if not any(_matches(n, s) for n in layers):
            raise InputError(f"--skip-layers: no layer named {s!r} (layers: {', '.join(layers)})")
    return {n: m for n, m in layers.items() if not any(_matches(n, s) for s in skip)}


def _matches(name: str, skip: str) -> bool:
    return name == skip or name.startswith(skip + ".")


def factor_params(layer: Any, rank: int) -> int:
    """Weights of the two factors of ``layer`` at ``rank`` (biases excluded)."""
    m, n = _matrix(layer).shape
    return rank * (m + n)


def energy_rank(s: torch.Tensor, energy: float) -> tuple[int, float]:
    """The smallest r whose top singular values keep ``energy`` of ``Σσ²``; and what it keeps."""
    e = s.double() ** 2
    cum = torch.cumsum(e, 0) / e.sum().clamp_min(1e-300)
    r = int(torch.searchsorted(cum, torch.tensor(energy, dtype=cum.dtype) - 1e-12)) + 1
    r = min(max(r, 1), len(s))
    return r, float(cum[r - 1])


def _shell(layer: Any, rank: int) -> nn.Sequential:
    if isinstance(layer, nn.Linear):
        return nn.Sequential(nn.Linear(layer.in_features, rank, bias=False),
                             nn.Linear(rank, layer.out_features, bias=layer.bias is not None))
    return nn.Sequential(
        nn.Conv2d(layer.in_channels, rank, layer.kernel_size, layer.stride, layer.padding,
                  layer.dilation, bias=False, padding_mode=layer.padding_mode),
        nn.Conv2d(rank, layer.out_channels, 1, bias=layer.bias is not None))


@torch.no_grad()
def factorise(layer: Any, rank: int) -> nn.Sequential:
    """``layer`` (Linear or Conv2d, groups 1) as two layers of rank ``rank`` by truncated SVD.

    At ``rank = min(m, n)`` the pair computes the layer exactly (up to float rounding).
    """
    w = _matrix(layer).double()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    root = torch.sqrt(s[:rank])
    first, second = u[:, :rank] * root, root[:, None] * vh[:rank]  # W ≈ first @ second
    pair = _shell(layer, rank)
    reduce: Any = pair[0]
    expand: Any = pair[1]
    reduce.weight.copy_(second.reshape(reduce.weight.shape).float())
    expand.weight.copy_(first.reshape(expand.weight.shape).float())
    if layer.bias is not None:
        expand.bias.copy_(layer.bias.detach())
    return pair


def plan(layers: dict[str, Any], config: StructureConfig) -> dict[str, dict[str, Any]]:
    """Per layer: the rank chosen and the parameter count, or why it is skipped.

    Raises:
        InputError: ``--rank`` is not below ``min(m, n)`` of a layer to factorise.
    """
    rows: dict[str, dict[str, Any]] = {}
    for name, layer in layers.items():
        w = _matrix(layer)
        m, n = w.shape
        s = torch.linalg.svdvals(w.double())
        if config.rank is not None:
            if config.rank >= min(m, n):
                raise InputError(
                    f"--rank {config.rank} must be < min(m, n) = {min(m, n)} for layer {name} "
                    f"({m}×{n}); lower it, use --energy E, or --skip-layers {name}")
            r = config.rank
            kept = float((s[:r] ** 2).sum() / (s ** 2).sum().clamp_min(1e-300))
        else:
            r, kept = energy_rank(s, float(config.energy or 1.0))
        row: dict[str, Any] = {"shape": list(layer.weight.shape), "matrix": [m, n], "rank": r,
                               "energy_kept": kept, "params_before": m * n,
                               "params_after": r * (m + n)}
        if r * (m + n) >= m * n:
            row.update(factorised=False, params_after=m * n,
                       skipped=f"rank {r} of {m}×{n} would not reduce parameters "
                               f"({r}·({m}+{n}) = {r * (m + n)} >= {m * n})")
        else:
            row["factorised"] = True
        rows[name] = row
    return rows


def lowrank_(model: nn.Module, config: StructureConfig) -> dict[str, dict[str, Any]]:
    """Factorise the model's layers in place as ``config`` says; return the per-layer plan."""
    rows = plan(candidates(model, config.skip_layers or ()), config)
    for name, row in rows.items():
        if row["factorised"]:
            replace_module_(model, name, factorise(get_module(model, name), row["rank"]))
    return rows


def replay_lowrank_(model: nn.Module, transform: dict) -> None:
    """Swap each recorded layer for an (empty) pair of its rank; weights are loaded afterwards."""
    for name, rank in transform["ranks"].items():
        layer = get_module(model, name)
        if not isinstance(layer, nn.Linear | nn.Conv2d):
            raise InputError(f"cannot replay lowrank on {name!r}: it is a {type(layer).__name__}")
        replace_module_(model, name, _shell(layer, int(rank)))
