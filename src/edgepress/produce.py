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

FIGURES = "figures.json"  # an untimed step's figures (sizes, counts, accuracy), not metrics.json


def produce_run(out: str | os.PathLike, model: nn.Module, meta: dict[str, Any], *,
                extra_files: dict[str, Any] | None = None, timed: bool = True) -> dict:
    """Write a complete run directory at ``out`` and return its measurement record.

    ``extra_files`` maps file names to JSON-ready objects written beside the model.
    """
    final = Path(out)
    with atomic_dir(final) as tmp:
        record = build_run_in(tmp, final, model, meta, extra_files=extra_files, timed=timed)
    return record


def build_run_in(tmp: Path, final: Path, model: nn.Module, meta: dict[str, Any], *,
                 extra_files: dict[str, Any] | None = None, timed: bool = True) -> dict:
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
    return measure_in_place(tmp, final, timed=timed)


def measure_in_place(tmp: Path, final: Path, *, timed: bool = True) -> dict:
    """Measure the run being built in ``tmp`` as if it were already at ``final``: fully, into
    ``metrics.json`` (``timed``), or only what needs no timing, into ``figures.json``
    (:func:`~edgepress.measurement.record.measure_untimed`).
    """
    if timed:
        from .measurement import measure

        record = measure(tmp, threads=1, batch=1)
    else:
        from .measurement.record import measure_untimed

        record = measure_untimed(tmp)
    record["variant"] = final.name
    record["file"] = str(final / Path(record["file"]).name)
    write_json(tmp / (METRICS if timed else FIGURES), record)
    return record


def step_record(run_dir: Path) -> dict:
    """A run's ``metrics.json``, else its untimed ``figures.json``.

    Raises:
        InputError: neither is there or readable.
    """
    import json

    from .errors import InputError

    for name in (METRICS, FIGURES):
        try:
            return json.loads((run_dir / name).read_text())
        except (OSError, ValueError):
            continue
    raise InputError(f"{run_dir} has neither {METRICS} nor {FIGURES}: it was not finished")


def has_record(run_dir: Path) -> bool:
    """Whether a run directory was finished (measured, timed or not)."""
    return (run_dir / METRICS).is_file() or (run_dir / FIGURES).is_file()
