"""The layers of an ONNX graph that quantization acts on, and the checks made before touching it.

A *layer* is a Conv, Gemm or MatMul node whose weight is an initializer. Its name is the PyTorch
module path when the weight came from PyTorch (``features.0.0`` for ``features.0.0.weight``),
else the node's name, so ``--skip-layers`` takes the names a user knows from either side.

Example:
    >>> import onnx
    >>> [l.name for l in find_layers(onnx.load("runs/mlp/model.onnx"))]  # doctest: +SKIP
    ['features.0', 'features.2', 'classifier']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError

WEIGHTED_OPS = ("Conv", "Gemm", "MatMul")
# Operators that only appear in a model that is already quantized.
QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                 "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearMul", "ConvInteger",
                 "MatMulInteger", "MatMulNBits", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
                 "QLinearGlobalAveragePool", "QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu"}
_FLOAT_TYPES = {1, 10, 11, 16}  # float, float16, double, bfloat16
_CODE_TYPES = {2, 3, 21, 22, 25, 26}  # uint8, int8, uint4, int4, uint2, int2


@dataclass(frozen=True)
class Layer:
    """One weighted node: its display name, node name, op type, weight name and output-channel
    axis of the weight.
    """

    name: str
    node: str
    op: str
    weight: str
    channel_axis: int


def _channel_axis(node, weight_index: int) -> int | None:  # noqa: ANN001
    if node.op_type == "Conv":
        return 0 if weight_index == 1 else None
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return (0 if trans_b else 1) if weight_index == 1 else None
    return 1 if weight_index == 1 else None  # MatMul: B is [K, N], N = output channels


def find_layers(model) -> list[Layer]:  # noqa: ANN001
    """The Conv / Gemm / MatMul nodes with a constant weight, in graph order."""
    inits = {i.name: i for i in model.graph.initializer}
    found = []
    for i, node in enumerate(model.graph.node):
        if node.op_type not in WEIGHTED_OPS or len(node.input) < 2 or node.input[1] not in inits:
            continue
        axis = _channel_axis(node, 1)
        if axis is None or len(inits[node.input[1]].dims) < 2:
            continue
        weight = node.input[1]
        node_name = node.name or f"{node.op_type}_{i}"
        name = weight[: -len(".weight")] if weight.endswith(".weight") else node_name
        found.append(Layer(name, node_name, node.op_type, weight, axis))
    return found


def is_depthwise(weight_shape: Sequence[int], group: int) -> bool:
    """Whether a convolution is depthwise as ONNX Runtime's QLinearConv judges it: one input and
    one output channel per group. That kernel sums its u8·s8 products in int32, not in the
    saturating int16 pairs (``vpmaddubsw``) of the GEMM path that other convolutions take on
    x86 without VNNI, so under ``reduce_range`` its weights keep all 8 bits (:func:`weight_qmax`).

    >>> is_depthwise((32, 1, 3, 3), 32), is_depthwise((32, 1, 3, 3), 1)
    (True, False)
    >>> is_depthwise((64, 1, 3, 3), 32)  # two outputs per group: the GEMM path
    False
    """
    return group > 1 and len(weight_shape) == 4 and weight_shape[1] == 1 \
        and weight_shape[0] == group


def weight_qmax(reduce_range: bool, depthwise: bool) -> int:
    """The largest int8 weight code: 127, or 64 (7 bits) with ``reduce_range`` except for a
    depthwise convolution (:func:`is_depthwise`).

    >>> weight_qmax(True, False), weight_qmax(True, True), weight_qmax(False, False)
    (64, 127, 127)
    """
    return 64 if reduce_range and not depthwise else 127


def module_is_depthwise(module) -> bool:  # noqa: ANN001
    """Whether a PyTorch layer is a depthwise convolution (:func:`is_depthwise`).

    >>> import torch.nn as nn
    >>> module_is_depthwise(nn.Conv2d(8, 8, 3, groups=8)), module_is_depthwise(nn.Linear(4, 4))
    (True, False)
    """
    groups = getattr(module, "groups", None)
    return isinstance(groups, int) and is_depthwise(tuple(module.weight.shape), groups)


def depthwise_weights(model) -> list[str]:  # noqa: ANN001
    """The weight initializers of an ONNX model's depthwise Conv nodes (:func:`is_depthwise`)."""
    inits = {i.name: tuple(i.dims) for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if is_depthwise(inits[node.input[1]], group):
            out.append(node.input[1])
    return out


ACTIVATIONS = ("Clip", "Relu")


def with_activations(model, nodes: Sequence[str]) -> list[str]:  # noqa: ANN001
    """``nodes`` and, after each, the Clip / Relu that alone reads its output.

    A layer and its activation are quantized or kept float together: ONNX Runtime gives a
    quantized conv followed by a quantized ReLU6 the clipped range ([0, 6]); a conv quantized
    alone gets the range of its unclipped output (Lite0's stem: about ±40, so 256 levels are
    0.3 apart and the stem alone costs 61 pts of agreement instead of 5), and a float conv
    whose ReLU6 is quantized is rounded on that wide range too.

    Example:
        >>> from onnx import helper
        >>> g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        ...                        helper.make_node("Clip", ["c"], ["y"], name="relu6")],
        ...                       "g", [], [])
        >>> with_activations(helper.make_model(g), ["conv"])
        ['conv', 'relu6']
    """
    readers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    by_name = {n.name: n for n in model.graph.node}
    out = list(nodes)
    for name in nodes:
        node = by_name.get(name)
        if node is None:
            continue
        after = readers.get(node.output[0], [])
        if len(after) == 1 and after[0].op_type in ACTIVATIONS and after[0].name not in out:
            out.append(after[0].name)
    return out


def ensure_node_names(model) -> None:  # noqa: ANN001
    """Give unnamed nodes a stable name (ONNX Runtime's node lists need names)."""
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"


def resolve_layers(layers: list[Layer], names: list[str]) -> list[Layer]:
    """The layers that ``names`` select: a layer, node or weight name, or a module-path prefix
    (``features`` selects ``features.0``, ``features.3``, …).

    Raises:
        InputError: a name that matches no layer (the message lists the valid ones).
    """
    chosen: list[Layer] = []
    for name in names:
        hits = [ly for ly in layers if name in (ly.name, ly.node, ly.weight)
                or ly.name.startswith(name + ".")]
        if not hits:
            known = ", ".join(ly.name for ly in layers[:12]) + (", …" if len(layers) > 12 else "")
            raise InputError(f"--skip-layers: no layer named {name!r} (layers: {known})")
        chosen += [h for h in hits if h not in chosen]
    return chosen


def check_finite(model, where: str) -> None:  # noqa: ANN001
    """Refuse a model whose float initializers hold NaN or ±inf, naming the tensor.

    Raises:
        InputError: naming the first non-finite tensor.
    """
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.data_type in _FLOAT_TYPES:
            arr = numpy_helper.to_array(init)
            if not np.isfinite(arr).all():
                raise InputError(f"{where} has NaN/inf weights in {init.name!r}; refusing to "
                                 "quantize")


def check_not_quantized(model, where: str) -> None:  # noqa: ANN001
    """Refuse a model that already holds quantized operators.

    Raises:
        InputError: naming the first quantized operator found.
    """
    int_codes = {i.name for i in model.graph.initializer if i.data_type in _CODE_TYPES}
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS:
            raise InputError(f"{where} is already quantized (it contains {node.op_type}); "
                             "quantize its fp32 parent instead")
        if node.op_type == "Cast" and node.input[0] in int_codes:
            raise InputError(f"{where} is already quantized (its weight {node.input[0]!r} is "
                             "stored as low-bit integer codes); quantize its fp32 parent instead")
