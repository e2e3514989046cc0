"""Build a quantized deployment from an fp32 ONNX model, and the exporter that rebuilds it.

``quantize`` and ``edgepress export`` share :func:`build_quantized`: the exporter re-exports the
run's fp32 weights and replays the recorded config with the same calibration images (drawn from
the recorded seed and checked against the recorded index hash), so the int8 model it writes is
the one ``quantize`` wrote. An int8 run is never exported back to fp32.

Builders are registered per kind (``static``, ``dynamic``, ``weight-only``); QAT runs build like
``static`` (8 bits) or ``weight-only`` (fewer bits) from their fine-tuned weights.

Example:
    >>> info = build_quantized("fp32.onnx", "int8.onnx", QuantConfig(), ds, work)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ..checkpoint import ONNX, Run, atomic_path
from ..data import Dataset, load_data
from ..errors import InputError
from ..export.deploy import register_exporter
from .config import QuantConfig
from .evaluate import OnnxEval
from .layers import depthwise_weights, find_layers
from .ptq import (
    calibration_batch,
    calibration_images,
    dynamic_int8,
    float_layers,
    preprocess,
    static_int8,
)
from .weight_only import PACKED

Builder = Callable[[Path, Path, QuantConfig, Dataset, Path], dict]
_BUILDERS: dict[str, Builder] = {}


def register_builder(kind: str) -> Callable[[Builder], Builder]:
    """Register ``fn(fp32, dst, config, data, workdir) -> info`` for a kind of deployment."""

    def deco(fn: Builder) -> Builder:
        _BUILDERS[kind] = fn
        return fn

    return deco


def builder_kind(config: QuantConfig) -> str:
    """``static``, ``dynamic`` or ``weight-only``: how a config's deployment is built."""
    if config.mode == "qat":
        return "static" if config.bits == 8 else "weight-only"
    return config.mode


def build_quantized(fp32: str | os.PathLike, dst: str | os.PathLike, config: QuantConfig,
                    data: Dataset, workdir: str | os.PathLike) -> dict:
    """Write the quantized model of ``fp32`` to ``dst``; return what was done.

    Returns:
        A dict with ``seconds`` (the quantization time, fp32 export excluded), ``int8_layers`` /
        ``float_layers`` and, per kind, ``calibration_indices_hash`` or packed sizes.
    """
    t0 = time.perf_counter()
    info = _BUILDERS[builder_kind(config)](Path(fp32), Path(dst), config, data, Path(workdir))
    info["seconds"] = time.perf_counter() - t0
    return info


@register_builder("static")
def _build_static(fp32: Path, dst: Path, config: QuantConfig, data: Dataset, work: Path) -> dict:
    pre = work / "pre.onnx"
    preprocess(fp32, pre)
    ev = OnnxEval(pre)
    batch = calibration_batch(ev.fixed_batch)
    x, indices_hash = calibration_images(data, config.calibration or 0, config.seed, batch)
    static_int8(pre, dst, config, ev.shaped(x), input_name=ev.input_name, batch=batch)
    extra = {"bias_correction": _correct_biases(pre, dst, ev.shaped(x))} \
        if config.bias_correction else {}
    return {"calibration_indices_hash": indices_hash, "calibration_images": int(len(x)),
            "depthwise_weights_8bit": _depthwise_8bit(pre, config), **extra,
            **_layer_split(pre, dst, as_run=True)}


def _correct_biases(pre: Path, dst: Path, calib_x) -> dict:  # noqa: ANN001
    """Bias correction of the QDQ model at ``dst`` against its fp32 ``pre``, on
    :data:`~.biascorrect.BC_IMAGES` of the calibration images (:mod:`.biascorrect`).
    """
    import onnx

    from .biascorrect import correct_qdq_biases, correction_images

    qdq = onnx.load(str(dst))
    report = correct_qdq_biases(onnx.load(str(pre)), qdq, correction_images(calib_x))
    onnx.save(qdq, str(dst))
    return report


def _depthwise_8bit(pre: Path, config: QuantConfig) -> int:
    """How many depthwise weights kept 8 bits under ``reduce_range`` (0 without it)."""
    import onnx

    if not config.resolved().reduce_range:
        return 0
    return len(depthwise_weights(onnx.load(str(pre))))


@register_builder("dynamic")
def _build_dynamic(fp32: Path, dst: Path, config: QuantConfig, data: Dataset, work: Path) -> dict:
    pre = work / "pre.onnx"
    preprocess(fp32, pre)
    dynamic_int8(pre, dst, config)
    return {"calibration_indices_hash": None, **_layer_split(pre, dst)}


@register_builder("weight-only")
def _build_weight_only(fp32: Path, dst: Path, config: QuantConfig, data: Dataset,
                       work: Path) -> dict:
    from .weight_only import packed_sizes, weight_only_onnx, write_packed

    tensors = weight_only_onnx(fp32, dst, config)
    packed_path = work / PACKED
    stored = write_packed(packed_path, tensors)
    sizes = packed_sizes(tensors, fp32)
    if stored != sizes["packed_weight_bytes"]:
        raise RuntimeError(f"packed file holds {stored} bytes, computed "
                           f"{sizes['packed_weight_bytes']}")
    return {"calibration_indices_hash": None, "packed": sizes, "packed_path": str(packed_path),
            **_layer_split(fp32, dst)}


def _layer_split(before: Path, after: Path, as_run: bool = False) -> dict:
    """The layers ``after`` quantized and those it keeps float (``as_run``: as ONNX Runtime
    builds the graph, which would quantize a float layer between QDQ pairs on its own).
    """
    import onnx

    from .keepfloat import runtime_float_layers

    layers = find_layers(onnx.load(str(before)))
    floats = (runtime_float_layers if as_run else float_layers)(after, layers)
    return {"quantized_layers": [ly.name for ly in layers if ly.name not in floats],
            "float_layers": floats}


def export_fp32(model, path: str | os.PathLike, input_shape: tuple[int, ...],  # noqa: ANN001
                data: Dataset) -> Path:
    """Export the PyTorch model to fp32 ONNX exactly as the fp32 deployment exporter does."""
    from ..export.onnx import export_onnx

    export_onnx(model, path, input_shape=input_shape, check_inputs=data.x_val[:64])
    return Path(path)


def export_quantized(run: Run) -> Path:
    """Rebuild a quantized run's ``model.onnx`` from its fp32 weights and recorded deployment.

    Raises:
        InputError: the recorded config is invalid, or the calibration images drawn now are not
            the recorded ones (the data changed).
    """
    dep = run.meta.get("deployment") or {}
    config = QuantConfig.from_dict(dep.get("quantization") or {})
    data = load_data(run.meta["data"])
    with tempfile.TemporaryDirectory(prefix="edgepress-export.") as w:
        work = Path(w)
        from .equalize import prepare_for_quantization

        model, _ = prepare_for_quantization(run.build_model(), config, data, onnx=True)
        fp32 = export_fp32(model, work / "fp32.onnx", run.input_shape, data)
        info = build_quantized(fp32, work / "q.onnx", config, data, work)
        recorded = dep.get("calibration_indices_hash")
        if recorded and info.get("calibration_indices_hash") != recorded:
            raise InputError(f"run {run.name!r}: the calibration images drawn now (hash "
                             f"{info.get('calibration_indices_hash')}) are not the recorded ones "
                             f"({recorded}); did the data change?")
        with atomic_path(run.file(ONNX)) as tmp:
            shutil.copyfile(work / "q.onnx", tmp)
        if info.get("packed_path"):
            with atomic_path(run.file(PACKED)) as tmp:
                shutil.copyfile(info["packed_path"], tmp)
    return run.file(ONNX)


for _precision in ("int8", "int4", "int2", "int1"):
    register_exporter("onnx", _precision)(export_quantized)
