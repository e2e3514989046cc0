"""The structure verbs: :func:`structure_` (a model, in place) and :func:`structure` (run → run).

``structure`` rebuilds the parent run's PyTorch model (a pruned, channel-pruned or already
restructured one too), applies the method, fine-tunes where the method does, and writes a complete
run directory: weights, ``model.json`` (parent recorded, and the structural transform appended to
``architecture.transforms`` so :meth:`~edgepress.checkpoint.Run.build_model` rebuilds the new
layers), ``structure.json`` (parameters, MACs, bytes and accuracy before and after, and per-layer
details), the deployment ONNX and ``metrics.json`` with an extra ``structure`` field.

Example:
    >>> from edgepress.structure import StructureConfig, structure
    >>> rec = structure("runs/cnn", StructureConfig(method="fold"),
    ...                 out="runs/cnn-folded")  # doctest: +SKIP
    >>> rec["structure"]["after"]["layers"] < rec["structure"]["before"]["layers"]  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from ..checkpoint import METRICS, Run, write_json
from ..data import Dataset
from ..training import TrainConfig
from .config import StructureConfig

__all__ = ["StructureConfig", "StructureReport", "apply_structure", "open_structure",
           "structure", "structure_"]
from .methods import METHODS, Context
from .stats import summary

REPORT_FILE = "structure.json"


@dataclass
class StructureReport:
    """What a structural method did: the model before and after, details, transform, training."""

    method: str
    config: dict[str, Any]
    before: dict[str, Any]
    after: dict[str, Any]
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    transform: dict[str, Any] | None = None
    training: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def structure_(model: nn.Module, config: StructureConfig, *, data: Dataset | str,
               recipe: TrainConfig | None = None, progress: bool = True,
               model_name: str = "the model",
               teacher: nn.Module | None = None) -> StructureReport:
    """Restructure ``model`` in place as ``config`` says; report what changed.

    Args:
        model: a trained PyTorch model (its layers may be replaced).
        config: the method and its options.
        data: fine-tuning uses train; every choice (which block to drop) uses validation;
            test only feeds the reported accuracy.
        recipe: the model's training recipe (fine-tuning starts from it); default TrainConfig().
        progress: show a progress bar while fine-tuning.
        model_name: how error messages name the model.
        teacher: distil from this model while fine-tuning (``None``: the labels alone).

    Returns:
        A :class:`StructureReport` (parameters, MACs, bytes, accuracy before and after).

    Raises:
        InputError: options that do not fit this model (a rank not below a layer's
            ``min(m, n)``, more blocks than can be bypassed, a block whose shapes differ, ...).

    Example:
        >>> report = structure_(model, StructureConfig(method="lowrank", rank=8),
        ...                     data="digits")  # doctest: +SKIP
        >>> report.after["params"] < report.before["params"]  # doctest: +SKIP
        True
    """
    if isinstance(data, str):
        from ..data import load_data

        data = load_data(data)
    model.eval()
    before = summary(model, data)
    ctx = Context(data=data, recipe=recipe, progress=progress, model_name=model_name,
                  teacher=teacher)
    result = METHODS[config.method](model, config, ctx)
    model.eval()
    return StructureReport(method=config.method, config=config.to_dict(), before=before,
                           after=summary(model, data), message=result.message,
                           details=result.details, transform=result.transform,
                           training=result.training)


def structure(run: str | os.PathLike | Run, config: StructureConfig, *, out: str | os.PathLike,
              data: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Restructure a run's model into a new run directory at ``out``; return its record.

    The step runner (:func:`edgepress.steps.run_step`) opens the parent, applies
    :func:`apply_structure` and writes the measured run.

    Args:
        run: a run directory (or loaded :class:`Run`) with PyTorch weights.
        config: the method and its options.
        out: the run directory to write (built aside, moved into place when complete).
        data: the data (default: the parent run's).
        progress: show a progress bar while fine-tuning.

    Returns:
        The ``metrics.json`` record, with a ``structure`` field added.

    Raises:
        InputError: a plain ONNX file or a run without PyTorch weights, data that does not fit
            the model, ``out`` equal to the parent, or options that do not fit the model.
    """
    from ..steps import run_step

    return run_step("structure", run, config, out=out, data=data, progress=progress).record


def open_structure(target: Any, data: str | None,
                   config: StructureConfig) -> tuple[nn.Module, Any]:
    """The run to restructure (with PyTorch weights), its model and the step context."""
    from ..steps import open_torch

    return open_torch(target, data, config, technique="a structure method")


def apply_structure(model: nn.Module, config: StructureConfig, ctx: Any) -> Any:
    """The structure step: :func:`structure_` ``model`` in place (fine-tuned, distilled from
    ``ctx.teacher`` when asked) and say what the new run is: the transform appended to the
    architecture, so the run rebuilds the new layers.
    """
    from ..steps import StepResult

    ds = ctx.data
    report = structure_(model, config, data=ds, recipe=ctx.recipe, progress=ctx.progress,
                        model_name=ctx.model_name,
                        teacher=ctx.teacher(config.finetune_options()))
    arch = ctx.parent_architecture()
    if report.transform is not None:
        arch["transforms"] = [*arch.get("transforms", []), report.transform]
    sections: dict[str, Any] = {"structure": {
        "method": config.method, "params_before": report.before["params"],
        "params_after": report.after["params"], "macs_before": report.before["macs"],
        "macs_after": report.after["macs"]}, "training": report.training}
    if config.method == "cluster":
        sections["structure"].update(bits=config.bits, k=config.clusters)
    rep = report.to_dict()
    parent = ctx.parent

    def finish(tmp: Path, record: dict[str, Any]) -> dict[str, Any]:
        _deployed(rep["before"], _parent_record(parent) if parent is not None else None)
        _deployed(rep["after"], record)
        write_json(tmp / REPORT_FILE, rep)
        return {"structure": _extra_field(rep)}

    return StepResult(model=model, config=config.to_dict(), architecture=arch,
                      splits=ds.subset(config.train_subset).splits_record(), sections=sections,
                      files={REPORT_FILE: rep}, finish=finish, report=report, seed=config.seed)


def _parent_record(parent: Run) -> dict[str, Any] | None:
    try:
        return json.loads(parent.file(METRICS).read_text())
    except (OSError, ValueError):
        return None


def _deployed(side: dict[str, Any], record: dict[str, Any] | None) -> None:
    """Add the deployment file's measured bytes and accuracy (None when not measured)."""
    keys = ("size_bytes", "size_gzip_bytes", "accuracy", "macs", "params_total")
    side["deployed"] = {k: record.get(k) for k in keys} if record else None


def _extra_field(rep: dict[str, Any]) -> dict[str, Any]:
    details = rep["details"]
    compact = {k: v for k, v in details.items() if k not in ("layers", "blocks")}
    if "layers" in details:
        compact["layers"] = {n: {k: v for k, v in row.items() if k != "codebook"}
                             for n, row in details["layers"].items()}
    if "blocks" in details:
        compact["blocks"] = details["blocks"]
    return {"method": rep["method"], "message": rep["message"], "before": rep["before"],
            "after": rep["after"], "details": compact, "transform": rep["transform"]}
