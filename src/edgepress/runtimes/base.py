"""The runtime interface: ``load`` a deployment file, ``run`` a batch, report ``kernels``.

Everything above this layer (accuracy, latency, compare) is runtime-agnostic. A runtime module is
imported only when asked for by name, so ``import edgepress`` never imports onnxruntime or
executorch.

Example:
    >>> rt = get_runtime("onnxruntime")
    >>> rt.name
    'onnxruntime'
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from ..errors import InputError

# name -> "module:Class"; modules are imported lazily by get_runtime
_RUNTIMES: dict[str, str] = {
    "onnxruntime": "edgepress.runtimes.onnxruntime:OnnxRuntime",
    "executorch": "edgepress.runtimes.executorch:ExecutorchRuntime",
}


def register_runtime(name: str, target: str) -> None:
    """Register a runtime implementation as ``"package.module:Class"`` (imported lazily)."""
    _RUNTIMES[name] = target


def runtime_names() -> list[str]:
    """Names accepted by :func:`get_runtime`."""
    return sorted(_RUNTIMES)


class Session(ABC):
    """One loaded model, ready to run. ``input_shape`` is the model's own input shape, with
    ``None`` for a dynamic dimension.
    """

    input_shape: tuple[int | None, ...]
    load_ms: float

    @abstractmethod
    def run(self, x: np.ndarray) -> np.ndarray:
        """Logits for a float32 batch already shaped for this model."""

    @abstractmethod
    def kernels(self, x: np.ndarray) -> tuple[dict[str, int], dict[str, float]]:
        """Operators actually executed on ``x``: ``({op_type: count}, {op_type: µs per run})``."""

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the model insists on, or ``None`` when the batch is dynamic."""
        b = self.input_shape[0] if self.input_shape else None
        return b if isinstance(b, int) and b > 0 else None


class Runtime(ABC):
    """A deployment runtime (ONNX Runtime, ExecuTorch)."""

    name: str
    suffix: str  # the deployment file it loads, e.g. ".onnx"

    @abstractmethod
    def version(self) -> str:
        """The runtime's version string."""

    @abstractmethod
    def load(self, path: Path, *, threads: int) -> Session:
        """Load a deployment file, pinned to ``threads`` threads.

        Raises:
            InputError: the file is missing or not a model this runtime can load.
        """

    @abstractmethod
    def peak_rss(self, path: Path, *, threads: int, x: np.ndarray) -> dict:
        """Memory of a fresh process that loads ``path`` with this runtime alone and runs it.

        Returns:
            ``{"peak_rss_mb": float, "rss_baseline_mb": float, "rss_includes_torch": bool}``:
            the peak RSS, the RSS after the process's imports and before loading the model
            (peak − baseline is the model's own cost), and whether torch had to be imported.
        """

    def file_counts(self, path: Path) -> dict:
        """Parameters and MACs of a bare deployment file that is not ONNX (nothing to count
        them on by default).

        Returns:
            The record's ``params_total``, ``params_nonzero``, ``macs`` (ints, per image),
            ``counts_from`` (how they were read; ``"unavailable"``: zeros) and ``counts_file``
            (what they were read from, or ``None``).
        """
        return {"params_total": 0, "params_nonzero": 0, "macs": 0,
                "counts_from": "unavailable", "counts_file": None}

    def record_extras(self, session: Session, path: Path) -> dict:
        """Runtime-specific fields added to the measurement record (none by default)."""
        return {}


def get_runtime(name: str) -> Runtime:
    """Instantiate a runtime by name, importing its module only now.

    Raises:
        InputError: unknown runtime, or its package is not installed (with an install hint).
    """
    if name not in _RUNTIMES:
        raise InputError(f"unknown runtime {name!r} (known: {', '.join(runtime_names())})")
    module, _, cls = _RUNTIMES[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


def spawn_probe(probe: Path, path: Path, threads: int, x: np.ndarray) -> dict:
    """Run a runtime's peak-RSS probe script (``probe MODEL THREADS X.npy``) in a fresh, isolated
    interpreter (``-I``: the script's folder is not on ``sys.path``); return the JSON it prints.
    """
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with tempfile.TemporaryDirectory() as tmp:
        np.save(os.path.join(tmp, "x.npy"), x)
        proc = subprocess.run([sys.executable, "-I", str(probe), str(path), str(threads),
                               os.path.join(tmp, "x.npy")], capture_output=True, text=True,
                              env=env, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"peak-RSS probe failed (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def rss_fields(probe_out: dict) -> dict:
    """A probe's output (``peak_rss_mb``, ``baseline_rss_mb``, ``torch_imported``) as
    :meth:`Runtime.peak_rss` returns it.
    """
    return {"peak_rss_mb": float(probe_out["peak_rss_mb"]),
            "rss_baseline_mb": float(probe_out["baseline_rss_mb"]),
            "rss_includes_torch": bool(probe_out["torch_imported"])}
