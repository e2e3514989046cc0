"""Fine-tuning after a structural change: the model's recipe at a lower rate, zeros kept.

The learning rate defaults to the recipe's times :data:`~edgepress.prune.config.FINETUNE_LR_SCALE`
(the model is already trained), cosine-annealed from the start as pruning does. A parent that was
pruned keeps its zeros: every Conv / Linear weight that had exact zeros is masked again after each
optimizer step, so a low-rank or clustered child of a sparse model does not silently densify the
layers that were left as they were.

Example:
    >>> tc = finetune_config(StructureConfig(method="cluster"), TrainConfig(lr=4e-3))
    >>> tc.epochs, tc.lr, tc.schedule
    (2, 0.002, 'cosine')
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..data import Dataset
from ..finetune import FINETUNE_LR_SCALE
from ..training import LossFn, StepHook, TrainConfig, cross_entropy, fit
from .config import StructureConfig

_WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def finetune_config(config: StructureConfig, recipe: TrainConfig | None = None) -> TrainConfig:
    """The fine-tuning :class:`TrainConfig`: the model's recipe with the structure options."""
    base = recipe or TrainConfig()
    lr = config.finetune_lr if config.finetune_lr is not None else base.lr * FINETUNE_LR_SCALE
    return TrainConfig(**{**base.to_dict(), "epochs": int(config.finetune_epochs or 0), "lr": lr,
                          "train_subset": config.train_subset, "schedule": "cosine",
                          "seed": config.seed})


def zero_masks(model: nn.Module) -> dict[Any, torch.Tensor]:
    """``{layer: keep-mask}`` for every Conv / Linear whose weight has exact zeros (pruned)."""
    masks = {}
    for m in model.modules():
        if isinstance(m, _WEIGHTED) and not bool(m.weight.detach().all()):
            masks[m] = m.weight.detach() != 0
    return masks


def finetune(model: nn.Module, data: Dataset, config: StructureConfig,
             recipe: TrainConfig | None = None, *, progress: bool = True,
             loss_fn: LossFn = cross_entropy, after_step: StepHook | None = None,
             params: list[nn.Parameter] | None = None,
             teacher: nn.Module | None = None) -> dict[str, Any]:
    """Fine-tune ``model`` in place (train split) keeping its zeros; return the training record
    ``{"config", "history", "seconds"}`` (no history when ``finetune_epochs`` is 0). With a
    ``teacher``, its soft targets are mixed into ``loss_fn`` (``finetune_alpha``,
    ``finetune_temperature``; see :mod:`edgepress.finetune`).
    """
    tc = finetune_config(config, recipe)
    if tc.epochs == 0:
        return {"config": tc.to_dict(), "history": [], "seconds": 0.0}
    if teacher is not None:
        from ..finetune import distilled

        loss_fn = distilled(loss_fn, teacher, alpha=float(config.finetune_alpha or 0.7),
                            temperature=float(config.finetune_temperature or 4.0))
    masks = zero_masks(model)
    result = fit(model, data, tc, loss_fn=loss_fn, after_step=_compose(after_step, masks),
                 progress=progress, params=params)
    return {"config": tc.to_dict(), "history": result.history,
            "seconds": round(result.seconds, 2)}


def _compose(after_step: StepHook | None,
             masks: dict[Any, torch.Tensor]) -> Callable[[int, int], None]:
    @torch.no_grad()
    def hook(step: int, total: int) -> None:
        if after_step is not None:
            after_step(step, total)
        for layer, mask in masks.items():
            layer.weight.mul_(mask)

    return hook
