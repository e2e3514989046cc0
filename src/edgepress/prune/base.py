"""The shape every pruning method shares, so that one driver runs them all.

A method is built on a model and a config, then driven through the one fine-tuning loop::

    method.prepare(total_steps)     # prune once (oneshot, N:M, channels) or get ready (AGP, L1)
    fit(model, data, train_config, loss_fn=method.loss_fn, after_step=method.after_step)
    extra = method.finish()         # final masks (AGP end, L1 threshold) and what to report

Masks, when a method keeps them, are re-applied after every optimizer step, so pruned weights
stay exactly zero through fine-tuning and into the exported model.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..training import cross_entropy
from .config import PruneConfig
from .masks import Masks, apply_masks_, prunable_layers


class Method:
    """Base class: no masks, the plain cross-entropy loss, nothing to do after a step."""

    def __init__(self, model: nn.Module, config: PruneConfig, *,
                 input_shape: tuple[int, ...] = (), data: Any = None):
        self.model, self.config, self.input_shape = model, config, tuple(input_shape)
        self.data = data  # the Dataset (calibration images for data-driven methods)
        self.layers = prunable_layers(model, config.skip_layers)
        self.masks: Masks = {}

    def prepare(self, total_steps: int) -> None:
        """Prune before fine-tuning (if the method does); ``total_steps`` of fine-tuning follow."""

    def loss_fn(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The fine-tuning loss (cross-entropy unless the method adds a penalty)."""
        return cross_entropy(model, x, y)

    def after_step(self, step: int, total: int) -> None:
        """Re-apply the masks after an optimizer step."""
        if self.masks:
            apply_masks_(self.model, self.masks)

    def finish(self) -> dict[str, Any]:
        """Finalise the model after fine-tuning; return method-specific report fields."""
        if self.masks:
            apply_masks_(self.model, self.masks)
        return {}

    @property
    def pruned_layers(self) -> list[str]:
        """Names of the layers this method prunes."""
        return list(self.layers)
