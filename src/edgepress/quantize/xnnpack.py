"""The XNNPACK quantization backend: torchao's pt2e flow with ExecuTorch's ``XNNPACKQuantizer``.

An int8 run is deployed on ExecuTorch as int8, never fp32: its recorded quantization (static,
dynamic, or 8-bit QAT) is re-applied to the PyTorch model here, calibrated on the same training
images as the ONNX Runtime path (same draw from the recorded seed, same index hash, same batches),
and handed to the exporter (:func:`edgepress.export.pte.export_pte`) through its
``GraphQuantizer`` interface. ``reduce_range`` (an x86 ONNX Runtime workaround) does not apply.

Example:
    >>> XnnpackQuant(mode="dynamic").record()["activations"]
    'int8 per call (dynamic)'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..checkpoint import Run
from ..errors import InputError
from ..export.deploy import register_exporter
from ..export.pte import export_run_pte
from .config import QuantConfig
from .ptq import CALIB_BATCH, calibration_images


@dataclass
class XnnpackQuant:
    """The XNNPACK quantization to apply (a ``GraphQuantizer`` for the pte exporter).

    Attributes:
        mode: ``static`` (int8 weights and activations, calibrated) or ``dynamic`` (int8
            weights, activations quantized per call).
        per_channel: one weight scale per output channel (else per tensor).
        observer: activation range: ``minmax`` (exactly the ONNX path's) or ``histogram``
            (XNNPACK's default, standing in for percentile / entropy calibration).
        calib_x: calibration images (static), fed in batches of ``calib_batch``.
        skip_modules: module paths kept in float.
        recorded: what the run recorded, copied into the description.
    """

    mode: str = "static"
    per_channel: bool = True
    observer: str = "minmax"
    calib_x: np.ndarray | None = None
    calib_batch: int = 32
    skip_modules: list[str] = field(default_factory=list)
    recorded: dict = field(default_factory=dict)

    def quantize(self, model: nn.Module, example: tuple[torch.Tensor]) -> nn.Module:
        """``model`` quantized by pt2e (export, prepare, calibrate, convert)."""
        return quantize_pt2e(model, self, example)

    def record(self) -> dict:
        """What was applied, for ``model.pte.json``."""
        return _record(self)


def _record(q: XnnpackQuant) -> dict:
    return {"quantizer": "XNNPACKQuantizer (torchao pt2e)", "mode": q.mode,
            "weights": "int8 symmetric ±127, " + ("per channel" if q.per_channel else
                                                   "per tensor"),
            "activations": ("int8 asymmetric per tensor, calibrated" if q.mode == "static" else
                            "int8 per call (dynamic)"),
            "activation_observer": q.observer if q.mode == "static" else None,
            "calibration_images": None if q.calib_x is None else int(len(q.calib_x)),
            "skipped_modules": list(q.skip_modules), **q.recorded}


def quantize_pt2e(model: nn.Module, quant: XnnpackQuant,
                  example: tuple[torch.Tensor]) -> nn.Module:
    """pt2e quantization with ``XNNPACKQuantizer``: export, prepare, calibrate, convert.

    Calibration runs on a dynamic-batch export so the images go in the ONNX path's batches.
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    dynamic = quant.mode == "static"
    shapes = ({0: torch.export.Dim("batch", min=1, max=1 << 16)},) if dynamic else None
    sample = example
    if dynamic:
        assert quant.calib_x is not None
        sample = (torch.from_numpy(np.ascontiguousarray(quant.calib_x[:quant.calib_batch])),)
    gm = torch.export.export(model, sample, dynamic_shapes=shapes).module()
    prepared = prepare_pt2e(gm, _quantizer(quant))
    if quant.mode == "static":
        assert quant.calib_x is not None
        x = torch.from_numpy(np.ascontiguousarray(quant.calib_x, dtype=np.float32))
        for i in range(0, len(x), quant.calib_batch):
            prepared(x[i:i + quant.calib_batch])
    else:
        prepared(*example)
    return convert_pt2e(prepared)


def _quantizer(quant: XnnpackQuant) -> Any:
    import dataclasses

    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e import MinMaxObserver
    from torchao.quantization.pt2e.quantizer import ComposableQuantizer, get_module_name_filter

    cfg = get_symmetric_quantization_config(is_per_channel=quant.per_channel,
                                            is_dynamic=quant.mode == "dynamic")
    if quant.mode == "static" and quant.observer == "minmax":
        # the ONNX path's MinMax calibration: min/max over every calibration batch
        act = dataclasses.replace(cfg.input_activation,
                                  observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
        cfg = dataclasses.replace(cfg, input_activation=act, output_activation=act)
    keep: Any = None
    if quant.skip_modules:
        skips = [get_module_name_filter(f"model.{m}") for m in quant.skip_modules]
        keep = lambda n: not any(f(n) for f in skips)  # noqa: E731
    q = XNNPACKQuantizer().set_global(cfg)
    if keep is not None:
        q.set_filter_function(keep)
    if quant.mode != "static":
        return q
    return ComposableQuantizer([_conv_clamp_quantizer(cfg, keep), q])


_PADS = {torch.ops.aten.constant_pad_nd.default, torch.ops.aten.pad.default}


def _annotate_pads_before_float(gm: Any, cfg: Any, keep: Any) -> None:
    """Quantize the output of a padding that only float (skipped) layers read.

    A float conv behind its own "same" padding (Lite0's strided depthwise convs) otherwise
    reads ``dequantize → pad``, which XNNPACK lowers as an int8 pad feeding a float conv and
    refuses ("Weight and Input should both be quantized"); ``pad → quantize → dequantize →
    conv`` is the float conv reading dequantized values, which it lowers.
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils import (
        get_input_act_qspec,
        get_output_act_qspec,
    )
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    for node in gm.graph.nodes:
        if (node.op != "call_function" or node.target not in _PADS or not node.users
                or Q_ANNOTATION_KEY in node.meta or any(keep(u) for u in node.users)):
            continue
        node.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(
            input_qspec_map={node.args[0]: get_input_act_qspec(cfg)},
            output_qspec=get_output_act_qspec(cfg), _annotated=True)


def _conv_clamp_quantizer(cfg: Any, keep: Any) -> Any:
    """A quantizer for conv → ReLU6 (``hardtanh``), which ``XNNPACKQuantizer`` does not fuse.

    Left to it, the convolution's raw output is quantized over its whole range (depthwise outputs
    reach tens before the clip), dequantized, clipped to [0, 6] and quantized again: the first
    rounding spends the 256 levels on values the clip throws away (Lite0 fell to 64% top-1
    agreement). Annotated as one pattern, only the clipped output is quantized (as ONNX Runtime
    does when it drops the Clip), and XNNPACK fuses the clip into the int8 convolution. The
    annotation is that of ExecuTorch's ``_do_annotate_conv_relu``, which cannot be reused: it
    matches ``relu`` only.
    """
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer_utils import (
        get_bias_qspec,
        get_input_act_qspec,
        get_output_act_qspec,
        get_weight_qspec,
    )
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, Quantizer
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY
    from torchao.quantization.pt2e.utils import _is_conv_node

    clamps = {torch.ops.aten.hardtanh.default, torch.ops.aten.hardtanh_.default}

    class ConvClamp(Quantizer):
        def annotate(self, gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
            if keep is not None:
                _annotate_pads_before_float(gm, cfg, keep)
            for node in gm.graph.nodes:
                if node.op != "call_function" or node.target not in clamps:
                    continue
                conv = node.args[0]
                if not (isinstance(conv, torch.fx.Node) and _is_conv_node(conv)
                        and len(conv.users) == 1):
                    continue
                inputs = {conv.args[0]: get_input_act_qspec(cfg),
                          conv.args[1]: get_weight_qspec(cfg)}
                if len(conv.args) > 2 and isinstance(conv.args[2], torch.fx.Node):
                    inputs[conv.args[2]] = get_bias_qspec(cfg)
                part = [node, conv, *list(inputs)[1:]]  # not the input: another pattern's output
                if keep is not None and not all(keep(n) for n in part):
                    continue
                if any(Q_ANNOTATION_KEY in n.meta for n in part):
                    continue
                conv.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(
                    input_qspec_map=inputs, _annotated=True)
                node.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(
                    output_qspec=get_output_act_qspec(cfg), _annotated=True)
                for n in part[2:]:
                    n.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(_annotated=True)
            return gm

        def validate(self, model: torch.fx.GraphModule) -> None:
            pass

    return ConvClamp()


def xnnpack_quant(run: Run, model: nn.Module, data: Any) -> XnnpackQuant:
    """The run's recorded quantization, as XNNPACK can apply it.

    static and 8-bit QAT runs: static int8 calibrated on the images the ONNX path used (drawn
    with the recorded seed; their index hash must match the recorded one; the last partial
    batch is dropped, as ONNX Runtime's calibration reader drops it). dynamic runs: dynamic int8.
    ``reduce_range`` (an x86 ONNX Runtime workaround) does not apply to XNNPACK's kernels.

    Raises:
        InputError: a mode XNNPACK cannot run (weight-only low-bit), a skip layer that is not a
            module of the model, or calibration images that are not the recorded ones.
    """
    dep = run.meta.get("deployment") or {}
    config = QuantConfig.from_dict(dep.get("quantization") or {})
    modules = {name for name, _ in model.named_modules() if name}
    for name in config.skip_layers:
        if name not in modules:
            raise InputError(f"cannot export to pte: skip layer {name!r} is not a module of "
                             f"{run.model_name}")
    record = {"recorded_mode": config.mode, "recorded_calib_method": config.calib_method,
              "recorded_reduce_range": config.reduce_range, "reduce_range_applied": False}
    skips = list(config.skip_layers)
    if config.mode == "dynamic":
        return XnnpackQuant(mode="dynamic", per_channel=config.per_channel, observer="none",
                        skip_modules=skips, recorded=record)
    if not (config.mode == "static" or (config.mode == "qat" and config.bits == 8)):
        raise InputError(f"cannot export to pte: {config.mode} {config.precision} has no XNNPACK "
                         "form (only int8 static, dynamic or QAT runs do)")
    x, indices_hash = calibration_images(data, config.calibration or 0, config.seed, CALIB_BATCH)
    recorded = dep.get("calibration_indices_hash")
    if recorded and indices_hash != recorded:
        raise InputError(f"cannot export to pte: the calibration images drawn now (hash "
                         f"{indices_hash}) are not the recorded ones ({recorded}); did the data "
                         "change?")
    x = x[: len(x) // CALIB_BATCH * CALIB_BATCH]
    record["calibration_indices_hash"] = indices_hash
    observer = "minmax" if config.calib_method in (None, "minmax") else "histogram"
    return XnnpackQuant(mode="static", per_channel=config.per_channel, observer=observer, calib_x=x,
                    calib_batch=CALIB_BATCH, skip_modules=skips, recorded=record)


def _prepared(run: Run, model: nn.Module, data: Any) -> nn.Module:
    """The model XNNPACK's quantizer sees: equalised / bias-corrected as the run records
    (bias correction rounds as XNNPACK does: full-range int8 weights).
    """
    from .equalize import prepare_for_quantization

    dep = run.meta.get("deployment") or {}
    config = QuantConfig.from_dict(dep.get("quantization") or {})
    return prepare_for_quantization(model, config, data, reduce_range=False)[0]


def export_run_pte_int8(run: Run) -> Path:
    """Write an int8 run's ``model.pte``: its recorded quantization re-applied for XNNPACK."""
    return export_run_pte(run, xnnpack_quant, prepare=_prepared)


register_exporter("pte", "int8")(export_run_pte_int8)
