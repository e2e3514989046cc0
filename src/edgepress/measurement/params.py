"""Parameters are weights: the weight and bias tensors of the MAC operators (Conv, Gemm, MatMul,
LSTM, ... and their quantized and weight-only forms, plus the bias ``Add`` after a MatMul), each
traced back through its decode chain to the initializers and counted at its logical size: a 4-bit
weight counts its N×K elements however it is packed, a zero-point-valued code counts as zero.
Clip bounds, scales, zero points and shape constants are not parameters.

Example:
    >>> import onnx
    >>> count_params(onnx.load("runs/mlp-w4/model.onnx"))[0]  # doctest: +SKIP
    266610
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .onnx_eval import (
    CONV_ZERO_POINTS,
    EVAL_ERRORS,
    PARAM_SLOTS,
    ZERO_POINTS,
    Consts,
    attr,
    input_of,
)


def count_params(model) -> tuple[int, int]:  # noqa: ANN001
    """``(total, non-zero)`` logical elements of the weights and biases of the MAC operators.

    Each weight is decoded from its initializers (Cast / Sub / Mul / Reshape / Transpose /
    DequantizeLinear chains, MatMulNBits blocks) and counted once, at its logical shape; a
    quantized weight is zero where its code equals its zero point. Clip bounds, scales, zero
    points and shape constants are not parameters.
    """
    consts = Consts(model.graph)
    total = nonzero = 0
    for node, slot in _param_inputs(model.graph, consts):
        n, nz = _weight_elements(consts, node, slot)
        total += n
        nonzero += nz
    return total, nonzero


def _param_inputs(graph, consts: Consts) -> Iterator[tuple]:  # noqa: ANN001
    """``(node, input index)`` of every weight and bias, once per tensor."""
    seen: set[str] = set()
    for node in graph.node:
        if node.op_type == "Einsum":
            slots: tuple[int, ...] = tuple(range(len(node.input)))
        elif node.op_type == "Add":
            slots = _bias_slot(node, consts)
        else:
            slots = PARAM_SLOTS.get(node.op_type, ())
        for i in slots:
            name = input_of(node, i)
            if name and name in consts.constant and name not in seen:
                seen.add(name)
                yield node, i


def _bias_slot(node, consts: Consts) -> tuple[int, ...]:  # noqa: ANN001
    """The constant addend of an ``Add`` that biases a MAC node's output (MatMul + Add)."""
    if len(node.input) != 2:
        return ()
    for const, other in ((1, node.input[0]), (0, node.input[1])):
        if (node.input[const] in consts.constant and other not in consts.constant
                and consts.after_mac(other)):
            return (const,)
    return ()


def _weight_elements(consts: Consts, node, slot: int) -> tuple[int, int]:  # noqa: ANN001
    """``(elements, non-zero)`` of the weight at input ``slot`` of a MAC node."""
    if node.op_type == "MatMulNBits" and slot == 1:
        return _nbits_elements(consts, node)
    name = node.input[slot]
    try:
        w = consts.value(name)
        zp_name = input_of(node, ZERO_POINTS.get(node.op_type, {}).get(slot, -1))
        zero = (_along(consts.value(zp_name), w, node.op_type in CONV_ZERO_POINTS)
                if zp_name else 0)
        return int(w.size), int(np.count_nonzero(w != zero))
    except EVAL_ERRORS:
        return consts.source_elements(name)


def _along(zp: np.ndarray, w: np.ndarray, conv: bool) -> np.ndarray:
    """A zero point shaped to broadcast against its weight ``w`` (per tensor or per channel)."""
    if zp.size == 1:
        return zp.reshape(())
    if zp.ndim != 1 or w.ndim < 2:
        return zp
    axis = 0 if conv else (w.ndim - 1 if w.shape[-1] == zp.size else w.ndim - 2)
    return zp.reshape([zp.size if i == axis else 1 for i in range(w.ndim)])


def _nbits_elements(consts: Consts, node) -> tuple[int, int]:  # noqa: ANN001
    """``(N·K, non-zero)`` of a MatMulNBits weight: ``(code − zero point) · scale ≠ 0``.

    ``B`` is ``[N, blocks, blob]`` uint8 with the codes packed low bits first along K; the zero
    points are packed the same way (uint8) or plain (float), 2^(bits−1) when absent.
    """
    k, n = int(attr(node, "K", 0)), int(attr(node, "N", 0))
    bits, block = int(attr(node, "bits", 4)), int(attr(node, "block_size", 32))
    blocks = -(-k // block) if block > 0 else 0
    try:
        codes = _unpack(consts.value(node.input[1]).reshape(n, -1), bits)[:, :k]
        scale = consts.value(node.input[2]).reshape(n, blocks)
        zero: np.ndarray | int = 2 ** (bits - 1)
        if input_of(node, 3):
            zp = consts.value(node.input[3])
            zero = (_unpack(zp.reshape(n, -1), bits) if zp.dtype.kind in "iu"
                    else zp.reshape(n, -1))[:, :blocks]
        g_idx = input_of(node, 4)
        group = consts.value(g_idx).astype(np.int64)[:k] if g_idx else np.arange(k) // block
        if isinstance(zero, np.ndarray):
            zero = zero[:, group]
        w = (codes - zero) * scale[:, group]
        return n * k, int(np.count_nonzero(w))
    except EVAL_ERRORS:
        return n * k, n * k


def _unpack(packed: np.ndarray, bits: int) -> np.ndarray:
    """Per row of ``packed`` bytes, its ``bits``-bit codes, low bits first."""
    b = np.unpackbits(packed.astype(np.uint8)[..., None], axis=-1, bitorder="little")
    b = b.reshape(packed.shape[0], -1, bits).astype(np.int64)
    return (b << np.arange(bits)).sum(axis=-1)
