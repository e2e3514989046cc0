"""One plain sentence per variant on what it really bought, read off the measured record.

The sentence is built from the figures (size ratio, speed-up and its CI against the measured
noise floor, MACs, non-zero parameters, the accuracy delta and the CI of the paired difference,
the kernels that ran) — never from the variant's name — so a technique that bought nothing is
said to have bought nothing.

Example:
    >>> ref = {"macs": 100, "params_nonzero": 100, "size_bytes": 1000, "kernels": {"Gemm": 1}}
    >>> rec = {"variant": "sparse", "size_ratio": 0.2, "size_bytes": 1000, "speedup": 1.0,
    ...        "speedup_ci95": [0.99, 1.01], "noise_floor": 0.008, "macs": 100,
    ...        "params_nonzero": 10, "accuracy_delta_pts": -0.14,
    ...        "accuracy_delta_ci95_pts": [-0.41, 0.12], "p_value": 0.6, "kernels": {"Gemm": 1}}
    >>> effect_sentence(rec, ref)  # doctest: +NORMALIZE_WHITESPACE
    'sparse: 5.0× smaller download (the raw file is as large as before: the zeros are stored,
    only compression shrinks them), no measurable latency change (1.00× [0.99, 1.01]; the CI
    overlaps 1 ± 0.8%, the measured noise floor) — dense kernels do not skip zeros (MACs
    unchanged, 10% of weights non-zero); no significant accuracy change (Δ -0.14 pts, 95% CI
    [-0.41, +0.12]).'
"""

from __future__ import annotations

INT8_OPS = ("QLinearConv", "QGemm", "QLinearMatMul", "ConvInteger", "MatMulInteger",
            "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearAdd")
INT8_ET_MARKERS = ("quantized_decomposed.", "quantize_per_", "dequantize_per_")
SAME_SIZE, SIGNIFICANT = 0.05, 0.05
DEFAULT_FLOOR = 0.01  # a record from before the measured noise floor: the old ±1%


def effect_sentence(rec: dict, ref: dict) -> str:
    """The sentence for ``rec`` measured against the reference record ``ref``."""
    name = rec.get("variant", "variant")
    if rec is ref or rec.get("latency_change") == "reference" or (
            rec.get("speedup_ci95") == [1.0, 1.0] and rec.get("p_value") == 1.0
            and rec.get("size_ratio") == 1.0):
        return f"{name}: the reference every other row is measured against."
    if rec.get("same_deployment_as"):
        return (f"{name}: same deployment as {rec['same_deployment_as']} (an identical file, "
                f"sha256 {str(rec.get('deployment_sha256', ''))[:12]}…): nothing more bought.")
    parts = [_size(rec, ref), _speed(rec)]
    why = _why(rec, ref)
    head = ", ".join(p for p in parts if p)
    return f"{name}: {head}{f' — {why}' if why else ''}; {_accuracy(rec)}."


def is_int8(kernels: dict) -> bool:
    """Whether int8 kernels ran: ONNX Runtime's quantized operators, or XNNPACK's quantized
    (``quantized_decomposed``) operators inside an ExecuTorch delegate.

    >>> is_int8({"QLinearConv": 2})
    True
    >>> is_int8({"XnnpackBackend": 1, "xnnpack:quantized_decomposed.quantize_per_tensor": 3})
    True
    >>> is_int8({"Conv": 2, "xnnpack:aten.convolution": 1})
    False
    """
    return any(k in INT8_OPS or any(m in k for m in INT8_ET_MARKERS) for k in kernels)


def _size(rec: dict, ref: dict) -> str:
    r = rec["size_ratio"]
    if abs(1 - r) <= SAME_SIZE:
        return "same download size"
    text = f"{1 / r:.1f}× smaller download" if r < 1 else f"{r:.1f}× larger download"
    raw = rec.get("size_bytes", 0) / max(ref.get("size_bytes", 0), 1)
    if r < 1 and abs(1 - raw) <= SAME_SIZE:
        text += (" (the raw file is as large as before: the zeros are stored, only compression "
                 "shrinks them)")
    return text


def _speed(rec: dict) -> str:
    s, (lo, hi) = rec["speedup"], rec["speedup_ci95"]
    floor = rec.get("noise_floor", DEFAULT_FLOOR)
    change = rec.get("latency_change") or ("no measurable change" if lo <= 1 + floor
                                           and hi >= 1 - floor else "")
    ci = f"[{lo:.2f}, {hi:.2f}]"
    if change == "no measurable change":
        return (f"no measurable latency change ({s:.2f}× {ci}; the CI overlaps 1 ± "
                f"{100 * floor:.1f}%, the measured noise floor)")
    return f"{s:.2f}× faster {ci}" if s > 1 else f"{1 / s:.2f}× slower (speed-up {s:.2f}× {ci})"


def _why(rec: dict, ref: dict) -> str:
    s = rec["speedup"]
    incomplete = rec.get("macs_incomplete") or ref.get("macs_incomplete")
    mac_ratio = ref["macs"] / rec["macs"] if rec.get("macs") and not incomplete else 1.0
    nz = rec["params_nonzero"] / max(ref["params_nonzero"], 1)
    int8 = is_int8(rec.get("kernels", {}))
    if not incomplete and abs(mac_ratio - 1) < 0.02 and nz < 0.7 and abs(s - 1) <= 0.1 \
            and not int8:
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
    if incomplete:
        return "MACs not compared: some shapes in a graph were unknown to the counter"
    return ""


def _accuracy(rec: dict) -> str:
    if rec.get("accuracy_delta_pts") is None:  # no labels: how closely it follows the reference
        a = rec.get("agreement") or {}
        if not a:
            return "no labels and no reference: fidelity not measured"
        lo = a["top1_ci95"][0]
        return (f"agrees with {a['reference']} on {100 * a['top1']:.1f}% of the unlabelled "
                f"images (top-1, 95% CI from {100 * lo:.1f}%; top-5 {100 * a['top5']:.1f}%, "
                f"KL {a['kl_mean']:.3f})")
    d, p = rec["accuracy_delta_pts"], rec["p_value"]
    ci = rec.get("accuracy_delta_ci95_pts")
    ci_text = f", 95% CI [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""
    if p >= SIGNIFICANT or (ci and ci[0] <= 0 <= ci[1]):
        return f"no significant accuracy change (Δ {d:+.2f} pts{ci_text})"
    stats = ", ".join(x for x in (ci_text[2:], f"p = {p:.2g}") if x)
    return f"accuracy {'falls' if d < 0 else 'rises'} {abs(d):.2f} pts ({stats})"
