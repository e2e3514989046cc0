"""The distillation configuration: temperature, α, seeds, teacher-logit caching, hint layer.

Example:
    >>> c = DistillConfig(temperature=4, alpha=0.7)
    >>> DistillConfig.from_dict(c.to_dict()) == c
    True
    >>> DistillConfig(temperature=0)
    Traceback (most recent call last):
    ...
    edgepress.errors.InputError: temperature must be > 0 (got 0)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..jsonconfig import CONFIG_VERSION, JsonConfig, check_version


@dataclass
class DistillConfig(JsonConfig):
    """How a student learns from a teacher (Hinton et al. 2015).

    Attributes:
        temperature: T > 0; both softmaxes are taken at T, the KL term is scaled by T².
        alpha: weight of the soft (teacher) term in [0, 1]; 1 − α weighs hard-label CE.
        epochs: training epochs of both arms (None: the student's default recipe).
        seeds: how many seeds to train each arm with (seed, seed + 1, ...).
        seed: the first seed.
        cache_teacher: compute teacher logits once over the train split (fast, N×classes floats
            in memory) instead of on the fly per batch (no memory, one teacher forward per step).
            Identical results: the teacher is frozen and there is no augmentation.
        hint: ``"teacher_layer:student_layer"`` module names for feature (hint) distillation
            through a learned 1×1 projection; None for logits only.
        hint_weight: weight β of the hint MSE term.
        lr, batch_size: overrides of the student's default recipe (both arms).
        train_subset: train both arms on the first N training images only (quick runs).
    """

    config_name = "distillation"

    temperature: float = 4.0
    alpha: float = 0.7
    epochs: int | None = None
    seeds: int = 1
    seed: int = 0
    cache_teacher: bool = False
    hint: str | None = None
    hint_weight: float = 1.0
    lr: float | None = None
    batch_size: int | None = None
    train_subset: int | None = None
    version: int = CONFIG_VERSION  # of this config's format

    def __post_init__(self) -> None:
        check_version("distillation", self.version)
        if not self.temperature > 0:
            raise InputError(f"temperature must be > 0 (got {self.temperature})")
        if not 0.0 <= self.alpha <= 1.0:
            raise InputError(f"alpha must be in [0, 1] (got {self.alpha})")
        if self.seeds < 1:
            raise InputError(f"seeds must be >= 1 (got {self.seeds})")
        if self.epochs is not None and self.epochs < 1:
            raise InputError(f"epochs must be >= 1 (got {self.epochs})")
        if self.hint is not None and len(self.hint.split(":")) != 2:
            raise InputError(f"hint must be 'teacher_layer:student_layer' (got {self.hint!r})")
        if self.train_subset is not None and self.train_subset < 1:
            raise InputError(f"train subset must be >= 1 (got {self.train_subset})")
        if self.hint_weight < 0:
            raise InputError(f"hint weight must be >= 0 (got {self.hint_weight})")

    @property
    def hint_layers(self) -> tuple[str, str] | None:
        """``(teacher_layer, student_layer)`` or None."""
        if self.hint is None:
            return None
        t, s = self.hint.split(":")
        return t, s


@dataclass
class DistillStepConfig(DistillConfig):
    """A distillation step: the incoming run is the teacher, ``student`` the new model.

    ``student`` is a zoo spec (``lenet5:width=0.5``), ``same[:k=v]`` for the teacher's own zoo
    architecture with these options (``same:width=0.5``: a half-width student of the same
    family), or a run directory to start from. Every other key is a
    :class:`~edgepress.distill.DistillConfig` option.
    """

    config_name = "distill step"

    student: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.student, str) or not self.student:
            raise InputError("a distill step needs 'student: NAME[:k=v]' (e.g. "
                             "same:width=0.5 or lenet5:width=0.5)")

    def distill_config(self) -> DistillConfig:
        """The options without the student: what :func:`~edgepress.distill.distill` takes."""
        return DistillConfig(**{f.name: getattr(self, f.name)
                                for f in dataclasses.fields(DistillConfig)})

    def resolve_student(self, teacher_zoo: str | None) -> str:
        """The student spec with ``same`` replaced by the teacher's zoo name.

        Raises:
            InputError: an unknown model or bad options in the spec.
        """
        from ..zoo import ModelSpec

        name, sep, rest = self.student.partition(":")
        if name == "same":
            if teacher_zoo is None:
                raise InputError("student 'same' needs a teacher from the zoo")
            spec = teacher_zoo + sep + rest
        elif Path(self.student).is_dir():
            return self.student
        else:
            spec = self.student
        ModelSpec.parse(spec)  # raises InputError
        return spec
