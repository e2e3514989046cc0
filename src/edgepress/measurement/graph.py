"""Read any ONNX file: parameters (total and non-zero) and MACs of its multiply-accumulate nodes.

Works on files from any framework: fp32, QDQ int8, operator-quantized (QLinearConv, QGemm, ...),
dynamic int8, weight-only low-bit (codes decoded by ``Cast → Sub → Mul → Reshape``, by
``DequantizeLinear`` or inside ``MatMulNBits``), dynamic or fixed batch. MACs are per image.

**Parameters are weights**: the weight and bias tensors of the MAC operators (Conv, Gemm, MatMul,
LSTM, ... and their quantized and weight-only forms, plus the bias ``Add`` after a MatMul), each
traced back through its decode chain to the initializers and counted at its logical size: a 4-bit
weight counts its N×K elements however it is packed, a zero-point-valued code counts as zero.
Clip bounds, scales, zero points and shape constants are not parameters.

**MACs are counted or flagged, never silently wrong**: shapes come from ONNX shape inference at
the real input shape (with data propagation, and folding the shape subgraphs it cannot follow);
a MAC node whose shapes stay unknown is named by :func:`mac_report` and counted 0.

Example:
    >>> import onnx
    >>> # LeNet-300-100 on 28×28: 784·300 + 300·100 + 100·10 = 266,200 MACs
    >>> count_macs(onnx.load("runs/mlp/model.onnx"), (1, 1, 28, 28))  # doctest: +SKIP
    266200
    >>> count_params(onnx.load("runs/mlp-w4/model.onnx"))[0]  # doctest: +SKIP
    266610
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from functools import reduce
from typing import Any

import numpy as np

from ..errors import InputError

# MAC operator → the inputs that may hold a weight or a bias: those of them that are constant do
_PARAM_SLOTS: dict[str, tuple[int, ...]] = {
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
_ZERO_POINTS: dict[str, dict[int, int]] = {
    "QLinearConv": {0: 2, 3: 5}, "QLinearMatMul": {0: 2, 3: 5}, "QGemm": {0: 2, 3: 5},
    "ConvInteger": {0: 2, 1: 3}, "MatMulInteger": {0: 2, 1: 3}, "DynamicQuantizeMatMul": {1: 3},
    "MatMulIntegerToFloat": {0: 4, 1: 5}, "QAttention": {1: 7},
}
_CONV_ZERO_POINTS = {"QLinearConv", "ConvInteger"}  # a 1-D zero point runs along output channels
# between a MAC node and the Add of its bias: rescaling and reshaping only
_RESCALE = {"Cast", "Mul", "Div", "Identity", "DequantizeLinear", "QuantizeLinear", "Reshape",
            "Flatten", "Squeeze", "Unsqueeze", "Transpose"}
# MAC-bearing operators without a MAC rule here: flagged, never counted 0 in silence
_UNCOUNTED = {"Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention",
              "PackedMultiHeadAttention", "QAttention", "QOrderedAttention", "QOrderedMatMul",
              "DecoderAttention", "DecoderMaskedMultiHeadAttention", "DecoderMaskedSelfAttention",
              "LongformerAttention", "SparseAttention", "MoE", "QMoE", "DynamicQuantizeLSTM",
              "ConvTransposeWithDynamicPads"}
_RANDOM = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
           "Bernoulli"}
_INT_TYPES = {2, 3, 4, 5, 6, 7, 12, 13, 21, 22, 25, 26}  # uint8 … int64, uint4/int4, uint2/int2
_FOLD_ROUNDS = 4  # shape inference ↔ shape folding rounds
_FOLD_MAX = 64  # a folded shape-like value has at most this many elements


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


# ---------------------------------------------------------------------------------------------
# Parameters


def count_params(model) -> tuple[int, int]:  # noqa: ANN001
    """``(total, non-zero)`` logical elements of the weights and biases of the MAC operators.

    Each weight is decoded from its initializers (Cast / Sub / Mul / Reshape / Transpose /
    DequantizeLinear chains, MatMulNBits blocks) and counted once, at its logical shape; a
    quantized weight is zero where its code equals its zero point. Clip bounds, scales, zero
    points and shape constants are not parameters.
    """
    consts = _Consts(model.graph)
    total = nonzero = 0
    for node, slot in _param_inputs(model.graph, consts):
        n, nz = _weight_elements(consts, node, slot)
        total += n
        nonzero += nz
    return total, nonzero


def _param_inputs(graph, consts: _Consts) -> Iterator[tuple]:  # noqa: ANN001
    """``(node, input index)`` of every weight and bias, once per tensor."""
    seen: set[str] = set()
    for node in graph.node:
        if node.op_type == "Einsum":
            slots: tuple[int, ...] = tuple(range(len(node.input)))
        elif node.op_type == "Add":
            slots = _bias_slot(node, consts)
        else:
            slots = _PARAM_SLOTS.get(node.op_type, ())
        for i in slots:
            name = _input(node, i)
            if name and name in consts.constant and name not in seen:
                seen.add(name)
                yield node, i


def _bias_slot(node, consts: _Consts) -> tuple[int, ...]:  # noqa: ANN001
    """The constant addend of an ``Add`` that biases a MAC node's output (MatMul + Add)."""
    if len(node.input) != 2:
        return ()
    for const, other in ((1, node.input[0]), (0, node.input[1])):
        if (node.input[const] in consts.constant and other not in consts.constant
                and consts.after_mac(other)):
            return (const,)
    return ()


def _weight_elements(consts: _Consts, node, slot: int) -> tuple[int, int]:  # noqa: ANN001
    """``(elements, non-zero)`` of the weight at input ``slot`` of a MAC node."""
    if node.op_type == "MatMulNBits" and slot == 1:
        return _nbits_elements(consts, node)
    name = node.input[slot]
    try:
        w = consts.value(name)
        zp_name = _input(node, _ZERO_POINTS.get(node.op_type, {}).get(slot, -1))
        zero = (_along(consts.value(zp_name), w, node.op_type in _CONV_ZERO_POINTS)
                if zp_name else 0)
        return int(w.size), int(np.count_nonzero(w != zero))
    except _EVAL_ERRORS:
        return consts.source_elements(name)


def _along(zp: np.ndarray, w: np.ndarray, conv: bool) -> np.ndarray:
    """A zero point shaped to broadcast against its weight ``w`` (per tensor or per channel)."""
    if zp.size == 1:
        return zp.reshape(())
    if zp.ndim != 1 or w.ndim < 2:
        return zp
    axis = 0 if conv else (w.ndim - 1 if w.shape[-1] == zp.size else w.ndim - 2)
    return zp.reshape([zp.size if i == axis else 1 for i in range(w.ndim)])


def _nbits_elements(consts: _Consts, node) -> tuple[int, int]:  # noqa: ANN001
    """``(N·K, non-zero)`` of a MatMulNBits weight: ``(code − zero point) · scale ≠ 0``.

    ``B`` is ``[N, blocks, blob]`` uint8 with the codes packed low bits first along K; the zero
    points are packed the same way (uint8) or plain (float), 2^(bits−1) when absent.
    """
    k, n = int(_attr(node, "K", 0)), int(_attr(node, "N", 0))
    bits, block = int(_attr(node, "bits", 4)), int(_attr(node, "block_size", 32))
    blocks = -(-k // block) if block > 0 else 0
    try:
        codes = _unpack(consts.value(node.input[1]).reshape(n, -1), bits)[:, :k]
        scale = consts.value(node.input[2]).reshape(n, blocks)
        zero: np.ndarray | int = 2 ** (bits - 1)
        if _input(node, 3):
            zp = consts.value(node.input[3])
            zero = (_unpack(zp.reshape(n, -1), bits) if zp.dtype.kind in "iu"
                    else zp.reshape(n, -1))[:, :blocks]
        g_idx = _input(node, 4)
        group = consts.value(g_idx).astype(np.int64)[:k] if g_idx else np.arange(k) // block
        if isinstance(zero, np.ndarray):
            zero = zero[:, group]
        w = (codes - zero) * scale[:, group]
        return n * k, int(np.count_nonzero(w))
    except _EVAL_ERRORS:
        return n * k, n * k


def _unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    """Per row of ``packed`` bytes, its ``bits``-bit codes, low bits first."""
    b = np.unpackbits(packed.astype(np.uint8)[..., None], axis=-1, bitorder="little")
    b = b.reshape(packed.shape[0], -1, bits).astype(np.int64)
    return (b << np.arange(bits)).sum(axis=-1)


class _Unevaluable(Exception):
    """A value the numpy evaluator cannot compute (graph-input dependent, or an unknown op)."""


_EVAL_ERRORS = (_Unevaluable, ValueError, IndexError, TypeError, KeyError)


class _Consts:
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
        if node.op_type in _PARAM_SLOTS or node.op_type == "Einsum":
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
        except _EVAL_ERRORS:
            return 0

    def source_elements(self, name: str) -> tuple[int, int]:
        """``(elements, non-zero)`` of :meth:`sources`: the fallback count of a weight."""
        total = nonzero = 0
        for s in self.sources(name):
            try:
                arr = self.value(s)
            except _EVAL_ERRORS:
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
    start, end = _attr(node, "start", 0), _attr(node, "end", None)
    return np.array(shape[start:end], np.int64)


def _constant(node) -> np.ndarray:  # noqa: ANN001
    from onnx import numpy_helper

    for a in node.attribute:
        if a.name == "value":
            return _as(numpy_helper.to_array(a.t), a.t.data_type)
        if a.name in ("value_float", "value_floats"):
            return np.array(_attr(node, a.name, 0.0), np.float32)
        if a.name in ("value_int", "value_ints"):
            return np.array(_attr(node, a.name, 0), np.int64)
    raise _Unevaluable(f"Constant {node.name!r}")


def _div(node, a: np.ndarray, b: np.ndarray) -> np.ndarray:  # noqa: ANN001
    if a.dtype.kind == "i" and b.dtype.kind == "i":
        return np.trunc(a / b).astype(np.int64)
    return a / b


def _reshape(node, x: np.ndarray, shape: np.ndarray) -> np.ndarray:  # noqa: ANN001
    keep = not _attr(node, "allowzero", 0)
    return x.reshape([x.shape[i] if keep and s == 0 else int(s) for i, s in enumerate(shape)])


def _axes(node, axes: np.ndarray | None) -> tuple[int, ...] | None:  # noqa: ANN001
    found = axes if axes is not None else _attr(node, "axes", None)
    return None if found is None else tuple(int(a) for a in np.ravel(found))


def _squeeze(node, x: np.ndarray, axes: np.ndarray | None = None) -> np.ndarray:  # noqa: ANN001
    return np.squeeze(x, _axes(node, axes))


def _unsqueeze(node, x: np.ndarray, axes: np.ndarray | None = None) -> np.ndarray:  # noqa: ANN001
    return np.expand_dims(x, _axes(node, axes) or ())


def _flatten(node, x: np.ndarray) -> np.ndarray:  # noqa: ANN001
    axis = _attr(node, "axis", 1) % (x.ndim + 1) if x.ndim else 0
    return x.reshape(math.prod(x.shape[:axis]), -1)


def _slice(node, x: np.ndarray, starts=None, ends=None, axes=None,  # noqa: ANN001
           steps=None) -> np.ndarray:
    if starts is None:  # opset < 10: attributes
        starts, ends = _attr(node, "starts", []), _attr(node, "ends", [])
        axes = _attr(node, "axes", None)
    axes = range(len(starts)) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps, strict=False):
        index[int(a)] = slice(int(s), int(e), int(st))
    return x[tuple(index)]


def _dequantize(node, x: np.ndarray, scale: np.ndarray,  # noqa: ANN001
                zp: np.ndarray | None = None) -> np.ndarray:
    """``(x − zero point) · scale``, per tensor, per axis or per block (``block_size``)."""
    axis = _attr(node, "axis", 1) % max(x.ndim, 1)
    block = int(_attr(node, "block_size", 0))

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
    "Cast": lambda n, x: _as(x, _attr(n, "to", 1)), "CastLike": lambda n, x, like: x.astype(
        like.dtype),
    "Add": lambda n, a, b: a + b, "Sub": lambda n, a, b: a - b, "Mul": lambda n, a, b: a * b,
    "Div": _div, "Neg": lambda n, x: -x, "Equal": lambda n, a, b: a == b,
    "Where": lambda n, c, a, b: np.where(c, a, b),
    "Min": lambda n, *xs: reduce(np.minimum, xs), "Max": lambda n, *xs: reduce(np.maximum, xs),
    "Reshape": _reshape, "Flatten": _flatten, "Squeeze": _squeeze, "Unsqueeze": _unsqueeze,
    "Transpose": lambda n, x: np.transpose(x, _attr(n, "perm", None)),
    "Slice": _slice, "Concat": lambda n, *xs: np.concatenate(xs, axis=_attr(n, "axis", 0)),
    "Gather": lambda n, x, i: np.take(x, i, axis=_attr(n, "axis", 0)),
    "Expand": lambda n, x, s: np.broadcast_to(x, np.broadcast_shapes(x.shape, tuple(s))),
    "Tile": lambda n, x, r: np.tile(x, [int(v) for v in r]),
    "Range": lambda n, a, b, d: np.arange(a, b, d), "ConstantOfShape": _constant_of_shape,
    "DequantizeLinear": _dequantize,
}


# ---------------------------------------------------------------------------------------------
# MACs


def mac_report(model, input_shape: tuple[int, ...]) -> tuple[int, list[str]]:  # noqa: ANN001
    """``(MACs, incomplete)``: multiply-accumulates of one forward pass at ``input_shape``.

    ``input_shape`` includes the batch (give 1); a shape one dimension short of the model's
    input gets batch 1 prepended. Counted: Conv / ConvTranspose / ConvInteger / QLinearConv /
    FusedConv, Gemm / QGemm / FusedGemm, MatMul and its quantized forms (MatMulInteger,
    QLinearMatMul, DynamicQuantizeMatMul, MatMulIntegerToFloat, MatMulNBits), Einsum (the product
    of its distinct index sizes), LSTM / GRU / RNN (gates · hidden · (input + hidden) per step and
    direction). Element-wise ops are not MACs.

    Returns:
        The MACs, and the names of the MAC nodes that are not in them: their shapes stayed
        unknown after shape inference, or they have no rule here (attention, control flow that
        holds MAC nodes). An empty list means the count is complete.

    Example:
        >>> from onnx import TensorProto, helper
        >>> vi = helper.make_tensor_value_info
        >>> g = helper.make_graph(
        ...     [helper.make_node("Einsum", ["a", "b"], ["c"], equation="ij,jk->ik")], "e",
        ...     [vi("a", TensorProto.FLOAT, [2, 3]), vi("b", TensorProto.FLOAT, [3, 4])],
        ...     [vi("c", TensorProto.FLOAT, None)])
        >>> mac_report(helper.make_model(g), (2, 3))  # 2·3·4
        (24, [])
    """
    shapes = _infer_shapes(model, input_shape)
    total, incomplete = 0, []
    for i, node in enumerate(model.graph.node):
        rule = _MAC_RULES.get(node.op_type)
        macs = rule(node, shapes) if rule is not None else (None if _hides_macs(node) else 0)
        if macs is None:
            incomplete.append(node.name or f"{node.op_type}#{i}")
        else:
            total += macs
    return int(total), incomplete


def count_macs(model, input_shape: tuple[int, ...]) -> int:  # noqa: ANN001
    """Multiply-accumulates of one forward pass at ``input_shape`` (batch included).

    :func:`mac_report`'s count alone: the MAC nodes it could not resolve are counted 0.
    """
    return mac_report(model, input_shape)[0]


def _hides_macs(node) -> bool:  # noqa: ANN001
    """A MAC operator without a rule here, or control flow whose subgraphs hold MAC nodes."""
    if node.op_type in _UNCOUNTED:
        return True
    for a in node.attribute:
        graphs = [a.g] if a.type == 5 else list(a.graphs)  # GRAPH, GRAPHS
        if any(n.op_type in _MAC_RULES or _hides_macs(n) for g in graphs for n in g.node):
            return True
    return False


def _infer_shapes(model, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:  # noqa: ANN001
    """The fully known shapes of the graph's tensors with its (first) input at ``input_shape``.

    ONNX shape inference with data propagation; where it leaves a node's output unknown because
    a shape-like input (a computed ``Reshape`` target, ...) was beyond it, that input is folded
    to its value and inference runs again. A tensor of unknown rank or dimension is absent.
    """
    m = _with_input_shape(model, input_shape)
    shapes = _inferred(m)
    for _ in range(_FOLD_ROUNDS):
        if not _fold_shape_inputs(m, shapes):
            break
        shapes = _inferred(m)
    return shapes


def _with_input_shape(model, input_shape: tuple[int, ...]):  # noqa: ANN001, ANN202
    """A copy of ``model`` with its first input's shape set and its stale value_info dropped."""
    import onnx

    m = onnx.ModelProto()
    m.CopyFrom(model)
    inits = {t.name for t in m.graph.initializer}
    graph_in = [i for i in m.graph.input if i.name not in inits]
    if graph_in:
        t = graph_in[0].type.tensor_type
        shape = tuple(int(d) for d in input_shape)
        if t.HasField("shape") and len(t.shape.dim) == len(shape) + 1:  # the batch left out
            shape = (1, *shape)
        del t.shape.dim[:]
        for d in shape:
            t.shape.dim.add().dim_value = d
    del m.graph.value_info[:]
    return m


def _inferred(m) -> dict[str, tuple[int, ...]]:  # noqa: ANN001
    import onnx

    try:
        m = onnx.shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
    except Exception:  # an inconsistent graph: the MAC nodes it hides get flagged
        pass
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in [*m.graph.input, *m.graph.value_info, *m.graph.output]:
        t = vi.type.tensor_type
        if not t.HasField("shape"):  # unknown rank: never a scalar
            continue
        if all(d.HasField("dim_value") and d.dim_value >= 0 for d in t.shape.dim):
            shapes[vi.name] = tuple(d.dim_value for d in t.shape.dim)
    for init in m.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes


def _fold_shape_inputs(m, shapes: dict[str, tuple[int, ...]]) -> bool:  # noqa: ANN001
    """Replace in ``m`` the computed shape-like inputs of nodes whose outputs inference left
    unknown by initializers holding their values; whether any was.
    """
    from onnx import numpy_helper

    consts = _Consts(m.graph, shapes)
    folded = False
    for node in m.graph.node:
        if node.output[0] in consts.constant or all(o in shapes for o in node.output if o):
            continue
        for j, name in enumerate(node.input):
            if not name or name in consts.inits or name not in consts.constant:
                continue
            try:
                v = consts.value(name)
            except _EVAL_ERRORS:
                continue
            if v.dtype.kind == "i" and v.ndim <= 1 and v.size <= _FOLD_MAX:
                node.input[j] = f"{name}::folded"
                if node.input[j] not in consts.inits:
                    m.graph.initializer.append(numpy_helper.from_array(v, node.input[j]))
                    consts.inits[node.input[j]] = m.graph.initializer[-1]
                folded = True
    return folded


def _attr(node, name: str, default):  # noqa: ANN001, ANN202
    import onnx

    for a in node.attribute:
        if a.name == name:
            value = onnx.helper.get_attribute_value(a)
            return value.decode() if isinstance(value, bytes) else value
    return default


def _input(node, i: int) -> str:  # noqa: ANN001
    """Input ``i`` of ``node``, ``""`` when absent."""
    return node.input[i] if 0 <= i < len(node.input) else ""


def _conv(w_index: int) -> Callable:
    def rule(node, shapes) -> int | None:  # noqa: ANN001
        out, w = shapes.get(node.output[0]), shapes.get(_input(node, w_index))
        if out is None or w is None:
            return None
        return math.prod(out) * math.prod(w[1:])  # every output element: Cin/groups·kh·kw MACs
    return rule


def _conv_transpose(node, shapes) -> int | None:  # noqa: ANN001
    x, w = shapes.get(node.input[0]), shapes.get(_input(node, 1))
    if x is None or w is None:
        return None
    return math.prod(x) * math.prod(w[1:])  # every input element scatters Cout/groups·kh·kw MACs


def _matmul(a_index: int) -> Callable:
    def rule(node, shapes) -> int | None:  # noqa: ANN001
        out, a = shapes.get(node.output[0]), shapes.get(_input(node, a_index))
        if out is None or not a or _attr(node, "transBatchA", 0) or _attr(node, "transBatchB", 0):
            return None
        k = a[-2] if _attr(node, "transA", 0) and len(a) > 1 else a[-1]  # FusedMatMul
        return math.prod(out) * k
    return rule


def _gemm(node, shapes) -> int | None:  # noqa: ANN001
    out, a = shapes.get(node.output[0]), shapes.get(node.input[0])
    if out is None or not a:
        return None
    k = a[0] if _attr(node, "transA", 0) else a[-1]
    return math.prod(out) * k


def _matmul_nbits(node, shapes) -> int | None:  # noqa: ANN001
    a = shapes.get(node.input[0])
    if not a:
        return None
    return math.prod(a[:-1]) * int(_attr(node, "N", 0)) * int(_attr(node, "K", 0))


def _einsum(node, shapes) -> int | None:  # noqa: ANN001
    """The product of the sizes of the equation's distinct indices (0 for one operand)."""
    ins = [shapes.get(i) for i in node.input]
    terms = _attr(node, "equation", "").replace(" ", "").split("->")[0].split(",")
    if any(s is None for s in ins) or len(terms) != len(ins):
        return None
    if len(ins) < 2:
        return 0  # a transpose, trace or sum: no multiplies
    sizes: dict[str, int] = {}
    ellipsis = []
    for term, shape in zip(terms, ins, strict=True):
        head, _, tail = term.partition("...")
        n = len(shape) - len(head) - len(tail) if "..." in term else 0
        ellipsis.append(shape[len(head):len(head) + n])
        dims = shape[:len(head)] + shape[len(head) + n:]
        if n < 0 or len(dims) != len(head + tail):
            return None
        for c, d in zip(head + tail, dims, strict=True):
            sizes[c] = max(sizes.get(c, 1), d)  # a size-1 index broadcasts
    return math.prod(sizes.values()) * math.prod(np.broadcast_shapes(*ellipsis))


def _recurrent(gates: int) -> Callable:
    def rule(node, shapes) -> int | None:  # noqa: ANN001
        """Per step and direction, ``gates`` matrix products of [input + hidden] → hidden."""
        x, w = shapes.get(node.input[0]), shapes.get(_input(node, 1))
        if x is None or w is None or len(x) != 3 or len(w) != 3:
            return None
        seq, batch = (x[1], x[0]) if _attr(node, "layout", 0) else (x[0], x[1])
        directions, size = w[0], w[2]
        hidden = _attr(node, "hidden_size", None) or w[1] // gates
        return seq * batch * directions * gates * hidden * (size + hidden)
    return rule


_MAC_RULES: dict[str, Callable] = {
    "Conv": _conv(1), "ConvInteger": _conv(1), "QLinearConv": _conv(3), "FusedConv": _conv(1),
    "NhwcConv": _conv(1), "NhwcFusedConv": _conv(1), "DeformConv": _conv(1),
    "ConvTranspose": _conv_transpose,
    "Gemm": _gemm, "QGemm": _gemm, "FusedGemm": _gemm,
    "MatMul": _matmul(0), "MatMulInteger": _matmul(0), "QLinearMatMul": _matmul(0),
    "FusedMatMul": _matmul(0), "DynamicQuantizeMatMul": _matmul(0),
    "MatMulIntegerToFloat": _matmul(0), "MatMulNBits": _matmul_nbits,
    "Einsum": _einsum, "LSTM": _recurrent(4), "GRU": _recurrent(3), "RNN": _recurrent(1),
}
