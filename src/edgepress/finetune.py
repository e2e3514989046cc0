"""The one fine-tune shape every family shares: how a compressed model is recovered.

Pruning, structural methods, quantization-aware training and distillation each train after (or
while) they change the model. :class:`Finetune` says how, the same way for all: epochs, the peak
learning rate (``None``: the model's recipe rate × :data:`FINETUNE_LR_SCALE`), batch size, a
training subset, the schedule, and an optional teacher — ``none``, ``parent`` (the model before
this step) or a run directory — with the soft-target weight ``alpha`` and ``temperature``.

With a teacher the fine-tune is *distillation-aided*: the step's own loss (cross-entropy, plus an
L1 penalty or a clustering term) stays as the hard term and the teacher's tempered distribution
is mixed in (:func:`distilled`)::

    L = α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − α)·loss_fn(model, x, y)

On data without labels (``photos``: every ``y`` is −1) there is no hard term: the loss is
T²·KL alone, whatever ``alpha`` says — recovery without labels is distillation from the teacher
(``teacher: parent``, the model before the step). Without a teacher such data cannot be trained
on, and :func:`~edgepress.training.fit` says so.

The student's logits are read from its one forward pass inside ``loss_fn`` (a forward hook), so
distillation costs one teacher forward per batch and nothing more.

Every step config answers :func:`finetune_of` (its options in this shape) and
:func:`with_finetune` (a copy with other options), so the study, the search and the runner never
guess a family's field names.

Example:
    >>> ft = Finetune(epochs=2, teacher="parent")
    >>> Finetune.from_dict(ft.to_dict()) == ft
    True
    >>> Finetune(epochs=-1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edgepress.errors.InputError: --finetune-epochs must be >= 0 (got -1)
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError
from .jsonconfig import JsonConfig

TEACHER_NONE, TEACHER_PARENT = "none", "parent"

FINETUNE_LR_SCALE = 0.5  # a fine-tune's default peak rate: the recipe's rate times this


@dataclass
class Finetune(JsonConfig):
    """How a changed model is fine-tuned (on the train split; validation is only reported).

    ``lr=None`` takes the model's default recipe rate times :data:`FINETUNE_LR_SCALE`;
    ``batch_size=None`` the recipe's batch size. The default cosine schedule starts at the peak
    rate (the model is already trained: no warm-up) and anneals to zero.
    """

    config_name = "fine-tune"

    epochs: int = 2
    lr: float | None = None
    batch_size: int | None = None
    train_subset: int | None = None
    schedule: str = "cosine"
    teacher: str = "none"  # none | parent | RUN: distillation-aided recovery
    alpha: float = 0.7  # weight of the teacher's soft targets (with a teacher)
    temperature: float = 4.0

    def __post_init__(self) -> None:
        from .training import TrainConfig

        check_teacher_options(self.teacher, self.alpha, self.temperature)
        if not isinstance(self.epochs, int) or isinstance(self.epochs, bool) or self.epochs < 0:
            raise InputError(f"--finetune-epochs must be >= 0 (got {self.epochs})")
        if self.lr is not None and not (isinstance(self.lr, int | float)
                                        and math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"fine-tune lr must be > 0 (got {self.lr})")
        TrainConfig(schedule=self.schedule)  # raises InputError on an unknown schedule
        for name in ("batch_size", "train_subset"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InputError(f"fine-tune {name.replace('_', ' ')} must be >= 1 (got {value})")

    @property
    def has_teacher(self) -> bool:
        """Whether the fine-tune distils from a teacher (and trains at all).

        >>> Finetune(teacher="parent").has_teacher, Finetune(epochs=0, teacher="parent").has_teacher
        (True, False)
        """
        return self.teacher != "none" and self.epochs > 0

    def train_config(self, recipe: Any = None, *, seed: int = 0) -> Any:
        """The :class:`~edgepress.training.TrainConfig` of this fine-tune: ``recipe`` (the
        model's training recipe; default ``TrainConfig()``) with these options applied.

        >>> Finetune(epochs=3).train_config().epochs
        3
        """
        from .training import TrainConfig

        base = recipe or TrainConfig()
        return TrainConfig(**{**base.to_dict(), "epochs": self.epochs,
                              "lr": self.lr if self.lr is not None else base.lr * FINETUNE_LR_SCALE,
                              "batch_size": self.batch_size or base.batch_size,
                              "train_subset": self.train_subset, "schedule": self.schedule,
                              "seed": seed})


C = TypeVar("C")


def finetune_of(config: Any) -> Finetune | None:
    """The fine-tune options of a step config in the shared shape (``None``: the step does not
    train, e.g. static int8 or a BatchNorm fold).

    >>> from edgepress.prune import PruneConfig
    >>> finetune_of(PruneConfig(method="nm", nm="2:4")).epochs
    2
    """
    get = getattr(config, "finetune_options", None)
    return get() if get is not None else None


def with_finetune(config: C, ft: Finetune) -> C:
    """A copy of ``config`` fine-tuning as ``ft`` says (configs that do not train: unchanged).

    >>> from edgepress.prune import PruneConfig
    >>> with_finetune(PruneConfig(method="nm", nm="2:4"), Finetune(epochs=5)).finetune.epochs
    5
    """
    put = getattr(config, "with_finetune", None)
    return put(ft) if put is not None and finetune_of(config) is not None else config


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
    from .checkpoint import load_run

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
        if bool((y < 0).all()):  # no labels (photos): the teacher's soft targets are the loss
            with torch.no_grad():
                target = teacher(x)
            return F.kl_div(F.log_softmax(model(x) / t, dim=1), F.log_softmax(target / t, dim=1),
                            reduction="batchmean", log_target=True) * (t * t)
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

    loss.label_free = True  # type: ignore[attr-defined]  # works on unlabelled data
    return loss
