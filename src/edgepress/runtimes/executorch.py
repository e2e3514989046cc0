"""ExecuTorch with the XNNPACK delegate (what phones run), behind the :class:`Runtime` interface.

* **Threads.** XNNPACK (and ExecuTorch's optimized kernels) run on one process-wide pthreadpool;
  :func:`portable_lib` resets it to ``threads`` with the pybindings' ``_unsafe_reset_threadpool``
  and checks ``_threadpool_get_thread_count``. Every session in a process shares that pool, so
  ``compare`` times all models at the same thread count.
* **Kernels.** The pip wheel is built without ExecuTorch's profiler (ETDump), so per-operator
  times are not available. What ran is read from the program itself: its execution plan (one
  ``DelegateCall`` per XNNPACK subgraph, one ``KernelCall`` per operator left outside it) and, from
  ``model.pte.json`` written at export, the operators inside each delegate and the share of the
  graph XNNPACK took (see :mod:`edgepress.export.pte`).
* **Memory.** ExecuTorch's Python runtime takes and returns ``torch.Tensor`` (without torch's
  Python module imported, running a method crashes the interpreter), so the peak-RSS probe must
  import torch. The record says so (``rss_includes_torch``; also ``peak_rss_torch_imported``) and
  gives the probe's RSS after its imports and before loading the model (``rss_baseline_mb``; also
  ``peak_rss_baseline_mb``): the model's own cost is the difference (``peak_rss_model_mb``).
* **Counts.** A bare ``.pte`` has no ONNX graph to count parameters and MACs on:
  :func:`program_counts` reads them from ``model.pte.json`` (where measuring the run, or
  ``edgepress export --format pte``, records its ONNX twin's counts) or else from the
  program's XNNPACK subgraphs (:func:`counts_from_program`).

The module imports neither torch nor executorch until a runtime is instantiated.

Example:
    >>> rt = get_runtime("executorch")  # doctest: +SKIP
    >>> s = rt.load(Path("runs/cnn/model.pte"), threads=1)  # doctest: +SKIP
    >>> s.input_shape  # doctest: +SKIP
    (1, 1, 28, 28)
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..files import file_sha256
from .base import Runtime, Session, rss_fields, spawn_probe

BACKEND = "XnnpackBackend"
DELEGATED_PREFIX = "xnnpack:"
INSTALL_HINT = "pip install 'edgepress[mobile]'"
INFO_SUFFIX = ".json"  # model.pte -> model.pte.json, written by the exporter
_PROBE = Path(__file__).with_name("_rss_probe_et.py")
_FLOAT = 6  # ExecuTorch ScalarType::Float
COUNT_KEYS = ("params_total", "params_nonzero", "macs")
# XNNPACK constant types whose bytes edgepress can read (4-bit and packed ones: not counted)
_XNN_DTYPES = {"xnn_datatype_fp32": "<f4", "xnn_datatype_fp16": "<f2", "xnn_datatype_bf16": "<u2",
               "xnn_datatype_qint8": "i1", "xnn_datatype_quint8": "u1",
               "xnn_datatype_qint32": "<i4", "xnn_datatype_qcint8": "i1",
               "xnn_datatype_qcint32": "<i4", "xnn_datatype_int32": "<i4"}
_XNN_MAC_NODES = {"XNNConv2d", "XNNDepthwiseConv2d", "XNNFullyConnected",
                  "XNNBatchMatrixMultiply"}
# operators that do arithmetic a MAC count needs; outside the delegate they are not readable
_MAC_KERNELS = ("convolution", "linear", "addmm", "mm", "bmm", "matmul", "conv")


def require_executorch(what: str = "the executorch runtime") -> None:
    """Fail with the install hint when ExecuTorch is not installed.

    Raises:
        InputError: ``executorch`` (the ``mobile`` extra) is not importable.
    """
    try:
        found = importlib.util.find_spec("executorch.extension.pybindings._portable_lib")
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise InputError(f"{what} needs ExecuTorch, which is not installed: {INSTALL_HINT}")


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the C++ runtime's log lines (cpuinfo probing, threadpool resets, why a program
    failed to load: the error raised says it) and the compiler's import-time noise.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def portable_lib(threads: int | None) -> Any:
    """ExecuTorch's runtime bindings with the shared threadpool set to ``threads`` (``None``:
    left as it is).

    ``_portable_lib`` is imported directly (after torch, which it links against) rather than
    through ``portable_lib``, whose wrapper imports the whole ``executorch.exir`` compiler.
    """
    require_executorch()
    import torch  # noqa: F401  (the bindings convert to and from torch tensors)

    with _quiet_stderr():
        from executorch.extension.pybindings import _portable_lib as pl

        if threads is not None and pl._threadpool_get_thread_count() != threads:
            pl._unsafe_reset_threadpool(threads)
        got = pl._threadpool_get_thread_count()
    if threads is not None and got != threads:
        from ..errors import InputError

        raise InputError(f"ExecuTorch's threadpool refused {threads} thread(s) (it has {got}): "
                         "give a --threads it accepts")
    return pl


def load_method(path: Path, threads: int | None) -> Any:
    """The ``forward`` method of a ``.pte`` program, ready to call.

    Raises:
        InputError: the file is missing or not an ExecuTorch program.
    """
    if not path.is_file():
        raise InputError(f"{str(path)!r} does not exist")
    pl = portable_lib(threads)
    try:
        with _quiet_stderr():
            program = pl._load_program(str(path))
            return program.load_method("forward")
    except Exception as e:  # the bindings raise RuntimeError with an error code for bad files
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"ExecuTorch cannot load {path}: {msg}") from None


def info_path(pte: Path) -> Path:
    """Where the exporter's description of ``pte`` lives (``model.pte.json``)."""
    return pte.with_name(pte.name + INFO_SUFFIX)


def read_info(pte: Path) -> dict | None:
    """The exporter's description of ``pte``, or ``None`` if absent or for another file."""
    p = info_path(pte)
    try:
        info = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return info if info.get("sha256") == file_sha256(pte) else None


def plan_from_pte(pte: Path) -> dict:
    """Delegate and kernel calls of a program's ``forward`` plan, read from the file itself."""
    pf = deserialize(pte)
    return plan_summary(getattr(pf, "program", pf))


def deserialize(pte: Path) -> Any:
    """The program file as ExecuTorch's serializer reads it (its import-time noise silenced)."""
    with _quiet_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from executorch.exir._serialize._program import deserialize_pte_binary

        return deserialize_pte_binary(pte.read_bytes())


def plan_summary(program: Any) -> dict:
    """``{"delegate_calls": {backend: n}, "kernel_calls": {op: n}}`` of the ``forward`` plan."""
    plan = next(p for p in program.execution_plan if p.name == "forward")
    delegates: Counter[str] = Counter()
    kernels: Counter[str] = Counter()
    for chain in plan.chains:
        for ins in chain.instructions:
            args = ins.instr_args
            kind = type(args).__name__
            if kind == "DelegateCall":
                delegates[plan.delegates[args.delegate_index].id] += 1
            elif kind == "KernelCall":
                kernels[plan.operators[args.op_index].name.replace("::", ".")] += 1
    return {"delegate_calls": dict(sorted(delegates.items())),
            "kernel_calls": dict(sorted(kernels.items()))}


class EtSession(Session):
    """An ExecuTorch ``forward`` method behind the :class:`Session` interface (batch fixed)."""

    def __init__(self, path: Path, threads: int):
        import torch

        self._torch = torch
        self.path, self.threads = path, threads
        t0 = time.perf_counter()
        self.method = load_method(path, threads)
        self.load_ms = (time.perf_counter() - t0) * 1e3
        meta = self.method.method_meta()
        if meta.num_inputs() != 1:
            raise InputError(f"{path} has {meta.num_inputs()} inputs; edgepress measures image "
                             "classifiers with one input")
        tin = meta.input_tensor_meta(0)
        if tin.dtype() != _FLOAT:
            raise InputError(f"{path}: its input is not float32")
        self.input_shape = tuple(int(d) for d in tin.sizes())
        self.info = read_info(path)

    def run(self, x: np.ndarray) -> np.ndarray:  # noqa: D102
        return self.method.call([self._torch.from_numpy(x)])[0].numpy()

    def kernels(self, x: np.ndarray) -> tuple[dict[str, int], dict[str, float]]:
        """What one run executes: delegate calls and operators left outside (from the plan),
        plus the operators inside the delegate (``xnnpack:…``, from the export's graph). No
        per-operator times: the wheel has no profiler.
        """
        self.run(x)  # the program runs on this input (the timed session runs it too)
        plan = self.info["plan"] if self.info else plan_from_pte(self.path)
        counts: dict[str, int] = {**plan["delegate_calls"], **plan["kernel_calls"]}
        if self.info:
            for op, n in self.info["delegation"]["delegated"].items():
                counts[DELEGATED_PREFIX + op] = int(n)
        return dict(sorted(counts.items())), {}


class ExecutorchRuntime(Runtime):
    """ExecuTorch (XNNPACK delegate, portable kernels for anything left outside it)."""

    name = "executorch"
    suffix = ".pte"

    def __init__(self) -> None:
        require_executorch()
        self._probes: dict[str, dict] = {}

    def version(self) -> str:  # noqa: D102
        return metadata.version("executorch")

    def load(self, path: Path, *, threads: int) -> EtSession:  # noqa: D102
        return EtSession(Path(path), threads)

    def peak_rss(self, path: Path, *, threads: int, x: np.ndarray) -> dict:  # noqa: D102
        out = run_probe(Path(path), threads, x)
        self._probes[str(path)] = out
        return rss_fields(out)

    def file_counts(self, path: Path) -> dict:
        """Counts of a bare ``.pte``: from ``model.pte.json``, else the program (see
        :func:`program_counts`).

        Raises:
            InputError: the file is not a program ExecuTorch can load.
        """
        load_method(Path(path), None)  # fail early and clearly on a truncated or foreign file
        counts, source = program_counts(Path(path))
        where = {"pte-info": str(info_path(Path(path))), "pte-program": str(path)}.get(source)
        return {**counts, "counts_from": source, "counts_file": where}

    def record_extras(self, session: Session, path: Path) -> dict:
        """``delegation`` (what XNNPACK took), the program's precision and quantization, and
        how the peak RSS was taken.
        """
        info = getattr(session, "info", None) or {}
        probe = self._probes.get(str(path), {})
        extras: dict[str, Any] = {
            "delegation": info.get("delegation") or _plan_only_delegation(Path(path)),
            "pte": {k: info.get(k) for k in ("precision", "input_shape", "quantization")},
            "kernel_time_note": "ExecuTorch's pip wheel has no profiler: no per-operator times",
        }
        if probe:
            extras.update(peak_rss_baseline_mb=probe["baseline_rss_mb"],
                          peak_rss_torch_imported=bool(probe["torch_imported"]))
        return extras


def _plan_only_delegation(pte: Path) -> dict:
    """Without ``model.pte.json``: what the plan alone says (no per-op view of the delegate)."""
    plan = plan_from_pte(pte)
    return {"delegate_calls": sum(plan["delegate_calls"].values()),
            "outside": plan["kernel_calls"], "share": None,
            "note": f"{info_path(pte).name} missing or stale: re-export for the delegated ops"}


def run_probe(path: Path, threads: int, x: np.ndarray) -> dict:
    """Peak RSS of a fresh interpreter that loads ``path`` with ExecuTorch and runs it 20 times.

    Returns:
        ``{"peak_rss_mb", "baseline_rss_mb", "torch_imported"}`` (MB; baseline = after imports).
    """
    return spawn_probe(_PROBE, path, threads, x)


def program_counts(pte: Path) -> tuple[dict, str]:
    """Parameters and MACs (per image) of a bare ``.pte``, and where they come from.

    Returns:
        ``({"params_total", "params_nonzero", "macs"}, counts_from)``: ``"pte-info"`` (the
        exporter's ``model.pte.json``, counted on the run's ONNX twin), ``"pte-program"`` (the
        program's XNNPACK subgraphs, :func:`counts_from_program`) or ``"unavailable"`` (zeros).
    """
    counts = counts_from_info(pte)
    if counts is not None:
        return counts, "pte-info"
    counts = counts_from_program(pte)
    if counts is not None:
        return counts, "pte-program"
    return dict.fromkeys(COUNT_KEYS, 0), "unavailable"


def counts_from_info(pte: Path) -> dict | None:
    """The counts ``model.pte.json`` records, or ``None`` (absent, for another file, or written
    before the exporter recorded counts).
    """
    counts = (read_info(pte) or {}).get("counts") or {}
    if all(isinstance(counts.get(k), int) for k in COUNT_KEYS):
        return {k: counts[k] for k in COUNT_KEYS}
    return None


def counts_from_program(pte: Path) -> dict | None:
    """Counts read from the program itself: the constant tensors and the convolution,
    fully-connected and batch-matmul nodes of each XNNPACK subgraph (decoded with ExecuTorch's
    bundled ``flatc`` and its XNNPACK schema).

    ``None`` when that would not be the whole model: a backend other than XNNPACK, a MAC-bearing
    operator or a constant tensor outside the delegate, a constant of a type whose bytes are not
    readable here (4-bit, packed), or an ExecuTorch whose serialization differs.
    """
    try:
        pf = deserialize(pte)
        program = getattr(pf, "program", pf)
        plan = next(p for p in program.execution_plan if p.name == "forward")
        if not _plan_all_in_xnnpack(plan):
            return None
        named = getattr(pf, "named_data", None)
        totals = [_xnn_counts(graph, blob, named) for graph, blob in _xnn_graphs(program, plan)]
    except Exception:  # private serialization APIs: any surprise means "cannot count"
        return None
    found = [t for t in totals if t is not None]
    if not found or len(found) != len(totals):
        return None
    return {k: int(sum(t[k] for t in found)) for k in COUNT_KEYS}


def _plan_all_in_xnnpack(plan: Any) -> bool:
    """Every delegate is XNNPACK, and outside them no MAC-bearing kernel and no constant tensor
    (scalar constants aside).
    """
    if not plan.delegates or any(d.id != BACKEND for d in plan.delegates):
        return False
    ops = [op.name.split("::")[-1] for op in plan.operators]
    if any(op.startswith(m) for op in ops for m in _MAC_KERNELS):
        return False
    return not any(getattr(v.val, "data_buffer_idx", 0) and math.prod(v.val.sizes) > 1
                   for v in plan.values)


def _xnn_graphs(program: Any, plan: Any) -> Iterator[tuple[dict, bytes]]:
    """Each XNNPACK delegate's graph (decoded to a dict) and its blob (for inline constants)."""
    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import (
        XNNHeader,
        _get_schema_bytes,
    )

    for delegate in plan.delegates:
        blob = bytes(program.backend_delegate_data[delegate.processed.index].data)
        header = XNNHeader.from_bytes(blob[:XNNHeader.EXPECTED_LENGTH])
        start = header.flatbuffer_offset
        graph = _flatc_json(_get_schema_bytes(), blob[start:start + header.flatbuffer_size])
        graph["_constant_base"] = header.constant_data_offset
        yield graph, blob


def _flatc_json(schema: bytes, data: bytes) -> dict:
    """A flatbuffer decoded to JSON with ExecuTorch's bundled ``flatc`` (``inf`` made JSON)."""
    from executorch.exir._serialize._flatbuffer import _get_flatc_path

    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "schema.fbs").write_bytes(schema)
        Path(tmp, "graph.bin").write_bytes(data)
        subprocess.run([_get_flatc_path(), "--json", "--defaults-json", "--strict-json", "-o",
                        tmp, str(Path(tmp, "schema.fbs")), "--", str(Path(tmp, "graph.bin"))],
                       check=True, capture_output=True, timeout=120)
        text = Path(tmp, "graph.json").read_text()
    return json.loads(re.sub(r"(:\s*-?)inf\b", r"\1Infinity", text))


def _xnn_tensors(graph: dict) -> dict[int, dict]:
    """The graph's tensor values by id (quantized ones unwrapped)."""
    out = {}
    for v in graph.get("xvalues", []):
        t = v["xvalue_union"]
        t = t.get("tensor_value", t)
        out[int(t["id_out"])] = t
    return out


def _xnn_counts(graph: dict, blob: bytes, named: Any) -> dict | None:
    """Parameters (constant tensors) and per-image MACs of one XNNPACK graph."""
    tensors = _xnn_tensors(graph)
    total = nonzero = 0
    for t in tensors.values():
        idx = int(t.get("constant_buffer_idx", 0))
        if idx == 0:
            continue
        n = math.prod(int(d) for d in t.get("dims", []))
        dtype = _XNN_DTYPES.get(t["datatype"])
        data = _xnn_constant(graph, blob, named, idx)
        if dtype is None or data is None or len(data) < n * np.dtype(dtype).itemsize:
            return None
        if n <= 1 and "int" in t["datatype"]:  # scalar integer constants: not parameters
            continue
        total += n
        nonzero += int(np.count_nonzero(np.frombuffer(data, dtype, count=n)))
    macs = _xnn_macs(graph, tensors)
    return None if macs is None else {"params_total": total, "params_nonzero": nonzero,
                                      "macs": macs}


def _xnn_constant(graph: dict, blob: bytes, named: Any, idx: int) -> bytes | None:
    """The bytes of constant ``idx``: in the named data store, or inline after the graph."""
    entry = graph["constant_data"][idx]
    key = entry.get("named_key") or ""
    if key:
        found = named.pte_data.get(key) if named is not None else None
        return None if found is None else bytes(named.buffers[found.buffer_index])
    start = graph["_constant_base"] + int(entry["offset"])
    return blob[start:start + int(entry["size"])]


def _xnn_macs(graph: dict, tensors: dict[int, dict]) -> int | None:
    """MACs of the graph's convolution / fully-connected / batch-matmul nodes, per image."""
    def dims(i: int) -> list[int]:
        return [int(d) for d in tensors[int(i)].get("dims", [])]

    inputs = [t for t in tensors.values() if int(t.get("flags", 0)) & 1]  # external inputs
    batch = dims(inputs[0]["id_out"])[0] if inputs and dims(inputs[0]["id_out"]) else 1
    total = 0
    for node in graph.get("xnodes", []):
        kind, n = node["xnode_union_type"], node["xnode_union"]
        if kind == "XNNConvTranspose2d":
            return None  # not needed by the zoo; not counted rather than miscounted
        if kind not in _XNN_MAC_NODES:
            continue
        out = dims(n["output_id"])
        if kind == "XNNBatchMatrixMultiply":  # [.., M, K] @ [.., K, N]
            total += math.prod(out) * dims(n["input1_id"])[-1]
        else:  # filter OHWI (conv), [1, H, W, O] (depthwise) or [O, I] (fc): per output
            total += math.prod(out) * math.prod(dims(n["filter_id"])) // out[-1]
    return total // max(1, batch)
