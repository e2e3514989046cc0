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

import os

from ..errors import InputError
from .macs import count_macs, mac_report
from .params import count_params

__all__ = ["count_macs", "count_params", "load_onnx", "mac_report"]


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
    check_input_sizes(model, p)
    return model


MAX_INPUT_ELEMENTS = 1 << 26  # 64 Mi values (256 MB of float32) per input, batch included


def check_input_sizes(model, name: str) -> None:  # noqa: ANN001
    """Refuse a graph whose declared input is absurd (1×1×100000×100000), before any buffer of
    that size is made.

    Raises:
        InputError: an input with more than :data:`MAX_INPUT_ELEMENTS` values.
    """
    inits = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in inits or not inp.type.HasField("tensor_type"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else 1
                for d in inp.type.tensor_type.shape.dim]
        n = 1
        for d in dims:
            n *= max(d, 1)
        if n > MAX_INPUT_ELEMENTS:
            raise InputError(f"{name} declares an input {inp.name!r} of shape "
                             f"{'×'.join(map(str, dims))} ({n:,} values): more than edgepress "
                             f"feeds a model ({MAX_INPUT_ELEMENTS:,})")


# ---------------------------------------------------------------------------------------------
# Parameters
