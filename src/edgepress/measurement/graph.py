"""Read any ONNX file: parameters (total and non-zero) and MACs from its conv/gemm/matmul nodes.

Works on files from any framework: fp32, QDQ int8 or operator-quantized (QLinearConv, ...),
dynamic or fixed batch. MACs are per image (batch 1).

Example:
    >>> import onnx
    >>> # LeNet-300-100 on 28×28: 784·300 + 300·100 + 100·10 = 266,200 MACs
    >>> count_macs(onnx.load("runs/mlp/model.onnx"), (1, 1, 28, 28))  # doctest: +SKIP
    266200
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import numpy as np

from ..errors import InputError

# Inputs of Q/DQ-style nodes that are scales or zero points, not parameters.
_QPARAM_INPUTS = {
    "QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2), "DynamicQuantizeLinear": (),
    "QLinearConv": (1, 2, 4, 5, 6, 7), "QLinearMatMul": (1, 2, 4, 5, 6, 7),
    "ConvInteger": (2, 3), "MatMulInteger": (2, 3), "QGemm": (1, 2, 4, 5, 7, 8),
}
_PARAM_DTYPES = {1, 2, 3, 4, 5, 6, 10, 11, 16, 21, 22, 23, 24, 25, 26}  # float…int2


def load_onnx(path: str | os.PathLike):  # noqa: ANN201
    """Load and sanity-check an ONNX file.

    Raises:
        InputError: missing, truncated or not ONNX.
    """
    import onnx

    p = os.fspath(path)
    if not os.path.isfile(p):
        raise InputError(f"model file {p!r} does not exist")
    try:
        model = onnx.load(p)
        onnx.checker.check_model(model)
    except Exception as e:  # protobuf DecodeError, ValidationError, ...: all mean "not ONNX"
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise InputError(f"{p} is not a valid ONNX model: {first}") from None
    if len(model.graph.node) == 0:
        raise InputError(f"{p} is not a valid ONNX model: its graph is empty")
    return model


def count_params(model) -> tuple[int, int]:  # noqa: ANN001
    """``(total, non-zero)`` elements of the weight initializers.

    Scales and zero points of quantized nodes, and integer shape constants, are not parameters.
    """
    from onnx import numpy_helper

    qparams = {node.input[i] for node in model.graph.node
               for i in _QPARAM_INPUTS.get(node.op_type, ()) if i < len(node.input)}
    total = nonzero = 0
    for init in model.graph.initializer:
        if init.name in qparams or init.data_type not in _PARAM_DTYPES:
            continue
        arr = numpy_helper.to_array(init)
        if arr.size <= 1 and init.data_type in (6, 7):  # scalar int constants (axes, shapes)
            continue
        total += int(arr.size)
        nonzero += int(np.count_nonzero(arr))
    return total, nonzero


def count_macs(model, input_shape: tuple[int, ...]) -> int:  # noqa: ANN001
    """Multiply-accumulates of one forward pass at ``input_shape`` (batch included).

    Counts Conv / ConvTranspose / ConvInteger / QLinearConv, Gemm / QGemm, MatMul /
    MatMulInteger / QLinearMatMul: the nodes that do the arithmetic. Element-wise ops are ignored.
    """
    shapes = _infer_shapes(model, input_shape)
    total = 0
    for node in model.graph.node:
        fn = _MAC_RULES.get(node.op_type)
        if fn is not None:
            total += fn(node, shapes)
    return int(total)


def _infer_shapes(model, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:  # noqa: ANN001
    import onnx
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    graph_in = [i for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}]
    dims = graph_in[0].type.tensor_type.shape.dim
    del dims[:]
    for d in input_shape:
        dims.add().dim_value = int(d)
    del m.graph.value_info[:]
    m = onnx.shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in [*m.graph.input, *m.graph.value_info, *m.graph.output]:
        d = vi.type.tensor_type.shape.dim
        if all(x.HasField("dim_value") for x in d):
            shapes[vi.name] = tuple(x.dim_value for x in d)
    for init in m.graph.initializer:
        shapes[init.name] = tuple(numpy_helper.to_array(init).shape)
    return shapes


def _attr(node, name: str, default):  # noqa: ANN001, ANN202
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _conv(w_index: int) -> Callable:
    def rule(node, shapes) -> int:  # noqa: ANN001
        out, w = shapes.get(node.output[0]), shapes.get(node.input[w_index])
        if out is None or w is None:
            return 0
        return math.prod(out) * math.prod(w[1:])  # every output element: Cin/groups·kh·kw MACs
    return rule


def _conv_transpose(node, shapes) -> int:  # noqa: ANN001
    x, w = shapes.get(node.input[0]), shapes.get(node.input[1])
    if x is None or w is None:
        return 0
    return math.prod(x) * math.prod(w[1:])  # every input element scatters Cout/groups·kh·kw MACs


def _matmul(a_index: int) -> Callable:
    def rule(node, shapes) -> int:  # noqa: ANN001
        out, a = shapes.get(node.output[0]), shapes.get(node.input[a_index])
        if out is None or a is None:
            return 0
        return math.prod(out) * a[-1]
    return rule


def _gemm(node, shapes) -> int:  # noqa: ANN001
    out, a = shapes.get(node.output[0]), shapes.get(node.input[0])
    if out is None or a is None:
        return 0
    k = a[0] if _attr(node, "transA", 0) else a[-1]
    return math.prod(out) * k


_MAC_RULES: dict[str, Callable] = {
    "Conv": _conv(1), "ConvInteger": _conv(1), "QLinearConv": _conv(3),
    "ConvTranspose": _conv_transpose,
    "Gemm": _gemm, "QGemm": _gemm,
    "MatMul": _matmul(0), "MatMulInteger": _matmul(0), "QLinearMatMul": _matmul(0),
}
