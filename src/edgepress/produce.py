"""Finish a run directory: weights + ``model.json``, the deployment ONNX, and ``metrics.json``
measured exactly as ``edgepress measure RUN --threads 1`` would — all built in a temp folder and
moved into place only when complete.

Example:
    >>> produce_run("runs/mlp", model, meta)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from .checkpoint import METRICS, atomic_dir, save_model, write_json


def produce_run(out: str | os.PathLike, model: nn.Module, meta: dict[str, Any], *,
                extra_files: dict[str, Any] | None = None) -> dict:
    """Write a complete run directory at ``out`` and return its measurement record.

    ``extra_files`` maps file names to JSON-ready objects written beside the model.
    """
    final = Path(out)
    with atomic_dir(final) as tmp:
        record = build_run_in(tmp, final, model, meta, extra_files=extra_files)
    return record


def build_run_in(tmp: Path, final: Path, model: nn.Module, meta: dict[str, Any], *,
                 extra_files: dict[str, Any] | None = None) -> dict:
    """Write weights, ``model.json``, extra JSON files, the deployment ONNX and ``metrics.json``
    into the folder ``tmp`` that will become ``final``; return the record.
    """
    from .checkpoint import Run
    from .export.deploy import export_run

    tmp.mkdir(parents=True, exist_ok=True)
    save_model(tmp, model, meta)
    for name, obj in (extra_files or {}).items():
        write_json(tmp / name, obj)
    export_run(Run(tmp, meta), "onnx")
    return measure_in_place(tmp, final)


def measure_in_place(tmp: Path, final: Path) -> dict:
    """Measure the run being built in ``tmp`` as if it were already at ``final``."""
    from .measurement import measure

    record = measure(tmp, threads=1, batch=1)
    record["variant"] = final.name
    record["file"] = str(final / Path(record["file"]).name)
    write_json(tmp / METRICS, record)
    return record
