"""Post-training static int8 on ONNX: ONNX Runtime's pre-processing, calibration on training
images, and the QDQ rewrite that ONNX Runtime fuses into QLinearConv / QGemm kernels.

Choices, and why:

* **BN folded first.** The dynamo exporter already folds BatchNorm into the preceding Conv (there
  is no BatchNormalization node in an edgepress export); for a foreign file, ONNX Runtime's
  pre-processing (basic graph optimisation) fuses Conv+BN. :func:`preprocess` checks no BN is left.
* **QDQ format, uint8 activations (asymmetric), int8 weights (symmetric, ±127).** This is the
  layout ONNX Runtime's x86 CPU kernels are built for (u8·s8 → QLinearConv / QGemm); int8
  activations were measured slower on x86 (depthwise convs stayed float, QDQ pairs multiplied).
  On x86 without VNNI the fused u8·s8 kernels saturate, so there the weights use 7 bits
  (``reduce_range``, decided per machine and recorded in the config): LeNet-5's logit SQNR went
  from 16 dB to 37 dB, at the same speed. Depthwise convolutions keep 8 bits even then: their
  kernel sums in int32 and does not saturate (:func:`~edgepress.quantize.layers.is_depthwise`).
  On an AVX2 host that took EfficientNet-Lite0's per-channel top-1 agreement with fp32 from
  81.2% (every weight 7 bits) to 87.0%; the kernels' logits stayed as close to the QDQ graph's
  float meaning (27.4 dB, against 7.3 dB when every weight has 8 bits).
* **Calibration** uses ``--calibration`` training images drawn with a recorded seed, so a later
  ``edgepress export`` sees exactly the same images and rebuilds exactly the same model.

Example:
    >>> preprocess("fp32.onnx", "pre.onnx")  # doctest: +SKIP
    >>> static_int8("pre.onnx", "int8.onnx", QuantConfig(), calib_x)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data import Dataset, calibration_subset
from ..errors import InputError
from .config import QuantConfig
from .keepfloat import protect_float_layers
from .layers import (
    WEIGHTED_OPS,
    Layer,
    depthwise_weights,
    ensure_node_names,
    find_layers,
    resolve_layers,
    with_activations,
)

CALIB_BATCH = 32
PERCENTILE = 99.99
_METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}


@contextlib.contextmanager
def quiet():
    """Silence ONNX Runtime's quantization tool: it prints and logs advice on every call."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def calibration_images(ds: Dataset, n: int, seed: int, batch: int) -> tuple[np.ndarray, str]:
    """``n`` training images drawn with ``seed``, and the hash of their indices.

    Raises:
        InputError: the set is empty or smaller than one calibration batch.
    """
    if n < 1:
        raise InputError(f"the calibration set is empty (--calibration {n})")
    available = min(n, len(ds.y_train))
    if available < batch:
        raise InputError(f"the calibration set ({available} images) is smaller than one "
                         f"calibration batch ({batch} images)")
    return calibration_subset(ds, n, seed)


def calibration_batch(fixed_batch: int | None) -> int:
    """Images per calibration step: the model's fixed batch, else :data:`CALIB_BATCH`."""
    return fixed_batch or CALIB_BATCH


def _reader(x: np.ndarray, input_name: str, batch: int):  # noqa: ANN202
    from onnxruntime.quantization import CalibrationDataReader

    class ImageReader(CalibrationDataReader):
        """Feeds the calibration images batch by batch, shaped for the model's input; a
        partial last batch is dropped. ``set_range`` (in batches) lets ONNX Runtime calibrate
        one stride at a time (see :func:`extra_options`).
        """

        def __init__(self) -> None:
            self.rewind()

        def get_next(self) -> dict | None:
            if self.pos >= self.end:
                return None
            chunk = np.ascontiguousarray(x[self.pos * batch:(self.pos + 1) * batch], np.float32)
            self.pos += 1
            return {input_name: chunk}

        def __len__(self) -> int:
            return len(x) // batch

        def set_range(self, start_index: int, end_index: int) -> None:
            self.pos, self.end = start_index, min(end_index, len(self))

        def rewind(self) -> None:
            self.pos, self.end = 0, len(self)

    return ImageReader()


def preprocess(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """ONNX Runtime's quantization pre-processing: shape inference and basic graph optimisation
    (which folds any BatchNormalization into its Conv). Unnamed nodes get names.

    Raises:
        InputError: the pre-processing fails on this model.
    """
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        with quiet():
            quant_pre_process(str(src), str(dst))
    except Exception as e:  # shape inference or ORT optimisation rejected the graph
        raise InputError(f"ONNX Runtime cannot pre-process {src} for quantization: "
                         f"{str(e).strip().splitlines()[0] if str(e).strip() else e!r}") from None
    model = onnx.load(str(dst))
    ensure_node_names(model)
    left = [n.name for n in model.graph.node if n.op_type == "BatchNormalization"]
    if left:
        raise InputError(f"{src}: BatchNormalization {left[0]!r} could not be folded into a "
                         "convolution; static int8 would keep it in float")
    onnx.save(model, str(dst))


def skipped_nodes(pre: str | os.PathLike | Any, skip_layers: Sequence[str]) -> list[str]:
    """Node names of the layers ``skip_layers`` selects in the pre-processed model (its path
    or the loaded ``ModelProto``).
    """
    import onnx

    model = onnx.load(str(pre)) if isinstance(pre, str | os.PathLike) else pre
    return [ly.node for ly in resolve_layers(find_layers(model), list(skip_layers))]


def static_int8(pre_path: str | os.PathLike, out_path: str | os.PathLike, config: QuantConfig,
                calib_x: np.ndarray, *, input_name: str, batch: int,
                exclude_nodes: Sequence[str] = (), only_nodes: Sequence[str] | None = None,
                cache: str | os.PathLike | None = None) -> None:
    """Write the int8 QDQ model of a pre-processed fp32 model.

    Args:
        pre_path: the model after :func:`preprocess`.
        out_path: where the QDQ model goes.
        config: granularity, calibration method and ``skip_layers`` (kept float).
        calib_x: calibration images, already shaped for the model's input.
        input_name, batch: the model's input name and the calibration batch.
        exclude_nodes: more node names to keep float (mixed precision).
        only_nodes: quantize just these nodes (per-layer sensitivity).
        cache: a calibration-range cache file: computed once, reused by later calls.

    A layer kept float or quantized alone takes its Clip / Relu with it
    (:func:`~edgepress.quantize.layers.with_activations`), and keeps its float weight when
    ONNX Runtime loads the file (:func:`~edgepress.quantize.keepfloat.protect_float_layers`).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    graph = onnx.load(str(pre_path))
    options = {**extra_options(config), **_full_range_depthwise(graph, config)}
    exclude = with_activations(graph, [*skipped_nodes(graph, config.skip_layers),
                                       *exclude_nodes])
    only = with_activations(graph, list(only_nodes or []))
    with quiet():
        quantize_static(
            str(pre_path), str(out_path), _reader(calib_x, input_name, batch),
            quant_format=QuantFormat.QDQ, per_channel=config.per_channel,
            reduce_range=_reduce_range(config),
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude or None, nodes_to_quantize=only or None,
            calibrate_method=getattr(CalibrationMethod, _METHODS[config.calib_method or "minmax"]),
            extra_options=options,
            calibration_cache_path=str(cache) if cache is not None else None)
    quantized = onnx.load(str(out_path))
    if protect_float_layers(quantized):
        onnx.save(quantized, str(out_path))


def _reduce_range(config: QuantConfig) -> bool:
    return bool(config.resolved().reduce_range)


def _full_range_depthwise(graph: Any, config: QuantConfig) -> dict:
    """Under ``reduce_range``, ``TensorQuantOverrides`` that give the depthwise weights back
    their 8th bit (their kernel does not saturate); otherwise nothing.
    """
    if not _reduce_range(config):
        return {}
    axis = {"axis": 0} if config.per_channel else {}
    return {"TensorQuantOverrides": {w: [{"reduce_range": False, **axis}]
                                     for w in depthwise_weights(graph)}}


def extra_options(config: QuantConfig) -> dict:
    """The ``extra_options`` of ``quantize_static``: symmetric weights, asymmetric activations,
    and a two-sided percentile (ORT's percentile calibrator is symmetric by default, which would
    waste half of the uint8 range on non-negative ReLU outputs). Calibration goes one batch
    at a time (``CalibStridedMinMax``, which every calibration method honours): ONNX Runtime
    otherwise keeps every intermediate output of every calibration image until the end
    (percentile calibration of Lite0 at 224×224 on 512 images was killed for memory on a 23 GB
    host; one batch at a time it peaks at 4.9 GB, with the same ranges for MinMax).
    """
    return {"WeightSymmetric": True, "ActivationSymmetric": False,
            "CalibTensorRangeSymmetric": False, "CalibPercentile": PERCENTILE,
            "CalibStridedMinMax": 1}


def dynamic_int8(pre_path: str | os.PathLike, out_path: str | os.PathLike,
                 config: QuantConfig) -> None:
    """Dynamic int8: weights int8 (symmetric), activations quantized at run time per batch.

    Linear layers become DynamicQuantizeMatMul; convolutions become ConvInteger, which ONNX
    Runtime runs far slower than its fp32 Conv (``measure`` shows it).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    exclude = skipped_nodes(pre_path, config.skip_layers)
    with quiet():
        quantize_dynamic(str(pre_path), str(out_path), per_channel=config.per_channel,
                         reduce_range=_reduce_range(config), weight_type=QuantType.QInt8,
                         nodes_to_exclude=exclude or None)


def float_layers(path: str | os.PathLike, layers: Sequence[Layer]) -> list[str]:
    """Names of ``layers`` that a rewritten model still runs in float: their float weight still
    feeds a Conv / Gemm / MatMul directly (a quantized layer's weight goes through
    DequantizeLinear or an integer kernel instead).
    """
    import onnx

    model = onnx.load(str(path))
    floats = {i.name for i in model.graph.initializer if i.data_type in (1, 10, 11, 16)}
    direct = {n.input[1] for n in model.graph.node
              if n.op_type in WEIGHTED_OPS and len(n.input) > 1}
    return [ly.name for ly in layers if ly.weight in direct and ly.weight in floats]
