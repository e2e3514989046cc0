"""The step registry: step name → config class, ``apply``, how to open its parent, and what it
needs and makes.

A step is any technique with a validated config dataclass (``from_dict`` / ``to_dict``) and
``apply(model, config, ctx) -> StepResult`` (:mod:`.base`); :func:`~.runner.run_step` turns it
into a measured run directory. Registering one is one line::

    register_step("structure", StructureConfig, apply_structure)

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
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError

Apply = Callable[..., Any]  # apply(model, config, ctx) -> StepResult
Opener = Callable[..., Any]  # open(target, data, config) -> (model, StepContext)


def _always(value: str) -> Callable[[Any], str]:
    return lambda config: value


def _reads_nothing(config: Any) -> tuple[str, ...]:
    return ()


def open_torch(target: Any, data: str | None, config: Any, *,
               technique: str = "this step") -> tuple[Any, Any]:
    """Open a run whose PyTorch model a step changes: the model, and a context with its data
    (``data`` or the run's) and training recipe.

    Raises:
        InputError: a plain ONNX file, a run without weights, or images that do not fit.
    """
    from ..checkpoint import open_trainable
    from ..training import default_recipe
    from .base import StepContext

    parent, ds = open_trainable(target, data, technique=technique)
    ctx = StepContext(data=ds, parent=parent, parent_ref=str(parent.path.resolve()),
                      recipe=default_recipe(parent.meta["architecture"].get("zoo")))
    return parent.build_model(), ctx


@dataclass(frozen=True)
class StepType:
    """One kind of step.

    Attributes:
        name: the recipe's ``step:`` value.
        config: the config class (a dataclass with ``from_dict`` and ``to_dict``).
        apply: ``apply(model, config, ctx) -> StepResult`` on an in-memory model.
        open: ``open(target, data, config) -> (model, ctx)``: the parent opened for ``apply``
            (default: a run with PyTorch weights, :func:`open_torch`).
        reads: config → other paths the step reads (an output may not be one of them).
        needs: config → ``"torch"`` or ``"fp32"`` (what the parent must be).
        makes: config → ``"torch"`` or ``"quantized"`` (what the step leaves).
        aliases: flat recipe keys for nested options, e.g. ``finetune_epochs`` →
            ``finetune.epochs``.
        unavailable: why the step cannot run in this build (None when it can).
    """

    name: str
    config: type | None
    apply: Apply | None
    open: Opener = open_torch
    reads: Callable[[Any], tuple[str, ...]] = _reads_nothing
    needs: Callable[[Any], str] = _always("torch")
    makes: Callable[[Any], str] = _always("torch")
    aliases: Mapping[str, str] = field(default_factory=dict)
    unavailable: str | None = None

    def run(self, target: Any, config: Any, *, out: str | os.PathLike, data: str | None = None,
            progress: bool = True, **options: Any) -> Any:
        """Apply this step to ``target`` and write the measured run ``out`` (a
        :class:`~.base.StepRun`); see :func:`~.runner.run_step`.
        """
        from .runner import run_step

        return run_step(self.name, target, config, out=out, data=data, progress=progress,
                        **options)

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


def register_step(name: str, config: type, apply: Apply, *, open: Opener | None = None,
                  reads: Callable[[Any], tuple[str, ...]] | None = None,
                  needs: str | Callable[[Any], str] = "torch",
                  makes: str | Callable[[Any], str] = "torch",
                  aliases: Mapping[str, str] | None = None) -> StepType:
    """Make ``name`` a step of recipes, the runner and the search (replacing any earlier
    registration).
    """
    step = StepType(name, config, apply, open=open or open_torch,
                    reads=reads or _reads_nothing,
                    needs=_always(needs) if isinstance(needs, str) else needs,
                    makes=_always(makes) if isinstance(makes, str) else makes,
                    aliases=dict(aliases or {}))
    STEPS[name] = step
    return step


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

# Each family registers its step from its own ``step`` module (one line there); the registry
# knows only the module names, imported on first use, so families depend on the step layer and
# never the other way round.
BUILTIN_STEPS: dict[str, str] = {
    "prune": "edgepress.prune.step", "quantize": "edgepress.quantize.step",
    "distill": "edgepress.distill.step", "structure": "edgepress.structure.step"}
_BUILTIN_DONE: list[bool] = []

FINETUNE_ALIASES = {
    "finetune_epochs": "finetune.epochs", "finetune_lr": "finetune.lr",
    "train_subset": "finetune.train_subset", "finetune_teacher": "finetune.teacher",
    "finetune_alpha": "finetune.alpha", "finetune_temperature": "finetune.temperature"}


def _register_builtin() -> None:
    if _BUILTIN_DONE:
        return
    _BUILTIN_DONE.append(True)
    for name, module in BUILTIN_STEPS.items():
        try:
            importlib.import_module(module)
        except ImportError as e:  # an optional family left out of this build
            STEPS[name] = StepType(name, None, None, unavailable=(
                f"step {name!r} is not available in this edgepress build ({module}: {e})"))
