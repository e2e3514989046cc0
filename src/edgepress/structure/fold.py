"""``--method fold``: BatchNorm folded into the conv / linear layer before it — exact.

In eval mode BN is an affine map per channel, ``y = s·(z − μ) + β`` with ``s = γ / √(σ² + ε)``;
applied to ``z = W x + b`` it is the layer ``W' = s·W`` (row-wise), ``b' = s·(b − μ) + β``.
The arithmetic is done in float64 and rounded once, so the folded model matches the unfolded
one to float32 rounding. A BN is folded when it directly follows a Conv / Linear with as many
output channels inside the same ``nn.Sequential`` (the zoo's conv-BN-act blocks); any other BN is
left and reported.

Example:
    >>> from torch import nn
    >>> m = nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.BatchNorm2d(4)).eval()
    >>> fold_bn_(m)
    [['0', '1']]
    >>> list(dict(m.named_children())), m[0].bias is not None
    (['0'], True)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .surgery import get_module, remove_module_, sequential_runs

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def foldable_pairs(model: nn.Module) -> list[list[str]]:
    """``[layer, bn]`` name pairs where ``bn`` directly follows ``layer`` and can fold into it."""
    pairs = []
    for _, children in sequential_runs(model):
        for (a_name, a), (b_name, b) in zip(children, children[1:], strict=False):
            if (isinstance(a, _LAYERS) and isinstance(b, _BN) and b.track_running_stats
                    and b.running_mean is not None and _out_channels(a) == b.num_features):
                pairs.append([a_name, b_name])
    return pairs


def leftover_bns(model: nn.Module) -> list[str]:
    """BatchNorm layers still in the model (none after folding the zoo's models)."""
    return [n for n, m in model.named_modules() if isinstance(m, _BN)]


def _out_channels(layer: Any) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


@torch.no_grad()
def fold_into(layer: Any, bn: Any) -> None:
    """Fold ``bn`` (its running statistics and affine) into ``layer``'s weight and bias."""
    w = layer.weight.detach().double()
    mean, var = bn.running_mean.double(), bn.running_var.double()
    gamma = bn.weight.detach().double() if bn.affine else torch.ones_like(mean)
    beta = bn.bias.detach().double() if bn.affine else torch.zeros_like(mean)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = layer.bias.detach().double() if layer.bias is not None else torch.zeros_like(mean)
    new_w = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
    new_b = (bias - mean) * scale + beta
    layer.weight.copy_(new_w.to(layer.weight.dtype))
    if layer.bias is None:
        layer.bias = nn.Parameter(new_b.to(layer.weight.dtype))
    else:
        layer.bias.copy_(new_b.to(layer.bias.dtype))


def fold_bn_(model: nn.Module) -> list[list[str]]:
    """Fold every foldable BatchNorm into its layer and delete it; return the ``[layer, bn]``
    pairs folded (empty when there was nothing to fold).

    The model must be trained (the BN running statistics are what get folded); it is left in
    eval mode, where the folded and unfolded models agree.
    """
    model.eval()
    pairs = foldable_pairs(model)
    for a, b in pairs:
        fold_into(get_module(model, a), get_module(model, b))
        remove_module_(model, b)
    return pairs


def replay_fold_(model: nn.Module, transform: dict) -> None:
    """Rebuild the folded structure (a bias on each layer, its BN gone); weights come later."""
    for a, b in transform["pairs"]:
        layer = get_module(model, a)
        if layer.bias is None:
            layer.bias = nn.Parameter(torch.zeros(_out_channels(layer)))
        remove_module_(model, b)
