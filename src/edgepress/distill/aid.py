"""Distillation-aided fine-tuning: any pruned, factorised or clustered model can be recovered by
distillation from its unpruned parent (``teacher: parent``) or from another run
(``teacher: RUN``), instead of from the labels alone (``teacher: none``).

The fine-tune's own loss (cross-entropy, plus an L1 penalty or a clustering term) stays as the
hard term; the soft term is the teacher's tempered distribution:

    L = α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − α)·loss_fn(model, x, y)

The student's logits are read from its one forward pass inside ``loss_fn`` (a forward hook), so
distillation costs one teacher forward per batch and nothing more.

Example:
    >>> import torch
    >>> from edgepress.training import cross_entropy
    >>> net = torch.nn.Linear(4, 3)
    >>> loss = distilled(cross_entropy, net, alpha=1.0, temperature=2.0)  # teacher = itself
    >>> float(loss(net, torch.ones(2, 4), torch.tensor([0, 1])).detach()) == 0.0
    True
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

TEACHER_NONE, TEACHER_PARENT = "none", "parent"


def check_teacher_options(teacher: Any, alpha: Any, temperature: Any) -> None:
    """Validate ``teacher: none | parent | RUN``, ``alpha`` in [0, 1] and ``temperature`` > 0.

    Raises:
        InputError: a bad value.
    """
    if not isinstance(teacher, str) or not teacher:
        raise InputError(f"fine-tune teacher must be none, parent or a run directory "
                         f"(got {teacher!r})")
    if not isinstance(alpha, int | float) or not 0.0 <= alpha <= 1.0:
        raise InputError(f"fine-tune alpha must be in [0, 1] (got {alpha!r})")
    if not isinstance(temperature, int | float) or not (math.isfinite(temperature)
                                                          and temperature > 0):
        raise InputError(f"fine-tune temperature must be > 0 (got {temperature!r})")


def resolve_teacher(teacher: str, parent: Any, *, input_shape: tuple[int, ...],
                    num_classes: int) -> nn.Module | None:
    """The teacher model (eval mode, frozen) named by ``teacher``, or ``None`` for ``none``.

    Args:
        teacher: ``none``, ``parent`` or a run directory.
        parent: the run being fine-tuned from (a :class:`~edgepress.checkpoint.Run`).
        input_shape, num_classes: what the teacher must take and give.

    Raises:
        InputError: a run that does not exist, has no PyTorch weights, or does not fit.
    """
    from ..checkpoint import load_run

    if teacher == TEACHER_NONE:
        return None
    run = parent if teacher == TEACHER_PARENT else load_run(Path(os.fspath(teacher)))
    if tuple(run.input_shape) != tuple(input_shape) or \
            run.meta["architecture"]["num_classes"] != num_classes:
        raise InputError(f"teacher {run.path} takes {list(run.input_shape)} and gives "
                         f"{run.meta['architecture']['num_classes']} classes; the student takes "
                         f"{list(input_shape)} and gives {num_classes}")
    model = run.build_model().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def distilled(loss_fn: Any, teacher: nn.Module, *, alpha: float, temperature: float) -> Any:
    """``loss_fn(model, x, y)`` with the teacher's soft targets mixed in (see the module)."""
    t = float(temperature)

    def loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen: list[torch.Tensor] = []
        handle = model.register_forward_hook(lambda m, i, out: seen.append(out))
        try:
            hard = loss_fn(model, x, y)
        finally:
            handle.remove()
        student = seen[-1] if seen else model(x)
        with torch.no_grad():
            target = teacher(x)
        soft = F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(target / t, dim=1),
                        reduction="batchmean", log_target=True) * (t * t)
        return alpha * soft + (1.0 - alpha) * hard

    return loss
