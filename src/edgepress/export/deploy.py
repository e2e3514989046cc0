"""Make a run's deployment file as its ``model.json`` "deployment" says, when it is missing or
older than the weights.

Exporters register per (format, precision): fp32 ONNX lives here; int8 ONNX and ExecuTorch
register themselves from their own modules.

Example:
    >>> path = ensure_deployment(load_run("runs/mlp"), "onnx")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from ..checkpoint import ONNX, PTE, Run
from ..errors import InputError

Exporter = Callable[[Run], Path]
_EXPORTERS: dict[tuple[str, str], Exporter] = {}
_FILES = {"onnx": ONNX, "pte": PTE}
# Modules that register more exporters (int8 ONNX, ExecuTorch); imported on first export.
PLUGIN_MODULES: list[str] = ["edgepress.quantize.deploy", "edgepress.export.pte",
                             "edgepress.quantize.xnnpack"]


def register_exporter(fmt: str, precision: str) -> Callable[[Exporter], Exporter]:
    """Register ``fn(run) -> path`` that writes ``fmt`` for runs of ``precision``."""

    def deco(fn: Exporter) -> Exporter:
        _EXPORTERS[(fmt, precision)] = fn
        return fn

    return deco


def deployment_path(run: Run, fmt: str) -> Path:
    """Where a run's deployment file of ``fmt`` lives."""
    if fmt not in _FILES:
        raise InputError(f"unknown export format {fmt!r} ({', '.join(_FILES)})")
    return run.file(_FILES[fmt])


def export_run(run: Run, fmt: str = "onnx") -> Path:
    """(Re-)export the run's deployment file in ``fmt``, reproducing its recorded deployment.

    Raises:
        InputError: no exporter for this format and precision, or the run cannot be exported.
    """
    precision = run.meta.get("deployment", {}).get("precision", "fp32")
    deployment_path(run, fmt)
    if not run.has_weights:
        if fmt == "onnx" and run.file(ONNX).is_file():
            return run.file(ONNX)  # a run made from a foreign ONNX file: that file is the model
        raise InputError(f"run {run.name!r} came from an ONNX file and has no PyTorch weights; "
                         f"it cannot be exported to {fmt}")
    for module in PLUGIN_MODULES:
        importlib.import_module(module)
    fn = _EXPORTERS.get((fmt, precision))
    if fn is None:
        raise InputError(f"no {fmt} exporter for {precision} runs")
    return fn(run)


def needs_export(run: Run, fmt: str = "onnx") -> bool:
    """Whether the run's ``fmt`` deployment file is missing or older than its weights."""
    path = deployment_path(run, fmt)
    weights = run.file("model.safetensors")
    stale = weights.is_file() and path.is_file() and path.stat().st_mtime < weights.stat().st_mtime
    return not path.is_file() or stale


def ensure_deployment(run: Run, fmt: str = "onnx") -> Path:
    """The run's deployment file, exported first when missing or older than its weights."""
    return export_run(run, fmt) if needs_export(run, fmt) else deployment_path(run, fmt)


@register_exporter("onnx", "fp32")
def _export_fp32_onnx(run: Run) -> Path:
    from ..data import load_data
    from .onnx import export_onnx

    ds = load_data(run.meta["data"])
    export_onnx(run.build_model(), run.file(ONNX), input_shape=run.input_shape,
                check_inputs=ds.x_val[:64])
    return run.file(ONNX)
