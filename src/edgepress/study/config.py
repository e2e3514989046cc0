"""The study's configuration: which model, which data, how quick.

Example:
    >>> c = StudyConfig(model="mlp", quick=True)
    >>> StudyConfig.from_dict(c.to_dict()) == c
    True
    >>> c.budget.train_subset
    5000
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from ..jsonconfig import JsonConfig


@dataclass(frozen=True)
class Budget:
    """How much training each step gets (``None``: the step's own default)."""

    train_subset: int | None = None  # first N training images (baseline, fine-tunes, students)
    finetune_subset: int | None = None  # first N training images for fine-tunes only
    epochs: int | None = None  # baseline epochs
    finetune_epochs: int | None = None  # pruning / structure / recipe fine-tunes
    student_epochs: int | None = None  # distillation (both arms)
    test_subset: int | None = None  # a fixed sample of N test images (quick: smoke-test figures)
    val_subset: int | None = None  # a fixed sample of N validation images (quick)
    latency_seconds: float | None = None  # timed seconds per model in each compare
    row_recipes_only: bool = False  # combined: only the recipes that extend a row
    search_seconds: float | None = None  # combined: the knee of a search of this many seconds
    finetune_teacher: str | None = None  # fine-tunes without a teacher distil from this one


# The full study fits its 30-minute budget on 2 cores (cnn and mobilenet-mini: ~100 s per
# training epoch) with fine-tunes of 2 epochs over 30,000 images and 2-epoch students (two arms:
# with and without the teacher); baselines get their recipe. mobilenet-mini took 32 min with
# 3-epoch students.
# The combined row is the knee of a 10-minute search (the shipped recipes are its first trials).
FULL = Budget(finetune_epochs=2, finetune_subset=30000, student_epochs=2, search_seconds=600)
# The quick study (``make demo``) is a smoke test of the whole pipeline in about three minutes on
# 2 cores: 5,000 training images, 1-2 epochs, fixed samples of 2,000 test and 1,000 validation
# images, 0.25 s of timing per model, and the combined row the knee of a one-minute search.
QUICK = Budget(train_subset=5000, epochs=2, finetune_epochs=1, student_epochs=1,
               test_subset=2000, val_subset=1000, latency_seconds=0.25, row_recipes_only=True,
               search_seconds=60)


@dataclass
class StudyConfig(JsonConfig):
    """What ``edgepress study`` compares.

    Attributes:
        model: the zoo model of the ``original`` row (spec, e.g. ``cnn`` or ``mlp:width=2``).
        data: the data (None: Fashion-MNIST when installed, else digits).
        quick: a training subset and few epochs (``make demo``); figures are then only a smoke
            test.
        seed: the seed of every training step.
        baseline: an existing trained run to use as ``original`` instead of training one.
        runtimes: runtimes to measure on (None: ONNX Runtime, and ExecuTorch when installed).
        recipes: recipe files the ``combined`` row chooses among (None: the ``combined`` row is
            the knee of ``edgepress search``'s front, found in the budget's search seconds, the
            shipped recipes being its first trials).
        search_seconds: how long that search runs (None: the budget's; 0: no search, the
            smallest shipped recipe within 1 pt).
    """

    config_name = "study"

    model: str = "cnn"
    data: str | None = None
    quick: bool = False
    seed: int = 0
    baseline: str | None = None
    runtimes: list[str] | None = None
    recipes: list[str] | None = None
    search_seconds: float | None = None

    def __post_init__(self) -> None:
        import math

        from ..zoo import ModelSpec

        ModelSpec.parse(self.model)  # an unknown model fails before any work
        if self.runtimes is not None and not self.runtimes:
            raise InputError("--runtimes needs at least one runtime")
        s = self.search_seconds
        if s is not None and (not isinstance(s, int | float) or not math.isfinite(s) or s < 0):
            raise InputError(f"--search-seconds must be >= 0 (got {s})")
        if s and self.recipes is not None:
            raise InputError("--search-seconds and --recipes exclude each other: the combined "
                             "row is either searched for or chosen among the named recipes")

    @property
    def searching(self) -> float:
        """Seconds the combined row's search runs (0: chosen among the recipes instead).

        >>> StudyConfig(quick=True).searching, StudyConfig(search_seconds=0).searching
        (60, 0)
        """
        if self.recipes is not None:
            return 0
        return self.budget.search_seconds or 0 if self.search_seconds is None \
            else self.search_seconds

    @property
    def budget(self) -> Budget:
        """The training budget: :data:`QUICK` or :data:`FULL`."""
        return QUICK if self.quick else FULL
