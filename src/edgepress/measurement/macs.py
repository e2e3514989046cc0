"""MACs are counted or flagged, never silently wrong: shapes come from ONNX shape inference at the
real input shape (with data propagation, and folding the shape subgraphs it cannot follow); a MAC
node whose shapes stay unknown is named by :func:`mac_report` and counted 0.

Example:
    >>> import onnx
    >>> # LeNet-300-100 on 28×28: 784·300 + 300·100 + 100·10 = 266,200 MACs
    >>> count_macs(onnx.load("runs/mlp/model.onnx"), (1, 1, 28, 28))  # doctest: +SKIP
    266200
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from .onnx_eval import EVAL_ERRORS, FOLD_MAX, FOLD_ROUNDS, UNCOUNTED, Consts, attr, input_of


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
    if node.op_type in UNCOUNTED:
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
    for _ in range(FOLD_ROUNDS):
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

    consts = Consts(m.graph, shapes)
    folded = False
    for node in m.graph.node:
        if node.output[0] in consts.constant or all(o in shapes for o in node.output if o):
            continue
        for j, name in enumerate(node.input):
            if not name or name in consts.inits or name not in consts.constant:
                continue
            try:
                v = consts.value(name)
            except EVAL_ERRORS:
                continue
            if v.dtype.kind == "i" and v.ndim <= 1 and v.size <= FOLD_MAX:
                node.input[j] = f"{name}::folded"
                if node.input[j] not in consts.inits:
                    m.graph.initializer.append(numpy_helper.from_array(v, node.input[j]))
                    consts.inits[node.input[j]] = m.graph.initializer[-1]
                folded = True
    return folded


def _conv(w_index: int) -> Callable:
    def rule(node, shapes) -> int | None:  # noqa: ANN001
        out, w = shapes.get(node.output[0]), shapes.get(input_of(node, w_index))
        if out is None or w is None:
            return None
        return math.prod(out) * math.prod(w[1:])  # every output element: Cin/groups·kh·kw MACs
    return rule


def _conv_transpose(node, shapes) -> int | None:  # noqa: ANN001
    x, w = shapes.get(node.input[0]), shapes.get(input_of(node, 1))
    if x is None or w is None:
        return None
    return math.prod(x) * math.prod(w[1:])  # every input element scatters Cout/groups·kh·kw MACs


def _matmul(a_index: int) -> Callable:
    def rule(node, shapes) -> int | None:  # noqa: ANN001
        out, a = shapes.get(node.output[0]), shapes.get(input_of(node, a_index))
        if out is None or not a or attr(node, "transBatchA", 0) or attr(node, "transBatchB", 0):
            return None
        k = a[-2] if attr(node, "transA", 0) and len(a) > 1 else a[-1]  # FusedMatMul
        return math.prod(out) * k
    return rule


def _gemm(node, shapes) -> int | None:  # noqa: ANN001
    out, a = shapes.get(node.output[0]), shapes.get(node.input[0])
    if out is None or not a:
        return None
    k = a[0] if attr(node, "transA", 0) else a[-1]
    return math.prod(out) * k


def _matmul_nbits(node, shapes) -> int | None:  # noqa: ANN001
    a = shapes.get(node.input[0])
    if not a:
        return None
    return math.prod(a[:-1]) * int(attr(node, "N", 0)) * int(attr(node, "K", 0))


def _einsum(node, shapes) -> int | None:  # noqa: ANN001
    """The product of the sizes of the equation's distinct indices (0 for one operand)."""
    ins = [shapes.get(i) for i in node.input]
    terms = attr(node, "equation", "").replace(" ", "").split("->")[0].split(",")
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
        x, w = shapes.get(node.input[0]), shapes.get(input_of(node, 1))
        if x is None or w is None or len(x) != 3 or len(w) != 3:
            return None
        seq, batch = (x[1], x[0]) if attr(node, "layout", 0) else (x[0], x[1])
        directions, size = w[0], w[2]
        hidden = attr(node, "hidden_size", None) or w[1] // gates
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
