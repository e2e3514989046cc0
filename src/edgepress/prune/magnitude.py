"""``--method magnitude``: zero the smallest weights, once (``oneshot``) or gradually (``agp``).

Example:
    >>> from edgepress.zoo import create_model
    >>> m = create_model("mlp", input_shape=(1, 8, 8), num_classes=10)
    >>> method = MagnitudeMethod(m, PruneConfig(method="magnitude", sparsity=0.5))
    >>> method.prepare(total_steps=0)
    >>> round(method.finish()["sparsity"], 3)
    0.5
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .base import Method
from .config import PruneConfig
from .masks import apply_masks_, overall_sparsity, sparsity_masks, threshold_masks
from .schedule import make_schedule


class MagnitudeMethod(Method):
    """Masks from |w|: a threshold, or a sparsity per layer or global, on a schedule."""

    def __init__(self, model: nn.Module, config: PruneConfig, **kw: Any):
        super().__init__(model, config, **kw)
        self.scope: str = config.scope or "layer"
        self.schedule = (make_schedule(config, config.sparsity)
                         if config.sparsity is not None else None)
        self.trace: list[tuple[int, float]] = []  # (step, sparsity) at every mask update

    def prepare(self, total_steps: int) -> None:
        """Threshold or step-0 pruning (the whole job for ``oneshot``)."""
        if self.schedule is None:
            self.masks = threshold_masks(self.layers, float(self.config.threshold or 0.0))
            apply_masks_(self.model, self.masks)
            return
        self._update(0, total_steps)

    def _update(self, step: int, total: int) -> None:
        target = self.schedule.target(step, total) if self.schedule is not None else None
        if target is not None:
            self.masks = sparsity_masks(self.layers, target, self.scope)
            self.trace.append((step, round(target, 6)))
        if self.masks:
            apply_masks_(self.model, self.masks)

    def after_step(self, step: int, total: int) -> None:
        """Advance the schedule (recomputing masks when it says so), then re-apply the masks."""
        if self.schedule is None:
            super().after_step(step, total)
        else:
            self._update(step, total)

    def finish(self) -> dict[str, Any]:
        """Make sure the final target holds (e.g. when fine-tuning was skipped)."""
        final = self.config.sparsity
        if final is not None and (not self.trace or self.trace[-1][1] != round(final, 6)):
            self.masks = sparsity_masks(self.layers, final, self.scope)
            self.trace.append((-1, round(final, 6)))
        super().finish()
        return {"sparsity": overall_sparsity(self.layers), "schedule_trace": self.trace}

