r"""Explain a speed-up (or a slowdown) operator by operator, from ONNX Runtime's profiler.

Measurement records carry ``kernel_time_us`` (µs per run for each executed operator type);
:func:`explain` sets two of them side by side and says which operators got slower, which
compute stayed float, and what the quantize / dequantize and layout (NCHW↔NHWC) steps cost.
:func:`node_profile` goes one level deeper, to single nodes (e.g. "the first conv").

Example:
    >>> rep = explain(fp32_record, int8_record)  # doctest: +SKIP
    >>> print("\\n".join(rep["text"]))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

# Operator kinds, so that an fp32 Conv and its int8 QLinearConv are compared with each other.
KINDS = {
    "conv": {"Conv", "FusedConv", "NhwcFusedConv", "QLinearConv", "ConvInteger"},
    "gemm": {"Gemm", "FusedGemm", "MatMul", "FusedMatMul", "QGemm", "QLinearMatMul",
             "MatMulInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "MatMulNBits"},
    "quantize/dequantize": {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"},
    "layout": {"Transpose", "ReorderInput", "ReorderOutput"},
    "pool": {"MaxPool", "NhwcMaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean",
             "QLinearAveragePool", "QLinearGlobalAveragePool"},
    "elementwise": {"Add", "Mul", "Relu", "Clip", "QLinearAdd", "QLinearMul", "Cast", "Sigmoid"},
}
FLOAT_COMPUTE = {"Conv", "FusedConv", "NhwcFusedConv", "Gemm", "FusedGemm", "MatMul",
                 "FusedMatMul"}


def kind_of(op: str) -> str:
    """The kind of an operator type (``conv``, ``gemm``, ``quantize/dequantize``, ...)."""
    return next((k for k, ops in KINDS.items() if op in ops), "other")

def node_profile(path: str | os.PathLike, x: np.ndarray, *, threads: int = 1,
                 runs: int = 20) -> dict[str, dict]:
    """Per executed node: ``{"op", "us"}`` (median µs over ``runs`` runs) on input ``x``."""
    from ..runtimes.onnxruntime import inference_session

    with tempfile.TemporaryDirectory() as tmp:
        sess = inference_session(path, threads, profile_dir=tmp)
        name = sess.get_inputs()[0].name
        for _ in range(runs):
            sess.run(None, {name: x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    ops: dict[str, str] = {}
    durs: dict[str, list[float]] = defaultdict(list)
    for ev in events:
        args = ev.get("args", {})
        if ev.get("cat") == "Node" and "op_name" in args and ev["name"].endswith("_kernel_time"):
            node = ev["name"][: -len("_kernel_time")]
            ops[node] = args["op_name"]
            durs[node].append(float(ev.get("dur", 0)))
    return {n: {"op": ops[n], "us": float(np.median(durs[n][1:] or durs[n]))} for n in ops}


def op_rows(ref_us: dict[str, float], new_us: dict[str, float]) -> list[dict]:
    """One row per operator type: µs per run in each model and the difference, biggest first."""
    rows: list[dict] = []
    for op in sorted(set(ref_us) | set(new_us)):
        a, b = float(ref_us.get(op, 0.0)), float(new_us.get(op, 0.0))
        rows.append({"op": op, "ref_us": a, "new_us": b, "delta_us": b - a})
    return sorted(rows, key=lambda r: -abs(r["delta_us"]))


def kind_rows(ref_us: dict[str, float], new_us: dict[str, float]) -> list[dict]:
    """µs per run by operator kind in each model, with the ratio (>1 = the new one is faster)."""
    rows: dict[str, dict] = {}
    for which, times in (("ref_us", ref_us), ("new_us", new_us)):
        for op, us in times.items():
            r = rows.setdefault(kind_of(op), {"kind": kind_of(op), "ref_us": 0.0, "new_us": 0.0})
            r[which] += float(us)
    for r in rows.values():
        r["speedup"] = r["ref_us"] / r["new_us"] if r["new_us"] else None
    return sorted(rows.values(), key=lambda r: -max(r["ref_us"], r["new_us"]))


def explain(ref: dict, new: dict, *, layers: list[dict] | None = None) -> dict:
    """Compare the per-operator times of two measurement records (``kernel_time_us``).

    Args:
        ref: the reference record (fp32).
        new: the quantized model's record.
        layers: optional :func:`layer_rows` output, to name the layers that got slower.

    Returns:
        ``{"ref_total_us", "new_total_us", "by_op", "by_kind", "float_compute_us", "qdq_us",
        "layout_us", "text": [sentences]}``.
    """
    a, b = ref.get("kernel_time_us") or {}, new.get("kernel_time_us") or {}
    kinds = kind_rows(a, b)
    total_a, total_b = sum(a.values()), sum(b.values())
    float_ops = {k: v for k, v in b.items() if k in FLOAT_COMPUTE}
    qdq = sum(v for k, v in b.items() if kind_of(k) == "quantize/dequantize")
    layout = sum(v for k, v in b.items() if kind_of(k) == "layout")
    text = [f"profiled kernel time per run: {total_a:.0f} µs fp32 → {total_b:.0f} µs quantized "
            f"({total_a / total_b if total_b else float('nan'):.2f}×)"]
    for r in kinds:
        if r["new_us"] > 1.05 * r["ref_us"] + 1:
            text.append(f"slower: {r['kind']} {r['ref_us']:.0f} → {r['new_us']:.0f} µs")
        elif r["ref_us"] > 1.05 * r["new_us"] + 1:
            text.append(f"faster: {r['kind']} {r['ref_us']:.0f} → {r['new_us']:.0f} µs "
                        f"({r['speedup']:.2f}×)")
    if float_ops:
        counts = new.get("kernels") or {}
        text.append("still float: " + ", ".join(f"{k}×{counts.get(k, '?')} ({v:.0f} µs)"
                                                for k, v in float_ops.items()))
    text.append(f"added quantize/dequantize steps: {qdq:.0f} µs; layout transposes "
                f"(NCHW↔NHWC): {layout:.0f} µs")
    for row in sorted(layers or [], key=lambda r: r["ref_us"] - r["new_us"])[:3]:
        if row["new_us"] > row["ref_us"]:
            text.append(f"slower layer: {row['kind']} #{row['index'] + 1} ({row['ref_op']} "
                        f"{row['ref_us']:.0f} µs → {row['new_op']} {row['new_us']:.0f} µs)")
    return {"ref_total_us": total_a, "new_total_us": total_b, "by_op": op_rows(a, b),
            "by_kind": kinds, "float_compute_us": sum(float_ops.values()), "qdq_us": qdq,
            "layout_us": layout, "text": text}


def layer_rows(ref_nodes: dict[str, dict], new_nodes: dict[str, dict]) -> list[dict]:
    """Pair the conv / gemm nodes of two :func:`node_profile` results in execution order.

    The k-th convolution of the fp32 model is the k-th of the quantized one (fused int8 nodes
    get new names), so each layer's time can be compared.
    """
    rows = []
    for kind in ("conv", "gemm"):
        a = [(n, v) for n, v in ref_nodes.items() if kind_of(v["op"]) == kind]
        b = [(n, v) for n, v in new_nodes.items() if kind_of(v["op"]) == kind]
        for i, ((na, va), (nb, vb)) in enumerate(zip(a, b, strict=False)):
            rows.append({"kind": kind, "index": i, "ref_node": na, "ref_op": va["op"],
                         "ref_us": va["us"], "new_node": nb, "new_op": vb["op"],
                         "new_us": vb["us"]})
    return rows


def node_rows(profile: dict[str, dict], top: int = 8) -> list[dict]:
    """The ``top`` slowest nodes of a :func:`node_profile`, slowest first."""
    rows = [{"node": n, "op": v["op"], "us": v["us"]} for n, v in profile.items()]
    return sorted(rows, key=lambda r: -r["us"])[:top]


def markdown(rep: dict, ref_name: str = "fp32", new_name: str = "int8") -> str:
    """An :func:`explain` report as a Markdown table (by operator kind) plus its sentences."""
    lines = [f"| operator kind | {ref_name} µs | {new_name} µs | speed-up |", "|---|---|---|---|"]
    for r in rep["by_kind"]:
        ratio = "-" if r["speedup"] is None else f"{r['speedup']:.2f}×"
        lines.append(f"| {r['kind']} | {r['ref_us']:.0f} | {r['new_us']:.0f} | {ratio} |")
    return "\n".join(lines) + "\n\n" + "\n".join(f"- {t}" for t in rep["text"]) + "\n"
