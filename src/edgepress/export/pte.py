"""PyTorch → ExecuTorch ``.pte`` lowered to XNNPACK, and a record of what the delegate took.

The flow is ExecuTorch's own: ``torch.export`` at batch 1 (phones run one image at a time, and
a static shape is what XNNPACK plans best), ``to_edge_transform_and_lower`` with the
``XnnpackPartitioner``, ``to_executorch``. Beside ``model.pte`` goes ``model.pte.json``: the
share of the graph's operators lowered to XNNPACK, the operators inside each delegate, those left
outside it (run by ExecuTorch's portable kernels), the program's plan, the quantization applied,
the parity check and, for a run, its parameter and MAC counts (``counts``, read from the run's
ONNX twin: what ``edgepress measure FILE.pte`` reports). It carries the program's SHA-256, so it
never describes another file.

An int8 run is exported int8, never fp32: its recorded quantization is re-applied with torchao's
pt2e flow and ExecuTorch's ``XNNPACKQuantizer`` (see :func:`xnnpack_quant`), calibrated on the
same training images as the ONNX path (same draw, same hash, same batches).

The model is wrapped in a one-attribute module before export: ExecuTorch's batch-norm fusion
fails on a bare top-level ``nn.Sequential``.

Example:
    >>> info = export_pte(model, "m.pte", input_shape=(1, 8, 8), check_inputs=x)  # doctest: +SKIP
    >>> info["delegation"]["share"]  # doctest: +SKIP
    1.0
"""

from __future__ import annotations

import contextlib
import io
import logging
import operator
import os
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import PTE, Run, atomic_path, write_json
from ..errors import InputError
from .deploy import register_exporter
from .onnx import PARITY_ATOL, ExportError

CHECK_IMAGES = 32  # validation images the exported program is checked on, one at a time


class _Wrapped(nn.Module):
    """``model`` as the one child of a plain module (ExecuTorch's BN fusion rejects a bare
    top-level ``nn.Sequential``); module paths gain a ``model.`` prefix.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.model(x)


@dataclass
class PteQuant:
    """The XNNPACK quantization to apply.

    Attributes:
        mode: ``static`` (int8 weights and activations, calibrated) or ``dynamic`` (int8
            weights, activations quantized per call).
        per_channel: one weight scale per output channel (else per tensor).
        observer: activation range: ``minmax`` (exactly the ONNX path's) or ``histogram``
            (XNNPACK's default, standing in for percentile / entropy calibration).
        calib_x: calibration images (static), fed in batches of ``calib_batch``.
        skip_modules: module paths kept in float.
    """

    mode: str = "static"
    per_channel: bool = True
    observer: str = "minmax"
    calib_x: np.ndarray | None = None
    calib_batch: int = 32
    skip_modules: list[str] = field(default_factory=list)
    record: dict = field(default_factory=dict)  # what the run recorded, copied into the info


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence torch.export / ExecuTorch warnings and prints during lowering."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)
        try:
            yield
        finally:
            logging.getLogger().setLevel(level)


def export_pte(model: nn.Module, path: str | os.PathLike, *, input_shape: tuple[int, ...],
               check_inputs: np.ndarray, quant: PteQuant | None = None,
               counts: dict | None = None) -> dict:
    """Export ``model`` to an ExecuTorch program lowered to XNNPACK, at batch 1; verify it.

    Writes ``path`` and ``path + ".json"`` (each atomically).

    Args:
        model: the PyTorch model (N×C×H×W in, N×classes out).
        path: the ``.pte`` file to write.
        input_shape: one image's shape (C, H, W).
        check_inputs: real images the program is checked on against PyTorch.
        quant: the quantization to apply (``None``: fp32).
        counts: ``{"params_total", "params_nonzero", "macs", …}`` to record as ``counts``
            (``None``: not recorded; a measurement then reads them from the program).

    Returns:
        The description written to ``path.json`` (delegation, plan, parity, quantization).

    Raises:
        InputError: ExecuTorch is not installed.
        ExportError: the fp32 program disagrees with PyTorch by more than 1e-4 (relative to
            the logits' scale), or the program returns non-finite logits.
    """
    from ..measurement.runtimes.executorch import require_executorch

    require_executorch("exporting to pte")
    t0 = time.perf_counter()
    wrapped = _Wrapped(model.eval()).eval()
    example = (torch.zeros(1, *input_shape),)
    with _quiet(), torch.no_grad():
        graph: nn.Module = wrapped if quant is None else quantize_pt2e(wrapped, quant, example)
        edge = _lower(torch.export.export(graph, example))
        delegation = delegation_report(edge)
        program = edge.to_executorch()
    info = _describe(program, delegation, input_shape, quant)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(program.buffer)
        info["parity"] = _check(model, tmp, check_inputs, quant is None)
    info.update(sha256=_sha256(path), seconds=round(time.perf_counter() - t0, 2))
    if counts is not None:
        info["counts"] = counts
    from ..measurement.runtimes.executorch import info_path

    write_json(info_path(path), info)
    return info


def _lower(ep: Any) -> Any:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    return to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])


def _sha256(path: Path) -> str:
    from ..measurement.runtimes.executorch import file_sha256

    return file_sha256(path)


def _describe(program: Any, delegation: dict, input_shape: tuple[int, ...],
              quant: PteQuant | None) -> dict:
    from ..measurement.runtimes.executorch import plan_summary

    return {
        "format": "pte", "file": PTE, "backend": "XnnpackBackend",
        "input_shape": [1, *input_shape],
        "precision": "fp32" if quant is None else "int8",
        "quantization": None if quant is None else _quant_record(quant),
        "delegation": delegation, "plan": plan_summary(program.executorch_program),
        "versions": {d: _version(d) for d in ("executorch", "torch", "torchao")},
    }


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _quant_record(q: PteQuant) -> dict:
    return {"quantizer": "XNNPACKQuantizer (torchao pt2e)", "mode": q.mode,
            "weights": "int8 symmetric ±127, " + ("per channel" if q.per_channel else
                                                   "per tensor"),
            "activations": ("int8 asymmetric per tensor, calibrated" if q.mode == "static" else
                            "int8 per call (dynamic)"),
            "activation_observer": q.observer if q.mode == "static" else None,
            "calibration_images": None if q.calib_x is None else int(len(q.calib_x)),
            "skipped_modules": list(q.skip_modules), **q.record}


def _check(model: nn.Module, pte: Path, x: np.ndarray, fp32: bool) -> dict:
    """Run the program on ``x`` one image at a time; compare with PyTorch."""
    from ..measurement.runtimes.executorch import load_method

    method = load_method(pte, None)  # the process's pool, whatever it is
    x = np.ascontiguousarray(x[:CHECK_IMAGES], dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    got = np.concatenate([method.call([torch.from_numpy(x[i:i + 1])])[0].numpy()
                          for i in range(len(x))])
    if not np.isfinite(got).all():
        raise ExportError("the exported pte program returns NaN/inf logits")
    diff = float(np.abs(got - ref).max())
    agree = float((got.argmax(1) == ref.argmax(1)).mean())
    scale = max(1.0, float(np.abs(ref).max()))
    if fp32 and not diff <= PARITY_ATOL * scale:
        raise ExportError(f"exported pte disagrees with PyTorch: max |Δlogit| = {diff:.3g} > "
                          f"{PARITY_ATOL * scale:.3g}")
    return {"images": int(len(x)), "max_abs_diff_vs_torch_fp32": diff,
            "top1_agreement_vs_torch_fp32": agree}


def op_name(node: Any) -> str:
    """``aten.convolution`` for an edge or aten operator node (overload dropped)."""
    target = getattr(node.target, "_op", node.target)
    schema = getattr(target, "_schema", None)
    if schema is not None:
        return schema.name.replace("::", ".")
    return getattr(target, "__name__", str(target))


def delegation_report(edge: Any) -> dict:
    """What the partitioner gave XNNPACK: operator nodes inside the delegates and outside.

    ``share`` is delegated / all operator nodes (``getitem`` plumbing excluded; quantize and
    dequantize nodes counted: XNNPACK folds them into its int8 operators, and outside it they are
    real conversions).
    """
    gm = edge.exported_program().graph_module
    inside: Counter[str] = Counter()
    outside: Counter[str] = Counter()
    calls = 0
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target is operator.getitem:
            continue
        if getattr(node.target, "__name__", "") == "executorch_call_delegate":
            calls += 1
            lowered = getattr(gm, node.args[0].target)
            inside.update(op_name(n) for n in lowered.original_module.graph.nodes
                          if n.op == "call_function" and n.target is not operator.getitem)
        else:
            outside[op_name(node)] += 1
    total = sum(inside.values()) + sum(outside.values())
    return {"delegate_calls": calls, "delegated_nodes": sum(inside.values()),
            "total_nodes": total, "share": (sum(inside.values()) / total) if total else 0.0,
            "delegated": dict(sorted(inside.items())), "outside": dict(sorted(outside.items()))}


def quantize_pt2e(model: nn.Module, quant: PteQuant, example: tuple[torch.Tensor]) -> nn.Module:
    """pt2e quantization with ``XNNPACKQuantizer``: export, prepare, calibrate, convert.

    Calibration runs on a dynamic-batch export so the images go in the ONNX path's batches.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    dynamic = quant.mode == "static"
    shapes = ({0: torch.export.Dim("batch", min=1, max=1 << 16)},) if dynamic else None
    sample = example
    if dynamic:
        assert quant.calib_x is not None
        sample = (torch.from_numpy(np.ascontiguousarray(quant.calib_x[:quant.calib_batch])),)
    gm = torch.export.export(model, sample, dynamic_shapes=shapes).module()
    prepared = prepare_pt2e(gm, _quantizer(quant))
    if quant.mode == "static":
        assert quant.calib_x is not None
        x = torch.from_numpy(np.ascontiguousarray(quant.calib_x, dtype=np.float32))
        for i in range(0, len(x), quant.calib_batch):
            prepared(x[i:i + quant.calib_batch])
    else:
        prepared(*example)
    return convert_pt2e(prepared)


def _quantizer(quant: PteQuant) -> Any:
    import dataclasses

    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e import MinMaxObserver
    from torchao.quantization.pt2e.quantizer import get_module_name_filter

    cfg = get_symmetric_quantization_config(is_per_channel=quant.per_channel,
                                            is_dynamic=quant.mode == "dynamic")
    if quant.mode == "static" and quant.observer == "minmax":
        # the ONNX path's MinMax calibration: min/max over every calibration batch
        act = dataclasses.replace(cfg.input_activation,
                                  observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
        cfg = dataclasses.replace(cfg, input_activation=act, output_activation=act)
    q = XNNPACKQuantizer().set_global(cfg)
    if quant.skip_modules:
        skips = [get_module_name_filter(f"model.{m}") for m in quant.skip_modules]
        q.set_filter_function(lambda n: not any(f(n) for f in skips))
    return q


def xnnpack_quant(run: Run, model: nn.Module, data: Any) -> PteQuant:
    """The run's recorded quantization, as XNNPACK can apply it.

    static and 8-bit QAT runs: static int8 calibrated on the images the ONNX path used (drawn
    with the recorded seed; their index hash must match the recorded one; the last partial
    batch is dropped, as ONNX Runtime's calibration reader drops it). dynamic runs: dynamic int8.
    ``reduce_range`` (an x86 ONNX Runtime workaround) does not apply to XNNPACK's kernels.

    Raises:
        InputError: a mode XNNPACK cannot run (weight-only low-bit), a skip layer that is not a
            module of the model, or calibration images that are not the recorded ones.
    """
    from ..quantize.config import QuantConfig
    from ..quantize.ptq import CALIB_BATCH, calibration_images

    dep = run.meta.get("deployment") or {}
    config = QuantConfig.from_dict(dep.get("quantization") or {})
    modules = {name for name, _ in model.named_modules() if name}
    for name in config.skip_layers:
        if name not in modules:
            raise InputError(f"cannot export to pte: skip layer {name!r} is not a module of "
                             f"{run.model_name}")
    record = {"recorded_mode": config.mode, "recorded_calib_method": config.calib_method,
              "recorded_reduce_range": config.reduce_range, "reduce_range_applied": False}
    skips = list(config.skip_layers)
    if config.mode == "dynamic":
        return PteQuant(mode="dynamic", per_channel=config.per_channel, observer="none",
                        skip_modules=skips, record=record)
    if not (config.mode == "static" or (config.mode == "qat" and config.bits == 8)):
        raise InputError(f"cannot export to pte: {config.mode} {config.precision} has no XNNPACK "
                         "form (only int8 static, dynamic or QAT runs do)")
    x, indices_hash = calibration_images(data, config.calibration or 0, config.seed, CALIB_BATCH)
    recorded = dep.get("calibration_indices_hash")
    if recorded and indices_hash != recorded:
        raise InputError(f"cannot export to pte: the calibration images drawn now (hash "
                         f"{indices_hash}) are not the recorded ones ({recorded}); did the data "
                         "change?")
    x = x[: len(x) // CALIB_BATCH * CALIB_BATCH]
    record["calibration_indices_hash"] = indices_hash
    observer = "minmax" if config.calib_method in (None, "minmax") else "histogram"
    return PteQuant(mode="static", per_channel=config.per_channel, observer=observer, calib_x=x,
                    calib_batch=CALIB_BATCH, skip_modules=skips, record=record)


def export_run_pte(run: Run) -> Path:
    """Write ``RUN/model.pte`` (and ``model.pte.json``) as the run's deployment says."""
    from ..data import load_data
    from ..measurement.runtimes.executorch import require_executorch

    require_executorch("exporting to pte")
    data = load_data(run.meta["data"])
    model = run.build_model()
    precision = (run.meta.get("deployment") or {}).get("precision", "fp32")
    quant = None if precision == "fp32" else xnnpack_quant(run, model, data)
    export_pte(model, run.file(PTE), input_shape=run.input_shape, check_inputs=data.x_val,
               quant=quant, counts=onnx_twin_counts(run))
    return run.file(PTE)


def onnx_twin_counts(run: Run) -> dict:
    """Parameters and per-image MACs of the run's ONNX deployment (exported first if missing or
    stale), the figures its ONNX Runtime record reports.
    """
    from ..measurement.graph import count_macs, count_params, load_onnx
    from .deploy import ensure_deployment

    path = ensure_deployment(run, "onnx")
    model = load_onnx(path)
    total, nonzero = count_params(model)
    return {"params_total": total, "params_nonzero": nonzero,
            "macs": int(count_macs(model, (1, *run.input_shape))),
            "from": "onnx-twin", "onnx_sha256": _sha256(path)}


register_exporter("pte", "fp32")(export_run_pte)
register_exporter("pte", "int8")(export_run_pte)
