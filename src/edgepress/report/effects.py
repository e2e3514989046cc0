"""One plain sentence per variant on what it really bought, read off the measured record.

The sentence is built from the figures (size ratio, speed-up and its CI, MACs, non-zero
parameters, accuracy delta and its McNemar p-value, the kernels that ran) — never from the
variant's name — so a technique that bought nothing is said to have bought nothing.

Example:
    >>> ref = {"macs": 100, "params_nonzero": 100, "kernels": {"Gemm": 1}}
    >>> rec = {"variant": "sparse", "size_ratio": 0.2, "speedup": 1.0,
    ...        "speedup_ci95": [0.99, 1.01], "macs": 100, "params_nonzero": 10,
    ...        "accuracy_delta_pts": -0.1, "p_value": 0.6, "kernels": {"Gemm": 1}}
    >>> effect_sentence(rec, ref)  # doctest: +NORMALIZE_WHITESPACE
    'sparse: 5.0× smaller download, no latency change (1.00× [0.99, 1.01]) — dense kernels do not
    skip zeros (MACs unchanged, 10% of weights non-zero); accuracy unchanged within noise
    (-0.10 pts, p = 0.6).'
"""

from __future__ import annotations

INT8_OPS = ("QLinearConv", "QGemm", "QLinearMatMul", "ConvInteger", "MatMulInteger",
            "DynamicQuantizeMatMul", "QLinearAdd")
SAME_SIZE, SAME_SPEED, SIGNIFICANT = 0.05, 0.03, 0.05


def effect_sentence(rec: dict, ref: dict) -> str:
    """The sentence for ``rec`` measured against the reference record ``ref``."""
    name = rec.get("variant", "variant")
    if rec is ref or rec.get("speedup_ci95") == [1.0, 1.0] and rec.get("p_value") == 1.0 \
            and rec.get("size_ratio") == 1.0:
        return f"{name}: the reference every other row is measured against."
    parts = [_size(rec), _speed(rec)]
    why = _why(rec, ref)
    head = ", ".join(p for p in parts if p)
    return f"{name}: {head}{f' — {why}' if why else ''}; {_accuracy(rec)}."


def _size(rec: dict) -> str:
    r = rec["size_ratio"]
    if abs(1 - r) <= SAME_SIZE:
        return "same download size"
    return f"{1 / r:.1f}× smaller download" if r < 1 else f"{r:.1f}× larger download"


def _speed(rec: dict) -> str:
    s, (lo, hi) = rec["speedup"], rec["speedup_ci95"]
    ci = f"[{lo:.2f}, {hi:.2f}]"
    if lo <= 1 <= hi or abs(s - 1) <= SAME_SPEED:
        return f"no latency change ({s:.2f}× {ci})"
    return f"{s:.2f}× faster {ci}" if s > 1 else f"{1 / s:.2f}× slower (speed-up {s:.2f}× {ci})"


def _why(rec: dict, ref: dict) -> str:
    s = rec["speedup"]
    mac_ratio = ref["macs"] / rec["macs"] if rec.get("macs") else 1.0
    nz = rec["params_nonzero"] / max(ref["params_nonzero"], 1)
    int8 = any(k in INT8_OPS for k in rec.get("kernels", {}))
    if abs(mac_ratio - 1) < 0.02 and nz < 0.7 and abs(s - 1) <= 0.1 and not int8:
        return (f"dense kernels do not skip zeros (MACs unchanged, {100 * nz:.0f}% of weights "
                "non-zero)")
    if mac_ratio > 1.2:
        if s < 0.5 * mac_ratio:
            return (f"MACs fell {mac_ratio:.1f}× but time only {s:.2f}×: per-operator overhead, "
                    "not arithmetic, dominates at this size")
        return f"MACs fell {mac_ratio:.1f}×"
    if mac_ratio < 0.83:
        return f"MACs rose {1 / mac_ratio:.1f}×"
    if int8:
        if s < 1:
            return ("int8 kernels plus the quantize / dequantize and layout steps around them cost "
                    "more than the float arithmetic they replace at this size")
        return "int8 kernels replace float arithmetic"
    return ""


def _accuracy(rec: dict) -> str:
    d, p = rec["accuracy_delta_pts"], rec["p_value"]
    if p >= SIGNIFICANT:
        return f"accuracy unchanged within noise ({d:+.2f} pts, p = {p:.2g})"
    return f"accuracy {'falls' if d < 0 else 'rises'} {abs(d):.2f} pts (p = {p:.2g})"
