"""The recipe step registry: step name → (config class, verb, what it needs and makes).

A step is any technique with a validated config dataclass (``from_dict`` / ``to_dict``) and a
verb ``verb(run, config, *, out, data, progress)`` that writes a complete, measured run
directory. Registering one is one line::

    register_step("structure", StructureConfig, structure)

What a step needs from its parent and what it leaves decides which orders are possible:

* ``needs``: ``"torch"`` (a PyTorch fp32 model: prune, distill, structure, QAT) or ``"fp32"``
  (an fp32 deployment, PyTorch or ONNX: static / dynamic / weight-only quantization);
* ``makes``: ``"torch"`` (a PyTorch fp32 model) or ``"quantized"`` (the deployment is a
  quantized ONNX file; the fp32 weights beside it no longer describe what runs).

Example:
    >>> get_step("prune").keys() >= {"method", "sparsity", "finetune_epochs"}
    True
    >>> get_step("quantize").needs(get_step("quantize").parse({"mode": "qat"}))
    'torch'
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..distill.config import DistillConfig
from ..errors import InputError

Verb = Callable[..., Any]


def _always(value: str) -> Callable[[Any], str]:
    return lambda config: value


@dataclass(frozen=True)
class StepType:
    """One kind of recipe step.

    Attributes:
        name: the recipe's ``step:`` value.
        config: the config class (a dataclass with ``from_dict`` and ``to_dict``).
        verb: ``verb(run, config, *, out, data, progress)`` writes a measured run at ``out``.
        needs: config → ``"torch"`` or ``"fp32"`` (what the parent must be).
        makes: config → ``"torch"`` or ``"quantized"`` (what the step leaves).
        aliases: flat recipe keys for nested options, e.g. ``finetune_epochs`` →
            ``finetune.epochs``.
        unavailable: why the step cannot run in this build (None when it can).
    """

    name: str
    config: type | None
    verb: Verb | None
    needs: Callable[[Any], str] = _always("torch")
    makes: Callable[[Any], str] = _always("torch")
    aliases: Mapping[str, str] = field(default_factory=dict)
    unavailable: str | None = None

    def keys(self) -> set[str]:
        """Every option key a recipe may give this step (config fields and aliases)."""
        if self.config is None:
            return set()
        return {f.name for f in dataclasses.fields(self.config)} | set(self.aliases)

    def field_type(self, key: str) -> Any:
        """The declared type of option ``key`` (following an alias into its nested config), or
        ``Any`` when it cannot be told.
        """
        cls: Any = self.config
        for part in self.aliases.get(key, key).split("."):
            if not dataclasses.is_dataclass(cls):
                return Any
            try:
                cls = typing.get_type_hints(cls).get(part, Any)
            except (NameError, TypeError):  # an annotation we cannot resolve: no type check
                return Any
        return cls

    def parse(self, options: dict[str, Any]) -> Any:
        """The validated config of ``options`` (aliases folded into their nested options).

        Raises:
            InputError: unknown keys or bad values (the config's own validation).
        """
        if self.config is None:
            raise InputError(self.unavailable or f"step {self.name!r} is not available")
        nested: dict[str, Any] = {}
        for key, value in options.items():
            target = self.aliases.get(key, key)
            head, _, leaf = target.partition(".")
            if leaf:
                nested.setdefault(head, {})[leaf] = value
            else:
                nested[head] = value
        return self.config.from_dict(nested)  # type: ignore[attr-defined]


STEPS: dict[str, StepType] = {}


def register_step(name: str, config: type, verb: Verb, *,
                  needs: str | Callable[[Any], str] = "torch",
                  makes: str | Callable[[Any], str] = "torch",
                  aliases: Mapping[str, str] | None = None) -> StepType:
    """Make ``name`` usable as a recipe step (replacing any earlier registration)."""
    step = StepType(name, config, verb,
                    needs=_always(needs) if isinstance(needs, str) else needs,
                    makes=_always(makes) if isinstance(makes, str) else makes,
                    aliases=dict(aliases or {}))
    STEPS[name] = step
    return step


def register_optional(name: str, module: str, config: str, verb: str, **kwargs: Any) -> None:
    """Register ``module.verb`` with ``module.config`` when the module imports, else record why
    the step is unavailable (validation then names it instead of failing mid-recipe).
    """
    try:
        mod = importlib.import_module(module)
        register_step(name, getattr(mod, config), getattr(mod, verb), **kwargs)
    except (ImportError, AttributeError) as e:
        STEPS[name] = StepType(name, None, None, unavailable=(
            f"step {name!r} is not available in this edgepress build ({module}: {e})"))


def get_step(name: str) -> StepType:
    """The registered step called ``name``.

    Raises:
        InputError: no such step.
    """
    _register_builtin()
    if name not in STEPS:
        raise InputError(f"unknown step {name!r} (known: {', '.join(STEPS)})")
    return STEPS[name]


def step_names() -> list[str]:
    """Every registered step name."""
    _register_builtin()
    return list(STEPS)


# --- the built-in steps ----------------------------------------------------------------------

def _prune(run: Any, config: Any, **kw: Any) -> Any:
    from ..prune import prune

    return prune(run, config, **kw)


def _quantize(run: Any, config: Any, **kw: Any) -> Any:
    from ..quantize import quantize

    return quantize(run, config, **kw)


def _quantize_needs(config: Any) -> str:
    return "torch" if config.mode == "qat" else "fp32"


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


def _distill(run: Any, config: DistillStepConfig, **kw: Any) -> Any:
    from ..checkpoint import load_run
    from ..distill import distill

    zoo = load_run(run).meta["architecture"].get("zoo")
    return distill(run, config.resolve_student(zoo), config.distill_config(), **kw)


_BUILTIN_DONE: list[bool] = []


def _register_builtin() -> None:
    if _BUILTIN_DONE:
        return
    _BUILTIN_DONE.append(True)
    from ..prune import PruneConfig
    from ..quantize import QuantConfig

    register_step("prune", PruneConfig, _prune, aliases={
        "finetune_epochs": "finetune.epochs", "finetune_lr": "finetune.lr",
        "train_subset": "finetune.train_subset", "finetune_teacher": "finetune.teacher",
        "finetune_alpha": "finetune.alpha", "finetune_temperature": "finetune.temperature"})
    register_step("quantize", QuantConfig, _quantize, needs=_quantize_needs, makes="quantized")
    register_step("distill", DistillStepConfig, _distill)
    register_optional("structure", "edgepress.structure", "StructureConfig", "structure")
