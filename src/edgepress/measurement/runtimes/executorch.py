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
  import torch. The record says so (``peak_rss_torch_imported``) and also gives the probe's RSS
  after its imports and before loading the model (``peak_rss_baseline_mb``): the model's own cost
  is the difference.

The module imports neither torch nor executorch until a runtime is instantiated.

Example:
    >>> rt = get_runtime("executorch")  # doctest: +SKIP
    >>> s = rt.load(Path("runs/cnn/model.pte"), threads=1)  # doctest: +SKIP
    >>> s.input_shape  # doctest: +SKIP
    (1, 1, 28, 28)
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from .base import Runtime, Session, spawn_probe

INSTALL_HINT = "pip install 'edgepress[mobile]'"
BACKEND = "XnnpackBackend"
INFO_SUFFIX = ".json"  # model.pte -> model.pte.json, written by the exporter
DELEGATED_PREFIX = "xnnpack:"
_PROBE = Path(__file__).with_name("_rss_probe_et.py")
_FLOAT = 6  # ExecuTorch ScalarType::Float


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
    """Silence the C++ runtime's start-up log lines (cpuinfo probing, threadpool resets)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
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
        raise RuntimeError(f"ExecuTorch threadpool has {got} threads, not {threads}")
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
        program = pl._load_program(str(path))
        return program.load_method("forward")
    except Exception as e:  # the bindings raise RuntimeError with an error code for bad files
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"ExecuTorch cannot load {path}: {msg}") from None


def info_path(pte: Path) -> Path:
    """Where the exporter's description of ``pte`` lives (``model.pte.json``)."""
    return pte.with_name(pte.name + INFO_SUFFIX)


def file_sha256(path: Path) -> str:
    """SHA-256 of a file (ties ``model.pte.json`` to the program it describes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
    from executorch.exir._serialize._program import deserialize_pte_binary

    pf = deserialize_pte_binary(pte.read_bytes())
    return plan_summary(getattr(pf, "program", pf))


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

    def peak_rss_mb(self, path: Path, *, threads: int, x: np.ndarray) -> float:  # noqa: D102
        out = run_probe(Path(path), threads, x)
        self._probes[str(path)] = out
        return float(out["peak_rss_mb"])

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
