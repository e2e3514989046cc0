"""What a step is given and what it gives back.

A step is ``apply(model, config, ctx) -> StepResult``: it changes (or replaces) an in-memory
model and says what the new run is — the model to save, its architecture and metadata, the files
to write beside it, a ready deployment file when the step makes one itself (quantization), the
fields it adds to the measurement record. It never touches a run directory: the runner
(:mod:`.runner`) does that, once, for every step.

Example:
    >>> from edgepress.data import load_data
    >>> ctx = StepContext(data=load_data("digits"))
    >>> ctx.teacher(Finetune(epochs=0, teacher="parent")) is None  # nothing is trained
    True
    >>> StepResult(model=None, config={"x": 1}).files
    {}
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..checkpoint import Run
from ..data import Dataset
from ..errors import InputError
from ..finetune import Finetune


@dataclass
class StepContext:
    """Everything a step may use besides the model and its config.

    Attributes:
        data: the data set: fine-tuning and calibration draw from train, every choice from
            validation; test only feeds the reported figures.
        parent: the run the step starts from (``None`` for a plain ONNX file or an in-memory
            model).
        parent_ref: how the new run names its parent in ``model.json`` (the path as opened).
        onnx: the parent's fp32 ONNX file when it has no PyTorch weights (quantization only).
        recipe: the parent model's training recipe (fine-tunes start from it), if known.
        work: a scratch folder that exists while the step runs.
        progress: show progress bars.
        options: verb-specific switches (``quantize``: ``sensitivity``, ``profile``).
    """

    data: Dataset
    parent: Run | None = None
    parent_ref: str | None = None
    onnx: Path | None = None
    recipe: Any = None
    work: Path | None = None
    progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def model_name(self) -> str:
        """How messages name the model."""
        return self.parent.model_name if self.parent is not None else "the model"

    def teacher(self, ft: Finetune | None) -> nn.Module | None:
        """The frozen teacher of a fine-tune (``none`` / ``parent`` / a run), or ``None`` when
        there is none or nothing is trained.

        Raises:
            InputError: ``parent`` without a parent run; a teacher that does not fit the data.
        """
        from ..finetune import resolve_teacher

        if ft is None or not ft.has_teacher:
            return None
        if self.parent is None and ft.teacher == "parent":
            raise InputError("--finetune-teacher parent needs a parent run with PyTorch weights")
        classes = self.data.num_classes or (  # data without labels: the parent's classes
            self.parent.meta["architecture"]["num_classes"] if self.parent is not None else 0)
        return resolve_teacher(ft.teacher, self.parent, input_shape=self.data.input_shape,
                               num_classes=classes)

    def parent_architecture(self) -> dict[str, Any]:
        """A copy of the parent run's ``architecture`` record (``{}`` without a parent run)."""
        return copy.deepcopy(self.parent.meta["architecture"]) if self.parent is not None else {}


Finish = Callable[[Path, dict[str, Any]], dict[str, Any]]


@dataclass
class StepResult:
    """What a step made, for the runner to write.

    Attributes:
        model: the fp32 PyTorch model the new run saves (``model.safetensors``); ``None`` when
            the step leaves no weights (quantizing a plain ONNX file).
        config: the config as applied (resolved defaults, chosen float layers...).
        architecture: the new run's ``architecture`` record (``None``: the parent's).
        splits: the data splits the step used (``None``: the data set's).
        sections: top-level ``model.json`` sections the step sets (``pruning``, ``structure``,
            ``training``, ``deployment``...).
        deployment: a deployment file the step built itself (a quantized ONNX); ``None``: the
            runner exports ``model``.
        files: more files for the run: name → a JSON-ready object, or a path to copy.
        finish: called after measuring, with the folder being built and the record; returns
            fields to add to the record (and may write more files).
        children: sub-runs written inside the new run (``baseline``: distillation's no-teacher
            twin), each a :class:`StepResult` of its own.
        report: what the in-memory verb reported (``PruneReport``, ``distill.json``...).
        seed: the step's seed (recorded in the provenance).
    """

    model: nn.Module | None
    config: dict[str, Any]
    architecture: dict[str, Any] | None = None
    splits: dict[str, Any] | None = None
    sections: dict[str, Any] = field(default_factory=dict)
    deployment: Path | None = None
    files: dict[str, Any] = field(default_factory=dict)
    finish: Finish | None = None
    children: dict[str, StepResult] = field(default_factory=dict)
    report: Any = None
    seed: int | None = None


@dataclass
class StepRun:
    """A step written as a run directory: where, its measurement record, the step's report."""

    path: Path
    record: dict[str, Any]
    report: Any = None
