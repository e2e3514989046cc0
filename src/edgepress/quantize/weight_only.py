"""Weight-only low-bit ONNX models: each weight stored as b-bit codes, decoded at load time.

The ONNX file stores the codes in ONNX's own packed integer types (UINT8, UINT4, UINT2; INT2 ±1
for 1 bit), the scales (fp32 per channel, fp16 per group) and zero points, and rebuilds each
weight with ``Cast → Sub(zero point) → Mul(scale) → Reshape`` — constants only, which ONNX
Runtime folds into an fp32 weight when it loads the model. So the file is small and inference
runs at fp32 speed on the dequantized weights (a ``DequantizeLinear`` encoding would be the same
size, but ONNX Runtime keeps DQ nodes for its int8 fusions and re-dequantizes on every run:
3–5× slower, measured). Opset 21 (4 and 8 bits) or 25 (2 and 1 bits, the 2-bit types).
The bit-packed archive of the same codes (``model.packed.safetensors``) is what an app would
download: :func:`write_packed`.

Example:
    >>> cfg = QuantConfig(mode="weight-only")
    >>> tensors = weight_only_onnx("fp32.onnx", "w4.onnx", cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .config import QuantConfig
from .layers import (
    check_finite,
    check_not_quantized,
    ensure_node_names,
    find_layers,
    resolve_layers,
)
from .lowbit import LowBitTensor, pack, pack_bits, packed_nbytes, quantize_weight, real_codes

PACKED = "model.packed.safetensors"
_OPSET = {8: 21, 4: 21, 2: 25, 1: 25}


def _onnx_type(bits: int) -> int:
    from onnx import TensorProto

    return {8: TensorProto.UINT8, 4: TensorProto.UINT4, 2: TensorProto.UINT2,
            1: TensorProto.INT2}[bits]


def _int_tensor(name: str, values: np.ndarray, bits: int):  # noqa: ANN202
    """Pack ``bits``-bit values into a raw ONNX tensor, LSB first as ONNX packs sub-byte types.

    1-bit codes arrive as INT2 bit patterns (0b01 = +1, 0b11 = −1).
    """
    from onnx import helper

    stored = 2 if bits == 1 else bits
    raw = pack_bits(values, stored) if stored < 8 else values.astype(np.uint8)
    return helper.make_tensor(name, _onnx_type(bits), list(values.shape), raw.tobytes(), raw=True)


def _codes(t: LowBitTensor) -> np.ndarray:
    """The codes to store, ``[C, K]`` per channel or ``[C, groups, g]`` per group."""
    codes = real_codes(t) if t.group_size is None else t.codes
    if t.bits == 1:  # stored as INT2: code 1 → +1 (0b01), code 0 → −1 (0b11, two's complement)
        return np.where(codes > 0, 1, 3).astype(np.uint8)
    return codes


def _decode_nodes(weight: str, t: LowBitTensor) -> tuple[list, list, str]:
    """Initializers and nodes that rebuild ``weight`` from its codes; the rebuilt tensor name."""
    from onnx import TensorProto, helper, numpy_helper

    codes = _codes(t)
    qshape = list(t.scale.shape) if t.group_size else [t.scale.shape[0], 1]
    name = weight.replace("/", "_")
    scale: np.ndarray = t.scale.reshape(qshape).astype(t.scale_dtype)
    inits = [_int_tensor(f"{name}_codes", codes, t.bits),
             numpy_helper.from_array(scale, f"{name}_scale")]
    nodes = [helper.make_node("Cast", [f"{name}_codes"], [f"{name}_f"], to=TensorProto.FLOAT)]
    x = f"{name}_f"
    if t.zero_point is not None:
        inits.append(_int_tensor(f"{name}_zero", t.zero_point.reshape(qshape), t.bits))
        nodes += [helper.make_node("Cast", [f"{name}_zero"], [f"{name}_zf"], to=TensorProto.FLOAT),
                  helper.make_node("Sub", [x, f"{name}_zf"], [f"{name}_c"])]
        x = f"{name}_c"
    nodes += [helper.make_node("Cast", [f"{name}_scale"], [f"{name}_sf"], to=TensorProto.FLOAT),
              helper.make_node("Mul", [x, f"{name}_sf"], [f"{name}_m"])]
    x = f"{name}_m"
    order = [t.axis, *[i for i in range(len(t.shape)) if i != t.axis]]
    moved = [t.shape[i] for i in order]
    if t.group_size is not None and codes.size != t.numel:  # drop the last group's padding
        inits += [numpy_helper.from_array(np.array([t.shape[t.axis], -1], np.int64), f"{name}_2d"),
                  numpy_helper.from_array(np.array([0], np.int64), f"{name}_s0"),
                  numpy_helper.from_array(np.array([t.numel // t.shape[t.axis]], np.int64),
                                          f"{name}_s1"),
                  numpy_helper.from_array(np.array([1], np.int64), f"{name}_ax")]
        nodes += [helper.make_node("Reshape", [x, f"{name}_2d"], [f"{name}_flat"]),
                  helper.make_node("Slice", [f"{name}_flat", f"{name}_s0", f"{name}_s1",
                                             f"{name}_ax"], [f"{name}_cut"])]
        x = f"{name}_cut"
    inits.append(numpy_helper.from_array(np.array(moved, np.int64), f"{name}_shape"))
    nodes.append(helper.make_node("Reshape", [x, f"{name}_shape"], [f"{name}_w"]))
    x = f"{name}_w"
    if order != sorted(order):
        perm = [int(i) for i in np.argsort(order)]
        nodes.append(helper.make_node("Transpose", [x], [f"{name}_wT"], perm=perm))
        x = f"{name}_wT"
    for i, node in enumerate(nodes):
        node.name = f"{name}_decode_{i}"
    return inits, nodes, x


def weight_only_onnx(src: str | os.PathLike, dst: str | os.PathLike,
                     config: QuantConfig) -> dict[str, LowBitTensor]:
    """Write ``dst``: ``src`` with every (non-skipped) layer's weight in ``config.bits`` bits.

    Returns:
        ``{layer name: LowBitTensor}`` of the quantized weights (for packing and sizes).

    Raises:
        InputError: NaN/inf weights, an already quantized model, unknown ``skip_layers``.
    """
    import onnx
    from onnx import numpy_helper, version_converter

    model = onnx.load(str(src))
    check_finite(model, str(src))
    check_not_quantized(model, str(src))
    ensure_node_names(model)
    layers = find_layers(model)
    skipped = {ly.name for ly in resolve_layers(layers, config.skip_layers)}
    bits = int(config.bits or 4)
    model = version_converter.convert_version(model, max(_OPSET[bits], _opset(model)))
    inits = {i.name: i for i in model.graph.initializer}
    new_inits: list = []
    new_nodes: list = []
    done: dict[str, tuple[str, str, LowBitTensor]] = {}
    for ly in layers:
        if ly.name in skipped or ly.weight in {d[0] for d in done.values()}:
            continue
        t = quantize_weight(numpy_helper.to_array(inits[ly.weight]), axis=ly.channel_axis,
                            bits=bits, group_size=config.group_size)
        ins, nodes, out = _decode_nodes(ly.weight, t)
        new_inits += ins
        new_nodes += nodes
        done[ly.name] = (ly.weight, out, t)
    rename = {w: out for w, out, _ in done.values()}
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    keep = [i for i in model.graph.initializer if i.name not in rename]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep + new_inits)
    old = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes + old)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return {name: t for name, (_, _, t) in done.items()}


def _opset(model) -> int:  # noqa: ANN001
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)


def write_packed(path: str | os.PathLike, tensors: dict[str, LowBitTensor]) -> int:
    """Write the bit-packed weights as safetensors; return the bytes of the packed tensors."""
    from safetensors.numpy import save_file

    flat, meta = {}, {}
    for name, t in tensors.items():
        for key, arr in pack(t).items():
            flat[f"{name}.{key}"] = np.ascontiguousarray(arr)
        meta[name] = {"bits": t.bits, "shape": list(t.shape), "axis": t.axis,
                      "group_size": t.group_size}
    # one metadata key: safetensors writes several in a random order, and the file must be
    # byte-identical when ``edgepress export`` rebuilds it
    save_file(flat, str(path), metadata={"edgepress-lowbit": json.dumps(meta, sort_keys=True)})
    return sum(a.nbytes for a in flat.values())


def packed_sizes(tensors: dict[str, LowBitTensor], fp32_path: str | os.PathLike) -> dict:
    """Packed weight bytes against the fp32 bytes of the same weights (and of all weights)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(fp32_path))
    all_w = {ly.weight: numpy_helper.to_array(next(i for i in model.graph.initializer
                                                   if i.name == ly.weight)).nbytes
             for ly in find_layers(model)}
    packed = sum(packed_nbytes(t) for t in tensors.values())
    fp32 = sum(t.numel * 4 for t in tensors.values())
    return {"packed_weight_bytes": int(packed), "fp32_weight_bytes": int(fp32),
            "packed_ratio": packed / fp32 if fp32 else None,
            "fp32_all_weight_bytes": int(sum(all_w.values())), "file": Path(PACKED).name}
