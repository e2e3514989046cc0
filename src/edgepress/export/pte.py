"""PyTorch → ExecuTorch ``.pte`` lowered to XNNPACK, and a record of what the delegate took.

The flow is ExecuTorch's own: ``torch.export`` at batch 1 (phones run one image at a time, and
a static shape is what XNNPACK plans best), ``to_edge_transform_and_lower`` with the
``XnnpackPartitioner``, ``to_executorch``. Beside ``model.pte`` goes ``model.pte.json``: the
share of the graph's operators lowered to XNNPACK, the operators inside each delegate, those left
outside it (run by ExecuTorch's portable kernels), the program's plan, the quantization applied,
the parity check and, once the run is measured, its parameter and MAC counts (``counts``, from the
run's ONNX twin: what ``edgepress measure FILE.pte`` reports). It carries the program's
SHA-256, so it never describes another file.

An int8 run is exported int8, never fp32: the quantization backend for XNNPACK
(:mod:`edgepress.quantize.xnnpack`, torchao's pt2e flow with ExecuTorch's ``XNNPACKQuantizer``)
re-applies its recorded quantization, calibrated on the same training images as the ONNX path,
through the :class:`GraphQuantizer` interface; this module only lowers and checks.

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
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ..checkpoint import PTE, Run, atomic_path, write_json
from ..errors import InputError
from .deploy import register_exporter
from .onnx import PARITY_ATOL, ExportError

CHECK_IMAGES = 32  # validation images the exported program is checked on, one at a time
# torch warns once, at torchao / ExecuTorch import, about an Enum they register with pytree: noise
# for a user lowering a model, not something they can act on.
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)


class _Wrapped(nn.Module):
    """``model`` as the one child of a plain module (ExecuTorch's BN fusion rejects a bare
    top-level ``nn.Sequential``); module paths gain a ``model.`` prefix.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.model(x)


class GraphQuantizer(Protocol):
    """What an int8 export needs from a quantization backend (``edgepress.quantize.xnnpack``):
    the model quantized for the lowering, and a record of what was applied.
    """

    def quantize(self, model: nn.Module, example: tuple[torch.Tensor]) -> nn.Module:
        """``model`` with its quantization applied, ready for ``torch.export``."""

    def record(self) -> dict:
        """What was applied (written into ``model.pte.json`` as ``quantization``)."""


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
               check_inputs: np.ndarray, quantizer: GraphQuantizer | None = None,
               counts: dict | None = None) -> dict:
    """Export ``model`` to an ExecuTorch program lowered to XNNPACK, at batch 1; verify it.

    Writes ``path`` and ``path + ".json"`` (each atomically).

    Args:
        model: the PyTorch model (N×C×H×W in, N×classes out).
        path: the ``.pte`` file to write.
        input_shape: one image's shape (C, H, W).
        check_inputs: real images the program is checked on against PyTorch.
        quantizer: the quantization to apply (``None``: fp32), from a quantization backend.
        counts: ``{"params_total", "params_nonzero", "macs", …}`` to record as ``counts``
            (``None``: not recorded; a measurement then reads them from the program).

    Returns:
        The description written to ``path.json`` (delegation, plan, parity, quantization).

    Raises:
        InputError: ExecuTorch is not installed.
        ExportError: the fp32 program disagrees with PyTorch by more than 1e-4 (relative to
            the logits' scale), or the program returns non-finite logits.
    """
    from ..runtimes.executorch import require_executorch

    require_executorch("exporting to pte")
    t0 = time.perf_counter()
    wrapped = _Wrapped(model.eval()).eval()
    example = (torch.zeros(1, *input_shape),)
    with _quiet(), torch.no_grad():
        graph: nn.Module = wrapped if quantizer is None else quantizer.quantize(wrapped, example)
        edge = _lower(torch.export.export(graph, example))
        delegation = delegation_report(edge)
        program = edge.to_executorch()
    info = _describe(program, delegation, input_shape, quantizer)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(program.buffer)
        info["parity"] = _check(model, tmp, check_inputs, quantizer is None)
    info.update(sha256=_sha256(path), seconds=round(time.perf_counter() - t0, 2))
    if counts is not None:
        info["counts"] = counts
    from ..runtimes.executorch import info_path

    write_json(info_path(path), info)
    return info


def _lower(ep: Any) -> Any:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    return to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])


def _sha256(path: Path) -> str:
    from ..files import file_sha256

    return file_sha256(path)


def _describe(program: Any, delegation: dict, input_shape: tuple[int, ...],
              quantizer: GraphQuantizer | None) -> dict:
    from ..runtimes.executorch import plan_summary

    return {
        "format": "pte", "file": PTE, "backend": "XnnpackBackend",
        "input_shape": [1, *input_shape],
        "precision": "fp32" if quantizer is None else "int8",
        "quantization": None if quantizer is None else quantizer.record(),
        "delegation": delegation, "plan": plan_summary(program.executorch_program),
        "versions": {d: _version(d) for d in ("executorch", "torch", "torchao")},
    }


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _check(model: nn.Module, pte: Path, x: np.ndarray, fp32: bool) -> dict:
    """Run the program on ``x`` one image at a time; compare with PyTorch."""
    from ..runtimes.executorch import load_method

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


QuantizerFor = Callable[[Run, nn.Module, Any], GraphQuantizer]


def export_run_pte(run: Run, quantizer_for: QuantizerFor | None = None,
                   prepare: Any = None) -> Path:
    """Write ``RUN/model.pte`` (and ``model.pte.json``): fp32, or quantized by the backend's
    ``quantizer_for(run, model, data)`` (an int8 run: ``edgepress.quantize.xnnpack``), after
    ``prepare(run, model, data) -> model`` (equalisation, bias correction) when given.

    Raises:
        InputError: ExecuTorch is missing; an int8 run without a quantizer.
    """
    from ..data import load_data
    from ..runtimes.executorch import require_executorch

    require_executorch("exporting to pte")
    data = load_data(run.meta["data"])
    model = run.build_model()
    precision = (run.meta.get("deployment") or {}).get("precision", "fp32")
    if precision != "fp32" and quantizer_for is None:
        raise InputError(f"run {run.name!r} is {precision}: its pte needs a quantizer")
    if prepare is not None:
        model = prepare(run, model, data)
    quantizer = None if quantizer_for is None else quantizer_for(run, model, data)
    export_pte(model, run.file(PTE), input_shape=run.input_shape, check_inputs=data.x_val,
               quantizer=quantizer)
    return run.file(PTE)


register_exporter("pte", "fp32")(export_run_pte)
