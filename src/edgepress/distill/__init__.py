"""Knowledge distillation (Hinton et al. 2015), always beside a no-teacher baseline.

Example:
    >>> from edgepress.distill import DistillConfig, distill
    >>> s = distill("runs/cnn", "lenet5:width=0.25", DistillConfig(),
    ...             out="runs/kd")  # doctest: +SKIP
"""

from .config import DistillConfig
from .loss import kd_loss
from .run import distill, distill_

__all__ = ["DistillConfig", "distill", "distill_", "kd_loss"]
