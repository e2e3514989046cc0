"""``--method nm``: N:M semi-structured sparsity along the input dimension.

In every group of M consecutive weights along a layer's input dimension (Linear: a row's ``in``
entries; Conv: the input channels at each output channel and kernel position) only the N largest
``|w|`` are kept — the pattern sparse tensor cores and some NPUs accelerate (2:4 = 50%).
A layer whose input dimension is not a multiple of M (a 1-channel first conv, a depthwise conv)
cannot hold the pattern and is left dense; the report lists it with the reason.

Example:
    >>> import torch
    >>> w = torch.tensor([[1.0, -4.0, 3.0, 2.0, 0.5, 0.25, -0.125, 0.375]])
    >>> nm_mask(w, 2, 4).int().tolist()
    [[0, 1, 1, 0, 1, 0, 0, 1]]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .base import Method
from .config import PruneConfig
from .masks import apply_masks_, overall_sparsity, weight_of


def nm_mask(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the ``n`` largest ``|w|`` of every ``m`` consecutive inputs (dim 1 of ``w``).

    Raises:
        InputError: the input dimension is not a multiple of ``m``.
    """
    if w.shape[1] % m:
        raise InputError(f"input dimension {w.shape[1]} is not a multiple of {m}")
    grouped = w.detach().abs().movedim(1, -1)  # [out, *kernel, in]
    shape = grouped.shape
    groups = grouped.reshape(-1, m)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(1, torch.topk(groups, n, dim=1, sorted=False).indices, True)
    return keep.reshape(shape).movedim(-1, 1)


def nm_holds(w: torch.Tensor, n: int, m: int) -> bool:
    """Whether every group of ``m`` inputs of ``w`` has at most ``n`` non-zeros."""
    groups = w.detach().movedim(1, -1).reshape(-1, m)
    return bool(((groups != 0).sum(1) <= n).all())


class NMMethod(Method):
    """Prune every eligible layer to N:M once; the masks stay fixed through fine-tuning."""

    def __init__(self, model: nn.Module, config: PruneConfig, **kw: Any):
        super().__init__(model, config, **kw)
        self.n, self.m = config.nm_pattern
        self.skipped = {name: f"input dimension {weight_of(mod).shape[1]} is not a multiple "
                              f"of {self.m}" for name, mod in self.layers.items()
                        if weight_of(mod).shape[1] % self.m}
        self.layers = {k: v for k, v in self.layers.items() if k not in self.skipped}
        if not self.layers:
            raise InputError(f"--nm {config.nm}: no layer has an input dimension that is a "
                             f"multiple of {self.m}")

    def prepare(self, total_steps: int) -> None:
        """Compute the N:M masks from the trained weights and apply them."""
        self.masks = {name: nm_mask(weight_of(mod), self.n, self.m)
                      for name, mod in self.layers.items()}
        apply_masks_(self.model, self.masks)

    def finish(self) -> dict[str, Any]:
        """Re-apply the masks and check the pattern holds everywhere."""
        super().finish()
        held = all(nm_holds(weight_of(mod), self.n, self.m) for mod in self.layers.values())
        return {"sparsity": overall_sparsity(self.layers), "pattern": f"{self.n}:{self.m}",
                "pattern_holds": held, "skipped_layers": self.skipped}
