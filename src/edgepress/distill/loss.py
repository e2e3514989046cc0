"""The distillation loss of Hinton et al. (2015) and the hint (feature) loss.

    L = α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − α)·CE(y, softmax(z_s))

KL uses batch-mean reduction; T² keeps the soft term's gradient scale comparable across
temperatures.

Example:
    >>> import torch
    >>> zs, zt, y = torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([0])
    >>> float(kd_loss(zs, zt, y, temperature=2.0, alpha=1.0))  # same logits: KL = 0
    0.0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
            temperature: float, alpha: float) -> torch.Tensor:
    """α·T²·KL(teacher ‖ student at T) + (1 − α)·CE(labels, student)."""
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits / t, dim=1)
    soft = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)
    if alpha == 1.0:
        return alpha * soft
    return alpha * soft + (1.0 - alpha) * F.cross_entropy(student_logits, labels)


class HintProjection(nn.Module):
    """A learned 1×1 conv (or linear, for flat features) from student to teacher features."""

    def __init__(self, student_channels: int, teacher_channels: int, spatial: bool):
        super().__init__()
        self.proj: nn.Module = (nn.Conv2d(student_channels, teacher_channels, 1) if spatial
                                else nn.Linear(student_channels, teacher_channels))

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        """MSE between the projected student feature and the teacher feature."""
        p = self.proj(f_s)
        if p.dim() == 4 and p.shape[-2:] != f_t.shape[-2:]:
            p = F.adaptive_avg_pool2d(p, (int(f_t.shape[-2]), int(f_t.shape[-1])))
        return F.mse_loss(p, f_t)
