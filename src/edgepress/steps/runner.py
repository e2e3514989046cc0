"""The step runner: the one place a step becomes a run directory.

For every technique the same plumbing, done once: refuse an output that is one of the inputs,
open the parent (a run, or a plain ONNX file where the step takes one), give the step its model,
config and context, record the metadata (``model.json``: architecture, data, splits, provenance,
deployment), write everything into a temp folder, export the deployment (unless the step built
it), measure it as ``edgepress measure`` would, and move the folder into place only when it is
complete. The CLI verbs, ``compress``, the study and the search all come through here.

Example:
    >>> from edgepress.prune import PruneConfig
    >>> done = run_step("prune", "runs/mlp", PruneConfig(method="nm", nm="2:4"),
    ...                 out="runs/mlp-24")  # doctest: +SKIP
    >>> done.record["weight_sparsity"]  # doctest: +SKIP
    0.5
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..checkpoint import (
    METRICS,
    MODEL_JSON,
    ONNX,
    Run,
    atomic_dir,
    check_output_dir,
    new_meta,
    relative_parent,
    save_model,
    write_json,
)
from ..errors import InputError
from .base import StepContext, StepResult, StepRun
from .registry import get_step


def run_step(name: str, target: str | os.PathLike | Run, config: Any, *,
             out: str | os.PathLike, data: str | None = None, progress: bool = True,
             timed: bool = True, **options: Any) -> StepRun:
    """Apply the registered step ``name`` to ``target`` and write the measured run ``out``.

    Args:
        name: a registered step (:func:`~edgepress.steps.step_names`).
        target: the parent: a run directory (or a loaded :class:`Run`), or an ONNX file for the
            steps that take one.
        config: the step's config (a validated dataclass).
        out: the run directory to write (replaced atomically; nothing is left on failure).
        data: the data (default: the parent run's).
        progress: show progress bars.
        timed: measure the new run fully (``metrics.json``, as ``edgepress measure``); else only
            what needs no timing (``figures.json``: sizes, counts, accuracy) — a study step,
            timed once with every other variant in the study's compare.
        options: step-specific switches, handed to the step in ``ctx.options``.

    Returns:
        A :class:`StepRun`: the path, the measurement record, the step's report.

    Raises:
        InputError: ``out`` is one of the inputs or not a directory, a parent the step cannot
            take, data that does not fit, options that do not fit the model.
    """
    kind = get_step(name)
    if kind.apply is None:
        raise InputError(kind.unavailable or f"step {name!r} is not available")
    final = check_output_dir(out, (target, *kind.reads(config)))
    model, ctx = kind.open(target, data, config)
    ctx.progress, ctx.options = progress, dict(options)
    with tempfile.TemporaryDirectory(prefix=f"edgepress-{name}.") as work:
        ctx.work = Path(work)
        result = kind.apply(model, config, ctx)
        record = write_result(final, ctx, result, timed=timed)
    return StepRun(final, record, result.report)


def _onnx_classes(path: Path | None) -> int:
    """The number of logits an ONNX file declares (data without labels does not say)."""
    import onnx

    try:
        dims = onnx.load(str(path), load_external_data=False).graph.output[0].type \
            .tensor_type.shape.dim
        return int(dims[-1].dim_value) or 1
    except Exception:  # noqa: BLE001  # an undeclared shape: the record still needs a count
        return 1


def step_meta(ctx: StepContext, result: StepResult, final: Path | None = None
              ) -> dict[str, Any]:
    """The new run's ``model.json``: the step's architecture (or the parent's), the data and
    splits, the provenance (parent, config, seed, command) and the step's sections.
    """
    ds = ctx.data
    arch = copy.deepcopy(result.architecture) if result.architecture is not None \
        else ctx.parent_architecture()
    if not arch:  # a plain ONNX parent
        arch = {"input_shape": list(ds.input_shape),
                "num_classes": int(ds.num_classes) or _onnx_classes(ctx.onnx),
                "onnx": str(ctx.onnx)}
    meta = new_meta(input_shape=tuple(arch["input_shape"]), num_classes=arch["num_classes"],
                    data=ds.name, splits=result.splits or ds.splits_record(),
                    parent=ctx.parent_ref, config=result.config, seed=result.seed)
    meta["architecture"] = arch
    if final is not None and ctx.parent_ref:
        meta["provenance"]["parent_relative"] = relative_parent(ctx.parent_ref, final)
    meta.update(copy.deepcopy(result.sections))
    return meta


def write_result(final: Path, ctx: StepContext, result: StepResult, *,
                 timed: bool = True) -> dict[str, Any]:
    """Write ``result`` as the complete, measured run directory ``final``; return its record."""
    with atomic_dir(final) as tmp:
        return _write_into(tmp, final, ctx, result, timed)


def _write_into(tmp: Path, final: Path, ctx: StepContext, result: StepResult,
                timed: bool) -> dict[str, Any]:
    from ..export.deploy import export_run
    from ..produce import FIGURES, measure_in_place

    tmp.mkdir(parents=True, exist_ok=True)
    meta = step_meta(ctx, result, final)
    if result.model is not None:
        save_model(tmp, result.model, meta)
    else:
        write_json(tmp / MODEL_JSON, meta)
    for name, obj in result.files.items():
        if isinstance(obj, Path):
            shutil.copyfile(obj, tmp / name)
        else:
            write_json(tmp / name, obj)
    if result.deployment is not None:  # after the weights: the deployment is not stale
        shutil.copyfile(result.deployment, tmp / ONNX)
    else:
        export_run(Run(tmp, meta), "onnx")
    record = measure_in_place(tmp, final, timed=timed)
    if result.finish is not None:
        record.update(result.finish(tmp, record))
    write_json(tmp / (METRICS if timed else FIGURES), record)
    for sub, child in result.children.items():
        _write_into(tmp / sub, final / sub, ctx, child, timed)
    return record
