"""ONNX Runtime (CPU execution provider), pinned to N threads, with its profiler for kernels."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from ..errors import InputError
from .base import Runtime, Session, rss_fields, spawn_probe

_PROBE = Path(__file__).with_name("_rss_probe_ort.py")


def session_options(threads: int, *, profile_dir: str | None = None):  # noqa: ANN201
    """ONNX Runtime options: ``threads`` intra-op threads, one inter-op, sequential, full
    graph optimisation (what an app would ship).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if profile_dir is not None:
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(profile_dir, "ort_profile")
    return so


def inference_session(path: str | os.PathLike, threads: int = 1, *,
                      profile_dir: str | None = None):  # noqa: ANN201
    """An ``onnxruntime.InferenceSession`` on the CPU provider with :func:`session_options`:
    every ONNX Runtime session edgepress opens (measuring, profiling, the exporter's parity
    check, quantization's evaluation) is made here.

    Raises:
        InputError: ONNX Runtime cannot load the file.
    """
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), session_options(threads, profile_dir=profile_dir),
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises several private exception types for bad files
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"ONNX Runtime cannot load {path}: {msg}") from None


class OrtSession(Session):
    """An ``onnxruntime.InferenceSession`` behind the :class:`Session` interface."""

    def __init__(self, path: Path, threads: int):
        self.path, self.threads = path, threads
        t0 = time.perf_counter()
        self.sess = inference_session(path, threads)
        self.load_ms = (time.perf_counter() - t0) * 1e3
        inputs = self.sess.get_inputs()
        if len(inputs) != 1:
            raise InputError(f"{path} has {len(inputs)} inputs; edgepress measures image "
                             "classifiers with one input")
        if inputs[0].type != "tensor(float)":
            raise InputError(f"{path}: input {inputs[0].name!r} is {inputs[0].type}, not float")
        self.input_name = inputs[0].name
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inputs[0].shape)

    def run(self, x: np.ndarray) -> np.ndarray:  # noqa: D102
        return self.sess.run(None, {self.input_name: x})[0]

    def kernels(self, x: np.ndarray) -> tuple[dict[str, int], dict[str, float]]:
        """Profile a twin session (same options) over a few runs; count executed nodes by op."""
        with tempfile.TemporaryDirectory() as tmp:
            sess = inference_session(self.path, self.threads, profile_dir=tmp)
            for _ in range(7):
                sess.run(None, {self.input_name: x})
            events = json.loads(Path(sess.end_profiling()).read_text())
        return summarize_profile(events)


def summarize_profile(events: list[dict]) -> tuple[dict[str, int], dict[str, float]]:
    """Executed nodes per op type, and per op type the µs per run (each node's median over runs,
    so the first run's allocations do not count).
    """
    node_op: dict[str, str] = {}
    durations: dict[str, list[float]] = defaultdict(list)
    for ev in events:
        args = ev.get("args", {})
        if ev.get("cat") == "Node" and "op_name" in args and ev["name"].endswith("_kernel_time"):
            node_op[ev["name"]] = args["op_name"]
            durations[ev["name"]].append(float(ev.get("dur", 0)))
    counts: Counter[str] = Counter(node_op.values())
    time_us: dict[str, float] = defaultdict(float)
    for node, op in node_op.items():
        time_us[op] += float(np.median(durations[node]))
    return dict(sorted(counts.items())), {op: round(time_us[op], 3) for op in sorted(counts)}


class OnnxRuntime(Runtime):
    """ONNX Runtime on the CPU execution provider."""

    name = "onnxruntime"
    suffix = ".onnx"

    def version(self) -> str:  # noqa: D102
        import onnxruntime as ort

        return ort.__version__

    def load(self, path: Path, *, threads: int) -> OrtSession:  # noqa: D102
        return OrtSession(Path(path), threads)

    def peak_rss(self, path: Path, *, threads: int, x: np.ndarray) -> dict:  # noqa: D102
        return run_probe(_PROBE, path, threads, x)


def run_probe(probe: Path, path: Path, threads: int, x: np.ndarray) -> dict:
    """Run the ONNX Runtime RSS probe in a fresh interpreter (numpy and onnxruntime imported,
    never torch).

    Returns:
        ``{"peak_rss_mb", "rss_baseline_mb", "rss_includes_torch": False}`` (MB).
    """
    out = spawn_probe(probe, path, threads, x)
    if out.get("torch_imported"):
        raise RuntimeError("peak-RSS probe imported torch; the figure would be inflated")
    return rss_fields(out)
