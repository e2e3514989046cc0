"""Bias correction on the quantized graph: each layer's mean output shift, measured with the
int8 layers before it in place, goes into its bias (empirical bias correction as AIMET does it,
Nagel et al. 2019 §4.2).

Why on the quantized graph: a layer's output moves on average not only because its own weights
are rounded but because its *inputs* are the rounded outputs of the layers before it (their
activations on 256 levels, clipped to the calibrated range). Correcting for the weights alone
with float inputs (:func:`~edgepress.quantize.equalize.correct_biases`, which the XNNPACK path
still uses) misses that. Here, layer by layer in graph order, on the calibration images:

1. the fp32 model's output of every Conv / Gemm is averaged per output channel, once;
2. the QDQ model, whose earlier layers are already corrected, is run up to layer *l* and its
   output averaged the same way;
3. the difference leaves layer *l*'s bias: ``round(d / s)`` off its int32 bias codes (``s``: the
   bias scale, input scale × weight scale), or ``d`` off a float bias (a layer kept float still
   reads rounded inputs).

One layer at a time, because correcting every layer at once counts each upstream shift twice
(measured on EfficientNet-Lite0: top-1 agreement with fp32 fell from 72% to 21% after one such
pass and to 0% after two). The QDQ graph runs unoptimised, i.e. with the float meaning of its
quantize / dequantize pairs, which ONNX Runtime's fused integer kernels reproduce.

Measured on Lite0, int8 per channel, 224×224 (VNNI host; top-1 agreement with fp32 on the 192
validation / 1,029 evaluation crops): no correction 72.4% / 91.1%; the weights' rounding with
float inputs 86.5% / 94.9%; this correction 92.2% / 95.5% (``edgepress quantize --mode static
--bias-correction``, 94 s in all). 128 images gave the same figures as 512 (95.6% and 95.4% on
evaluation in a script), at a quarter of the time.

Example:
    >>> report = correct_qdq_biases(fp32_model, qdq_model, calib_x)  # doctest: +SKIP
    >>> report["layers"], report["images"]  # doctest: +SKIP
    (50, 128)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .layers import find_layers

BC_IMAGES = 128  # calibration images the correction averages over
BC_BATCH = 16
_INT32 = np.iinfo(np.int32)


def correction_images(x: np.ndarray, n: int = BC_IMAGES) -> np.ndarray:
    """``n`` of the calibration images ``x``, evenly spaced: calibration sets are drawn in
    index order, which on photographs is photograph by photograph, so the first ``n`` would
    come from one or two of them (measured on Lite0: 93.6% evaluation agreement from the first
    128 of 512, 95.5% from 128 spread over all four photographs).

    >>> correction_images(np.arange(10), 4).tolist()
    [0, 3, 6, 9]
    """
    if len(x) <= n:
        return x
    return x[np.linspace(0, len(x) - 1, n).round().astype(int)]


def _pruned(model: Any, outputs: Sequence[str]) -> Any:
    """A copy of ``model`` that computes only ``outputs`` (its graph outputs become those)."""
    import onnx
    from onnx import helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    producer = {o: n for n in m.graph.node for o in n.output}
    needed: set[int] = set()
    stack = list(outputs)
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        stack.extend(node.input)
    keep = [n for n in m.graph.node if id(n) in needed]
    del m.graph.node[:]
    m.graph.node.extend(keep)
    del m.graph.output[:]
    m.graph.output.extend(helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None)
                          for o in outputs)
    return m


def channel_means(model: Any, outputs: Sequence[str], x: np.ndarray,
                  batch: int = BC_BATCH) -> dict[str, np.ndarray]:
    """Per-channel means (axis 1; over batch and space) of tensors ``outputs`` of ``model``
    on images ``x``, run unoptimised by ONNX Runtime (the graph's own float meaning), in
    batches of ``batch`` or of the model's fixed batch (a partial last one dropped).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = os.cpu_count() or 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(_pruned(model, outputs).SerializeToString(), so,
                                providers=["CPUExecutionProvider"])
    name, fixed = sess.get_inputs()[0].name, sess.get_inputs()[0].shape[0]
    if isinstance(fixed, int) and fixed > 0:  # a model that insists on its batch gets it
        batch, x = fixed, x[: len(x) // fixed * fixed]
    sums: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for i in range(0, len(x), batch):
        for out, arr in zip(outputs, sess.run(list(outputs), {name: x[i:i + batch]}),
                            strict=True):
            axes = (0, *range(2, arr.ndim))
            sums[out] = sums.get(out, 0) + arr.astype(np.float64).sum(axis=axes)
            counts[out] = counts.get(out, 0) + arr.size // arr.shape[1]
    return {o: sums[o] / counts[o] for o in outputs}


def _shift_bias(inits: dict, producer: dict, node: Any, d: np.ndarray) -> bool:
    """Take ``d`` off ``node``'s bias: its int32 codes, or a float initializer (``inits``,
    ``producer``: the QDQ graph's initializers and tensor producers by name, edited in place).
    Returns False when the layer has no bias to move.
    """
    from onnx import numpy_helper

    if len(node.input) < 3 or not node.input[2]:
        return False
    name = node.input[2]
    dq = producer.get(name)
    if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in inits:
        codes, scale = inits[dq.input[0]], numpy_helper.to_array(inits[dq.input[1]])
        old = numpy_helper.to_array(codes).astype(np.int64)
        new = np.clip(old - np.round(d / scale.astype(np.float64)), _INT32.min, _INT32.max)
        codes.CopyFrom(numpy_helper.from_array(new.astype(np.int32), codes.name))
        return True
    if name in inits:
        old = numpy_helper.to_array(inits[name])
        inits[name].CopyFrom(numpy_helper.from_array((old - d).astype(old.dtype), name))
        return True
    return False


def correct_qdq_biases(fp32: Any, qdq: Any, x: np.ndarray) -> dict[str, Any]:
    """Correct, in place, the biases of QDQ model ``qdq`` (quantized from ``fp32``, the same
    node names) so that every layer's per-channel mean output on ``x`` is the fp32 one, layer by
    layer in graph order (see the module). Returns ``{"method", "layers", "images", "skipped",
    "mean_abs_shift"}`` (``skipped``: layers without a bias).
    """
    layers = find_layers(fp32)
    fp32_nodes = {n.name: n for n in fp32.graph.node}
    q_nodes = {n.name: n for n in qdq.graph.node}
    missing = [ly.node for ly in layers if ly.node not in q_nodes]
    if missing:
        raise ValueError(f"the QDQ model has no node {missing[0]!r} of its fp32 model")
    ref_outputs = [fp32_nodes[ly.node].output[0] for ly in layers]
    reference = channel_means(fp32, ref_outputs, x)
    inits = {i.name: i for i in qdq.graph.initializer}
    producer = {o: n for n in qdq.graph.node for o in n.output}
    shifts, skipped = [], 0
    for ly, ref_out in zip(layers, ref_outputs, strict=True):
        node = q_nodes[ly.node]  # a fused ReLU6 renames its output, so read it off the node
        out = node.output[0]
        d = channel_means(qdq, [out], x)[out] - reference[ref_out]
        if _shift_bias(inits, producer, node, d):
            shifts.append(float(np.abs(d).mean()))
        else:
            skipped += 1
    return {"method": "quantized inputs, layer by layer (ONNX)", "layers": len(shifts),
            "images": int(len(x)), "skipped": skipped,
            "mean_abs_shift": float(np.mean(shifts)) if shifts else 0.0}
