"""Evaluate what an ONNX graph computes from its initializers alone (weights and their decode
chains, folded shape constants), with a small numpy interpreter of the ops those chains use.

Used by :mod:`.params` (a weight's logical values behind ``Cast → Sub → Mul → Reshape`` or
``DequantizeLinear``) and :mod:`.macs` (computed ``Reshape`` targets that shape inference cannot
follow). Anything it cannot evaluate raises, and callers fall back or flag.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import reduce
from typing import Any

import numpy as np

# MAC operator → the inputs that may hold a weight or a bias: those of them that are constant do
PARAM_SLOTS: dict[str, tuple[int, ...]] = {
    "Conv": (0, 1, 2), "ConvTranspose": (0, 1, 2), "FusedConv": (0, 1, 2), "NhwcConv": (0, 1, 2),
    "NhwcFusedConv": (0, 1, 2), "DeformConv": (1, 3), "ConvInteger": (0, 1),
    "QLinearConv": (0, 3, 8),
    "Gemm": (0, 1, 2), "FusedGemm": (0, 1, 2), "QGemm": (0, 3, 6),
    "MatMul": (0, 1), "FusedMatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3),
    "DynamicQuantizeMatMul": (1, 4), "MatMulIntegerToFloat": (0, 1, 6), "MatMulNBits": (1, 5),
    "LSTM": (1, 2, 3, 7), "GRU": (1, 2, 3), "RNN": (1, 2, 3),
    "Attention": (1, 2), "QAttention": (1, 2),
}
# quantized MAC operator → {weight input: the input holding its zero point}
ZERO_POINTS: dict[str, dict[int, int]] = {
    "QLinearConv": {0: 2, 3: 5}, "QLinearMatMul": {0: 2, 3: 5}, "QGemm": {0: 2, 3: 5},
    "ConvInteger": {0: 2, 1: 3}, "MatMulInteger": {0: 2, 1: 3}, "DynamicQuantizeMatMul": {1: 3},
    "MatMulIntegerToFloat": {0: 4, 1: 5}, "QAttention": {1: 7},
}
CONV_ZERO_POINTS = {"QLinearConv", "ConvInteger"}  # a 1-D zero point runs along output channels
# between a MAC node and the Add of its bias: rescaling and reshaping only
_RESCALE = {"Cast", "Mul", "Div", "Identity", "DequantizeLinear", "QuantizeLinear", "Reshape",
            "Flatten", "Squeeze", "Unsqueeze", "Transpose"}
# MAC-bearing operators without a MAC rule here: flagged, never counted 0 in silence
UNCOUNTED = {"Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention",
              "PackedMultiHeadAttention", "QAttention", "QOrderedAttention", "QOrderedMatMul",
              "DecoderAttention", "DecoderMaskedMultiHeadAttention", "DecoderMaskedSelfAttention",
              "LongformerAttention", "SparseAttention", "MoE", "QMoE", "DynamicQuantizeLSTM",
              "ConvTransposeWithDynamicPads"}
_RANDOM = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
           "Bernoulli"}
_INT_TYPES = {2, 3, 4, 5, 6, 7, 12, 13, 21, 22, 25, 26}  # uint8 … int64, uint4/int4, uint2/int2
FOLD_ROUNDS = 4  # shape inference ↔ shape folding rounds
FOLD_MAX = 64  # a folded shape-like value has at most this many elements



class _Unevaluable(Exception):
    """A value the numpy evaluator cannot compute (graph-input dependent, or an unknown op)."""


EVAL_ERRORS = (_Unevaluable, ValueError, IndexError, TypeError, KeyError)


class Consts:
    """The values a graph computes from its initializers alone: weights and their decode chains.

    With ``shapes``, ``Shape`` and ``Size`` of a tensor of known shape are constants too: that is
    how computed ``Reshape`` targets get folded.
    """

    def __init__(self, graph, shapes: dict[str, tuple[int, ...]] | None = None) -> None:  # noqa: ANN001
        self.inits = {t.name: t for t in graph.initializer}
        self.producer = {o: node for node in graph.node for o in node.output if o}
        self.shapes = shapes
        self.constant = set(self.inits)
        for node in graph.node:  # ONNX graphs are topologically sorted
            if self._is_constant(node):
                self.constant.update(o for o in node.output if o)

    def _is_constant(self, node) -> bool:  # noqa: ANN001
        if node.op_type in _RANDOM or any(a.type in (5, 10) for a in node.attribute):  # graphs
            return False
        if self.shapes is not None and node.op_type in ("Shape", "Size"):
            return node.input[0] in self.shapes or node.input[0] in self.constant
        if not node.input:
            return node.op_type == "Constant"
        return all(not i or i in self.constant for i in node.input)

    def value(self, name: str, memo: dict | None = None) -> np.ndarray:
        """The value of constant ``name`` (ints as int64, floats as float32/64).

        Raises:
            _Unevaluable: not constant, or computed by an operator the evaluator lacks.
        """
        memo = {} if memo is None else memo
        if name in memo:
            return memo[name]
        if name in self.inits:
            from onnx import numpy_helper

            t = self.inits[name]
            out = _as(numpy_helper.to_array(t), t.data_type)
        else:
            node = self.producer.get(name)
            fn = _EVAL.get(node.op_type) if node is not None and name in self.constant else None
            if node is None or fn is None or node.output[0] != name:
                raise _Unevaluable(name)
            if node.op_type in ("Shape", "Size"):
                out = _shape_op(node, self._shape_of(node.input[0], memo))
            else:
                out = np.asarray(fn(node, *[self.value(i, memo) if i else None
                                            for i in node.input]))
        memo[name] = out
        return out

    def _shape_of(self, name: str, memo: dict) -> tuple[int, ...]:
        if self.shapes is not None and name in self.shapes:
            return self.shapes[name]
        return self.value(name, memo).shape

    def after_mac(self, name: str, depth: int = 6) -> bool:
        """Whether ``name`` is a MAC node's output, maybe rescaled (dynamic int8: Cast, Mul)."""
        node = self.producer.get(name)
        if node is None or depth == 0:
            return False
        if node.op_type in PARAM_SLOTS or node.op_type == "Einsum":
            return True
        return node.op_type in _RESCALE and any(
            self.after_mac(i, depth - 1) for i in node.input if i and i not in self.constant)

    def sources(self, name: str) -> list[str]:
        """The initializers and Constant outputs that flow into ``name`` as data (not as
        scales, zero points, shapes or indices): a best guess for an unevaluable chain.
        """
        node = self.producer.get(name)
        if name in self.inits or node is None or node.op_type == "Constant":
            return [name] if name in self.constant else []
        ins = [i for i in node.input if i in self.constant]
        if node.op_type in ("Add", "Sub", "Mul", "Div") and ins:  # the weight, not its scale
            ins = [max(ins, key=lambda i: sum(self._size(s) for s in self.sources(i)))]
        elif node.op_type != "Concat":
            ins = ins[:1]
        return [s for i in ins for s in self.sources(i)]

    def _size(self, name: str) -> int:
        if name in self.inits:
            return math.prod(self.inits[name].dims)
        try:
            return int(self.value(name).size)
        except EVAL_ERRORS:
            return 0

    def source_elements(self, name: str) -> tuple[int, int]:
        """``(elements, non-zero)`` of :meth:`sources`: the fallback count of a weight."""
        total = nonzero = 0
        for s in self.sources(name):
            try:
                arr = self.value(s)
            except EVAL_ERRORS:
                n = self._size(s)
                total, nonzero = total + n, nonzero + n
                continue
            total += int(arr.size)
            nonzero += int(np.count_nonzero(arr))
        return total, nonzero


def _as(x: np.ndarray, onnx_type: int) -> np.ndarray:
    """``x`` as the evaluator holds ONNX type ``onnx_type``: int64, bool or float32/float64."""
    x = np.asarray(x)
    if onnx_type == 9:
        return x.astype(bool)
    if onnx_type in _INT_TYPES:
        return (np.trunc(x) if x.dtype.kind == "f" else x).astype(np.int64)
    if onnx_type == 8 or x.dtype.kind in "OSU":
        raise _Unevaluable("string tensor")
    return x.astype(np.float64 if onnx_type == 11 else np.float32)


def _shape_op(node, shape: tuple[int, ...]) -> np.ndarray:  # noqa: ANN001
    if node.op_type == "Size":
        return np.array(math.prod(shape), np.int64)
    start, end = attr(node, "start", 0), attr(node, "end", None)
    return np.array(shape[start:end], np.int64)


def _constant(node) -> np.ndarray:  # noqa: ANN001
    from onnx import numpy_helper

    for a in node.attribute:
        if a.name == "value":
            return _as(numpy_helper.to_array(a.t), a.t.data_type)
        if a.name in ("value_float", "value_floats"):
            return np.array(attr(node, a.name, 0.0), np.float32)
        if a.name in ("value_int", "value_ints"):
            return np.array(attr(node, a.name, 0), np.int64)
    raise _Unevaluable(f"Constant {node.name!r}")


def _div(node, a: np.ndarray, b: np.ndarray) -> np.ndarray:  # noqa: ANN001
    if a.dtype.kind == "i" and b.dtype.kind == "i":
        return np.trunc(a / b).astype(np.int64)
    return a / b


def _reshape(node, x: np.ndarray, shape: np.ndarray) -> np.ndarray:  # noqa: ANN001
    keep = not attr(node, "allowzero", 0)
    return x.reshape([x.shape[i] if keep and s == 0 else int(s) for i, s in enumerate(shape)])


def _axes(node, axes: np.ndarray | None) -> tuple[int, ...] | None:  # noqa: ANN001
    found = axes if axes is not None else attr(node, "axes", None)
    return None if found is None else tuple(int(a) for a in np.ravel(found))


def _squeeze(node, x: np.ndarray, axes: np.ndarray | None = None) -> np.ndarray:  # noqa: ANN001
    return np.squeeze(x, _axes(node, axes))


def _unsqueeze(node, x: np.ndarray, axes: np.ndarray | None = None) -> np.ndarray:  # noqa: ANN001
    return np.expand_dims(x, _axes(node, axes) or ())


def _flatten(node, x: np.ndarray) -> np.ndarray:  # noqa: ANN001
    axis = attr(node, "axis", 1) % (x.ndim + 1) if x.ndim else 0
    return x.reshape(math.prod(x.shape[:axis]), -1)


def _slice(node, x: np.ndarray, starts=None, ends=None, axes=None,  # noqa: ANN001
           steps=None) -> np.ndarray:
    if starts is None:  # opset < 10: attributes
        starts, ends = attr(node, "starts", []), attr(node, "ends", [])
        axes = attr(node, "axes", None)
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps, strict=False):
        index[int(a)] = slice(int(s), int(e), int(st))
    return x[tuple(index)]


def _dequantize(node, x: np.ndarray, scale: np.ndarray,  # noqa: ANN001
                zp: np.ndarray | None = None) -> np.ndarray:
    """``(x − zero point) · scale``, per tensor, per axis or per block (``block_size``)."""
    axis = attr(node, "axis", 1) % max(x.ndim, 1)
    block = int(attr(node, "block_size", 0))

    def along(p: np.ndarray) -> np.ndarray:
        if p.size == 1:
            return p.reshape(())
        if block:
            return np.take(np.repeat(p, block, axis=axis), np.arange(x.shape[axis]), axis=axis)
        return p.reshape([p.size if i == axis else 1 for i in range(x.ndim)]) if p.ndim == 1 else p

    return (x - (0 if zp is None else along(zp))) * along(scale)


def _constant_of_shape(node, shape: np.ndarray) -> np.ndarray:  # noqa: ANN001
    from onnx import numpy_helper

    t = next((a.t for a in node.attribute if a.name == "value"), None)
    fill = np.zeros(1, np.float32) if t is None else _as(numpy_helper.to_array(t), t.data_type)
    return np.full([int(s) for s in shape], fill.reshape(-1)[0], fill.dtype)


_EVAL: dict[str, Callable[..., Any]] = {  # (node, *inputs) → an array-like
    "Identity": lambda n, x: x, "Constant": _constant, "Shape": _shape_op, "Size": _shape_op,
    "Cast": lambda n, x: _as(x, attr(n, "to", 1)), "CastLike": lambda n, x, like: x.astype(
        like.dtype),
    "Add": lambda n, a, b: a + b, "Sub": lambda n, a, b: a - b, "Mul": lambda n, a, b: a * b,
    "Div": _div, "Neg": lambda n, x: -x, "Equal": lambda n, a, b: a == b,
    "Where": lambda n, c, a, b: np.where(c, a, b),
    "Min": lambda n, *xs: reduce(np.minimum, xs), "Max": lambda n, *xs: reduce(np.maximum, xs),
    "Reshape": _reshape, "Flatten": _flatten, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze,
    "Transpose": lambda n, x: np.transpose(x, attr(n, "perm", None)),
    "Slice": _slice, "Concat": lambda n, *xs: np.concatenate(xs, axis=attr(n, "axis", 0)),
    "Gather": lambda n, x, i: np.take(x, i, axis=attr(n, "axis", 0)),
    "Expand": lambda n, x, s: np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(s))),
    "Tile": lambda n, x, r: np.tile(x, [int(v) for v in r]),
    "Range": lambda n, a, b, d: np.arange(a, b, d), "ConstantOfShape": _constant_of_shape,
    "DequantizeLinear": _dequantize,
}


# ---------------------------------------------------------------------------------------------


def attr(node, name: str, default):  # noqa: ANN001, ANN202
    """Attribute ``name`` of ``node`` (strings decoded), or ``default`` when absent."""
    import onnx

    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def input_of(node, i: int) -> str:  # noqa: ANN001
    """Input ``i`` of ``node``, ``""`` when absent."""
    return node.input[i] if 0 <= i < len(node.input) else ""
