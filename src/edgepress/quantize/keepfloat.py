"""Layers kept float in a QDQ model stay float when ONNX Runtime loads it.

Why: ONNX Runtime's level-1 graph optimisation ``WeightBiasQuantization`` (in 1.32, the version
installed here) finds every Conv / ConvTranspose / Gemm that reads a per-tensor
DequantizeLinear, has a float weight initializer and writes (through at most a Relu / Clip) into
a QuantizeLinear, and quantizes that weight itself: symmetric int8, **one scale per tensor**.
That is exactly what a layer kept float between two int8 layers looks like (``--skip-layers``,
``--accuracy-budget``). Measured on EfficientNet-Lite0 (VNNI host, 64 validation crops): with
only its first depthwise conv kept float, the QDQ graph's meaning agrees with fp32 on 86% of the
crops (logit SQNR 21.6 dB) but ONNX Runtime ran it at 9.2 dB and 53%, worse than all-int8,
because a depthwise layer's channel ranges differ by orders of magnitude.

:func:`protect_float_layers` gives each such layer its own DequantizeLinear of the same codes
with the same scale written once per input channel (``axis=1``): the same numbers, but not a
per-tensor DQ, which the rewrite requires. :func:`runtime_float_layers` reads the layers kept
float off the graph ONNX Runtime actually builds, so a record never claims a float layer the
runtime quantized.

Example:
    >>> import numpy as np, onnx
    >>> from onnx import helper, numpy_helper
    >>> w = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.float32), "w")
    >>> s = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    >>> z = numpy_helper.from_array(np.array(0, np.uint8), "z")
    >>> g = helper.make_graph(
    ...     [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
    ...      helper.make_node("DequantizeLinear", ["q", "s", "z"], ["d"]),
    ...      helper.make_node("Conv", ["d", "w"], ["c"], name="conv"),
    ...      helper.make_node("QuantizeLinear", ["c", "s", "z"], ["y"])], "g",
    ...     [helper.make_tensor_value_info("x", 1, [1, 2, 3, 3])],
    ...     [helper.make_tensor_value_info("y", 2, [1, 2, 3, 3])], [w, s, z])
    >>> m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    >>> protect_float_layers(m)
    ['conv']
    >>> [(n.op_type, n.input[0]) for n in m.graph.node][1:3]  # the shared DQ, unread, is gone
    [('DequantizeLinear', 'q'), ('Conv', 'conv_float_input')]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .layers import Layer

_REWRITTEN = ("Conv", "ConvTranspose", "Gemm")  # what WeightBiasQuantization acts on
_FLOAT = 1  # TensorProto.FLOAT


def _input_channels(node: Any, weight: np.ndarray) -> int:
    """Channels of ``node``'s input along axis 1 (what a per-axis DQ of it needs)."""
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return int(weight.shape[1] if trans_b else weight.shape[0])
    if node.op_type == "ConvTranspose":
        return int(weight.shape[0])
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    return int(weight.shape[1] * group)


def protect_float_layers(model: Any) -> list[str]:
    """Give every float Conv / ConvTranspose / Gemm that reads a per-tensor DequantizeLinear its
    own per-axis one (same codes, scale and zero point); edit ``model`` in place and return the
    names of the nodes changed (see the module docstring for why).
    """
    from onnx import helper, numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    changed: list[str] = []
    nodes = list(model.graph.node)
    for node in nodes:
        w = inits.get(node.input[1]) if node.op_type in _REWRITTEN and len(node.input) > 1 else None
        dq = producer.get(node.input[0])
        if w is None or w.data_type != _FLOAT or dq is None or dq.op_type != "DequantizeLinear":
            continue
        scale, zero = inits.get(dq.input[1]), inits.get(dq.input[2]) if len(dq.input) > 2 else None
        if scale is None or numpy_helper.to_array(scale).size != 1:
            continue  # already per-axis, or not a constant scale
        c = _input_channels(node, numpy_helper.to_array(w))
        s = numpy_helper.to_array(scale).reshape(())
        names = [f"{node.name}_float_input_scale"]
        model.graph.initializer.append(numpy_helper.from_array(np.full(c, s, s.dtype), names[0]))
        if zero is not None:
            zp = numpy_helper.to_array(zero).reshape(())
            names.append(f"{node.name}_float_input_zero_point")
            model.graph.initializer.append(numpy_helper.from_array(np.full(c, zp, zp.dtype),
                                                                   names[1]))
        out = f"{node.name}_float_input"
        own = helper.make_node("DequantizeLinear", [dq.input[0], *names], [out],
                               name=f"{node.name}_float_input_dq", axis=1)
        model.graph.node.insert(list(model.graph.node).index(node), own)
        node.input[0] = out
        changed.append(node.name)
    _drop_unread(model)
    return changed


def _drop_unread(model: Any) -> None:
    """Remove DequantizeLinear nodes whose output nothing reads any more."""
    read = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    dead = [n for n in model.graph.node
            if n.op_type == "DequantizeLinear" and not any(o in read for o in n.output)]
    for n in dead:
        model.graph.node.remove(n)


def runtime_float_layers(path: str | os.PathLike, layers: Sequence[Layer]) -> list[str]:
    """Names of ``layers`` whose float weight still feeds their Conv / Gemm / MatMul directly in
    the graph ONNX Runtime builds from ``path`` (its level-1 optimisation, where weights of
    float layers would be quantized), not only in the file.
    """
    import tempfile

    import onnxruntime as ort

    from .ptq import float_layers

    with tempfile.TemporaryDirectory() as tmp:
        optimized = Path(tmp) / "basic.onnx"
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = str(optimized)
        so.intra_op_num_threads = 1
        ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        in_file = set(float_layers(path, layers))
        kept = set(float_layers(optimized, layers))
    return [ly.name for ly in layers if ly.name in in_file and ly.name in kept]
