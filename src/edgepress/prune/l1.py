"""``--method l1``: fine-tune with the penalty ``λ·Σ|w|`` on the prunable weights, then threshold.

The penalty pushes unimportant weights towards zero during training, so the cut removes weights
that the network has already learned to do without. The cut is either a fixed threshold
(``--threshold``, default :data:`~.config.L1_DEFAULT_THRESHOLD`; the sparsity it reaches is
reported) or the magnitude ranking that reaches ``--sparsity`` (per layer or global). It happens
after ``l1.cut_at`` of the fine-tune steps; the rest fine-tune without the penalty, masks fixed.

Example:
    >>> import torch
    >>> from edgepress.zoo import create_model
    >>> m = create_model("mlp", input_shape=(1, 8, 8), num_classes=10)
    >>> method = L1Method(m, PruneConfig(method="l1", l1_lambda=1e-4, sparsity=0.5))
    >>> x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    >>> ce = torch.nn.functional.cross_entropy(m(x), y)
    >>> bool(torch.isclose(method.loss_fn(m, x, y) - ce, 1e-4 * method.penalty(), rtol=1e-4))
    True
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..training import cross_entropy
from .base import Method
from .config import L1_DEFAULT_THRESHOLD, PruneConfig
from .masks import apply_masks_, overall_sparsity, sparsity_masks, threshold_masks, weight_of

# Weights this small after L1 training count as "driven to zero" in the report.
NEAR_ZERO = 1e-4


class L1Method(Method):
    """L1-regularised fine-tuning, a threshold or sparsity cut, then fine-tuning, masks fixed."""

    def __init__(self, model: nn.Module, config: PruneConfig, **kw: Any):
        super().__init__(model, config, **kw)
        self.weights = [weight_of(m) for m in self.layers.values()]
        self.lam = float(config.l1_lambda or 0.0)
        self.cut: dict[str, Any] = {}

    def penalty(self) -> torch.Tensor:
        """``Σ|w|`` over the prunable weights."""
        return torch.stack([w.abs().sum() for w in self.weights]).sum()

    def loss_fn(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy plus ``λ·Σ|w|`` (until the cut; plain cross-entropy after it)."""
        loss = cross_entropy(model, x, y)
        return loss if self.cut else loss + self.lam * self.penalty()

    def after_step(self, step: int, total: int) -> None:
        """Cut once ``l1.cut_at`` of the steps are done; afterwards keep the masks applied."""
        if not self.cut and step >= round(self.config.l1.cut_at * total):
            self._cut(step)
        super().after_step(step, total)

    def _cut(self, step: int) -> None:
        near_zero = _near_zero_fraction(self.layers)
        c = self.config
        if c.sparsity is not None:
            self.masks = sparsity_masks(self.layers, c.sparsity, c.scope or "layer")
            theta = None
        else:
            theta = c.threshold if c.threshold is not None else L1_DEFAULT_THRESHOLD
            self.masks = threshold_masks(self.layers, theta)
        apply_masks_(self.model, self.masks)
        self.cut = {"cut_step": step, "threshold": theta, "sparsity_at_cut":
                    overall_sparsity(self.layers), "near_zero_fraction_before_cut": near_zero}

    def finish(self) -> dict[str, Any]:
        """Cut now if fine-tuning ended first; report the sparsity reached."""
        if not self.cut:
            self._cut(-1)
        super().finish()
        return {"sparsity": overall_sparsity(self.layers), **self.cut, "near_zero": NEAR_ZERO,
                "l1_lambda": self.config.l1_lambda}


def _near_zero_fraction(layers: dict[str, nn.Module]) -> float:
    n = sum(weight_of(m).numel() for m in layers.values())
    small = sum(int((weight_of(m).detach().abs() <= NEAR_ZERO).sum()) for m in layers.values())
    return small / n if n else 0.0
