"""``quantize(target, config, out=...)``: a run directory or ONNX file in, a quantized run out.

The new run keeps the parent's fp32 weights (``model.safetensors``; QAT keeps its fine-tuned
fp32 weights), writes the quantized ``model.onnx``, records the deployment (format, precision,
the full quantization config, the calibration indices hash) and the parent, and is measured
like every run (``metrics.json``, with a few extra fields). ``quantize.json`` says what was done:
timings, which layers are int8 and which float (and why), validation accuracies, packed sizes.

Example:
    >>> from edgepress.quantize import QuantConfig, quantize
    >>> cfg = QuantConfig(mode="static")
    >>> rec = quantize("runs/cnn", cfg, out="runs/cnn-int8")  # doctest: +SKIP
    >>> rec["kernels"].get("QLinearConv", 0) > 0  # doctest: +SKIP
    True
"""

from __future__ import annotations

import copy
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..checkpoint import (
    ONNX,
    Run,
    load_run,
    save_model,
)
from ..data import Dataset, default_data, load_data
from ..errors import InputError
from .config import QuantConfig
from .deploy import PACKED, build_quantized, export_fp32
from .evaluate import OnnxEval
from .layers import check_finite, check_not_quantized

if TYPE_CHECKING:
    import numpy as np


@dataclass
class Source:
    """What is being quantized: a zoo run (PyTorch weights) or an fp32 ONNX file."""

    parent: str
    run: Run | None = None
    onnx: Path | None = None
    data: str | None = None
    model: Any = None  # the PyTorch model, for a zoo run
    teacher: Any = None  # QAT distils from it (``teacher: parent | RUN``)


@dataclass
class Outcome:
    """What :func:`quantize` hands to the run writer."""

    model: Any
    onnx: Path
    info: dict
    report: dict = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def open_source(target: str | os.PathLike) -> Source:
    """Open and check what is to be quantized.

    Raises:
        InputError: missing, not fp32 (already quantized), NaN/inf weights, not ONNX.
    """
    from ..measurement.graph import load_onnx

    p = Path(target)
    if p.is_dir():
        run = load_run(p)
        precision = (run.meta.get("deployment") or {}).get("precision", "fp32")
        if precision != "fp32":
            raise InputError(f"run {run.name!r} is already quantized (deployment precision "
                             f"{precision}); quantize its fp32 parent instead")
        if run.has_weights:
            return Source(str(p), run, None, run.meta.get("data"), run.build_model())
        if not run.file(ONNX).is_file():
            raise InputError(f"run {run.name!r} has neither PyTorch weights nor {ONNX}")
        p_onnx, data = run.file(ONNX), run.meta.get("data")
    elif not p.exists():
        raise InputError(f"{str(p)!r} does not exist (expected a run directory or an .onnx file)")
    elif p.suffix != ".onnx":
        raise InputError(f"{str(p)!r} is not an .onnx file or a run directory")
    else:
        run, p_onnx, data = None, p, None
    model = load_onnx(p_onnx)
    check_not_quantized(model, str(p_onnx))
    check_finite(model, str(p_onnx))
    return Source(str(p), run, p_onnx, data)


@dataclass
class QuantizedModel:
    """A deployable quantized model made in memory: the ONNX file's bytes (QDQ or weight-only,
    as ONNX Runtime runs it), what was done, and the validation accuracies.

    Example:
        >>> q = quantize(model, QuantConfig(mode="static"), data="digits")  # doctest: +SKIP
        >>> q.save("model-int8.onnx"); q.predict(x).shape  # doctest: +SKIP
        (16, 10)
    """

    onnx: bytes
    config: QuantConfig
    info: dict
    report: dict

    def save(self, path: str | os.PathLike) -> Path:
        """Write the deployment file (atomically); return its path."""
        from ..checkpoint import atomic_path

        p = Path(path)
        with atomic_path(p) as tmp:
            tmp.write_bytes(self.onnx)
        return p

    def predict(self, x: Any) -> Any:
        """Logits for float32 N×C×H×W images in [0, 1], through ONNX Runtime."""
        with tempfile.TemporaryDirectory(prefix="edgepress-q.") as d:
            return OnnxEval(self.save(Path(d) / "model.onnx")).logits(x)


def quantize_model(model: Any, config: QuantConfig, *, data: str | Dataset,
                   progress: bool = True) -> QuantizedModel:
    """Quantize an in-memory PyTorch model (``model`` is not changed) into a deployable
    :class:`QuantizedModel`; calibration (and QAT's fine-tune) use ``data``'s train split, the
    reported accuracies its validation split.

    Raises:
        InputError: bad config or data, images the model does not take, NaN weights.
    """
    config = config.resolved()
    ds = data if isinstance(data, Dataset) else load_data(data)
    src = Source("<in-memory model>", None, None, ds.name, model)
    _check_calibration(src, config, ds)
    with tempfile.TemporaryDirectory(prefix="edgepress-quantize.") as w:
        outcome = _quantize_in(src, config, ds, Path(w), False, False, progress)
        info = {k: v for k, v in outcome.info.items() if k != "config"}
        return QuantizedModel(outcome.onnx.read_bytes(), outcome.info["config"], info,
                              outcome.report)


def quantize(target: Any, config: QuantConfig, *, out: str | os.PathLike | None = None,
             data: str | Dataset | None = None, sensitivity: bool = False,
             profile: bool = False, progress: bool = True) -> Any:
    """Quantize a run directory or an fp32 ONNX file into a new run directory — or, given an
    in-memory ``nn.Module`` (and no ``out``), into a :class:`QuantizedModel`
    (:func:`quantize_model`).

    Args:
        target: a run directory, or an fp32 ``.onnx`` file from any framework (static,
            dynamic and weight-only; QAT needs PyTorch weights), or an ``nn.Module``.
        config: the :class:`QuantConfig`.
        out: the run directory to write (replaced atomically; nothing is left on failure).
        data: calibration / fine-tuning / validation data (default: the parent run's data,
            for a file the default data).
        sensitivity: also write the per-layer sensitivity table and plot (static).
        profile: also record (in ``quantize.json``) the per-node time of fp32 vs quantized.
        progress: show progress bars (QAT).

    Returns:
        The new run's measurement record (as in its ``metrics.json``).

    Raises:
        InputError: bad input of any kind (see :func:`open_source`, :class:`QuantConfig`).
    """
    from torch import nn

    if isinstance(target, nn.Module):
        if out is not None:
            raise InputError("an in-memory model is quantized in memory: drop out=, or save "
                             "it as a run first")
        if data is None:
            raise InputError("quantizing an in-memory model needs data= (calibration images)")
        return quantize_model(target, config, data=data, progress=progress)
    if out is None:
        raise InputError("quantize needs out= (the run directory to write)")
    if isinstance(data, Dataset):
        data = data.name
    if sensitivity and config.mode != "static":
        raise InputError("--sensitivity applies to --mode static")
    from ..steps import run_step

    return run_step("quantize", target, config, out=out, data=data, progress=progress,
                    sensitivity=sensitivity, profile=profile).record


def open_quantize(target: Any, data: str | None, config: QuantConfig) -> tuple[Any, Any]:
    """What is to be quantized (:func:`open_source`): the PyTorch model (``None`` for an ONNX
    file) and the step context with the data, checked for calibration before any work.

    Raises:
        InputError: see :func:`open_source`; QAT of an ONNX file; an empty calibration set.
    """
    from ..steps import StepContext

    src = open_source(target.path if isinstance(target, Run) else target)
    if config.mode == "qat" and src.model is None:
        raise InputError("--mode qat fine-tunes PyTorch weights; an ONNX file has none "
                         "(use --mode static)")
    ds = load_data(data or src.data or default_data())
    _check_calibration(src, config.resolved(), ds)
    ref = str(src.run.path.resolve()) if src.run is not None else str(Path(src.parent).resolve())
    return src.model, StepContext(data=ds, parent=src.run, parent_ref=ref, onnx=src.onnx)


def apply_quantize(model: Any, config: QuantConfig, ctx: Any) -> Any:
    """The quantize step: build the quantized deployment (static / dynamic / weight-only from
    the fp32 model or ONNX file, QAT by fine-tuning a copy of ``model``) and say what the new
    run is: the deployment file, the parent's fp32 weights (QAT: the fine-tuned ones), the
    ``deployment`` record, ``quantize.json``.
    """
    from ..steps import StepResult

    config = config.resolved()
    src = Source(ctx.parent_ref or "", ctx.parent, ctx.onnx, ctx.data.name, model)
    if config.mode == "qat":
        src.teacher = ctx.teacher(config.finetune_options())
    assert ctx.work is not None, "the runner gives every step a scratch folder"
    o = _quantize_in(src, config, ctx.data, ctx.work, bool(ctx.options.get("sensitivity")),
                     bool(ctx.options.get("profile")), ctx.progress)
    final = o.info.pop("config")
    summary = _summary(final, o)
    deployment = {"format": "onnx", "precision": final.precision,
                  "quantization": final.to_dict(),
                  "calibration_indices_hash": o.info.get("calibration_indices_hash")}
    files: dict[str, Any] = dict(o.files)
    files["quantize.json"] = summary
    return StepResult(model=o.model if model is not None else None, config=final.to_dict(),
                      sections={"deployment": deployment}, deployment=o.onnx, files=files,
                      finish=lambda tmp, record: _record_extras(summary), report=summary,
                      seed=final.seed)


def _check_calibration(src: Source, config: QuantConfig, ds: Dataset) -> None:
    """Fail before any work when the calibration set is empty or smaller than one batch."""
    from .ptq import calibration_batch, calibration_images

    if config.calibration is None:
        return
    fixed = None
    if src.model is None:
        assert src.onnx is not None
        fixed = OnnxEval(src.onnx, threads=1).fixed_batch
    calibration_images(ds, config.calibration, config.seed, calibration_batch(fixed))  # raises


def _quantize_in(src: Source, config: QuantConfig, ds: Dataset, work: Path, sensitivity: bool,
                 profile: bool, progress: bool) -> Outcome:
    model = src.model
    files: dict[str, Any] = {}
    report: dict[str, Any] = {}
    deciding = config.mode == "static" and (config.accuracy_budget is not None or sensitivity)
    if deciding:
        fp32, config = _decide_layers(src, config, ds, work, sensitivity, files, report)
    elif config.mode != "qat":  # QAT exports its fine-tuned model instead
        fp32 = _fp32_onnx(src, ds, work, config, report)
    else:
        _check_shape(src, ds)
        model = copy.deepcopy(src.model)
        report["qat"] = _qat(model, config, ds, progress, src.teacher)
        if src.run is not None:  # export what model.safetensors will hold
            model = _as_saved(model, src.run, work)
        fp32 = export_fp32(model, work / "fp32-qat.onnx", tuple(ds.input_shape), ds)
    dst = work / "quantized.onnx"
    (work / "build").mkdir()
    info = build_quantized(fp32, dst, config, ds, work / "build")
    report["val_accuracy"] = _val_accuracies(src, fp32, dst, ds)
    if info.get("packed_path"):
        files[PACKED] = Path(info["packed_path"])
    if profile:
        report["profile"] = _profile(fp32, dst, ds)
    return Outcome(model, dst, {**info, "config": config}, report, files)


def _decide_layers(src: Source, config: QuantConfig, ds: Dataset, work: Path,
                   sensitivity: bool, files: dict, report: dict) -> tuple[Path, QuantConfig]:
    """Per-layer sensitivity and the budget's float layers; the fp32 file and config to build.

    Bias correction depends on which layers stay float, so the layers are judged without it;
    the final build corrects the quantized graph it makes (:mod:`.biascorrect`).
    """
    (work / "judged").mkdir()
    judged = _fp32_onnx(src, ds, work / "judged", config, report)
    chosen, extra = _mixed(judged, config, ds, work / "search", sensitivity,
                           _parent_logits(src, ds))
    files.update({p.name: p for p in extra.pop("_files", [])})
    report.update(extra)
    if config.bias_correction:
        report["layers_judged_without_bias_correction"] = True
    return judged, chosen


def _check_shape(src: Source, ds: Dataset) -> None:
    if src.run is not None and tuple(ds.input_shape) != tuple(src.run.input_shape):
        raise InputError(f"the data's images are {list(ds.input_shape)} but run "
                         f"{src.run.name!r} takes {list(src.run.input_shape)} (wrong --data?)")


def _fp32_onnx(src: Source, ds: Dataset, work: Path, config: QuantConfig,
               report: dict) -> Path:
    """The fp32 ONNX file the quantizer starts from: the parent's, or the PyTorch model
    exported — equalised and bias-corrected first when the config says so.
    """
    if src.model is None:
        assert src.onnx is not None
        if config.equalize:
            raise InputError("--equalize changes PyTorch weights; "
                             f"{src.parent} is an ONNX file without them")
        return src.onnx
    _check_shape(src, ds)
    from .equalize import prepare_for_quantization

    model, done = prepare_for_quantization(src.model, config, ds, onnx=True)
    report.update(done)
    return export_fp32(model, work / "fp32.onnx", tuple(ds.input_shape), ds)


def _as_saved(model, run: Run, work: Path):  # noqa: ANN001, ANN202
    """``model`` saved and rebuilt exactly as :meth:`Run.build_model` will rebuild the new run
    (zoo architecture, resized when channel-pruned, safetensors weights).
    """
    folder = work / "qat-weights"
    folder.mkdir()
    save_model(folder, model, run.meta)
    return Run(folder, run.meta).build_model()


def _qat(model, config: QuantConfig, ds: Dataset, progress: bool,  # noqa: ANN001
         teacher: Any = None) -> dict:
    from .ptq import CALIB_BATCH, calibration_images
    from .qat import qat_

    calib_x = None
    if config.bits == 8:
        calib_x, _ = calibration_images(ds, config.calibration or 0, config.seed, CALIB_BATCH)
    return qat_(model, ds, config, calib_x, progress=progress, teacher=teacher)


def _parent_logits(src: Source, ds: Dataset) -> np.ndarray | None:
    """The parent's own validation logits, when it is a PyTorch model.

    They are the reference the layer decisions are scored against: the fp32 ONNX file the
    quantizer starts from may carry bias-corrected biases, which are not the parent's function.
    """
    if src.model is None:
        return None
    from ..training import predict

    return predict(src.model.eval(), ds.x_val)


def _mixed(fp32: Path, config: QuantConfig, ds: Dataset, work: Path, sensitivity: bool,
           reference: np.ndarray | None) -> tuple[QuantConfig, dict]:
    from .mixed import choose_float_layers
    from .sensitivity import StaticContext, layer_sensitivity, write_sensitivity

    work.mkdir()
    ctx = StaticContext.build(fp32, config, ds, work, reference=reference)
    extra: dict = {}
    rows = None
    if config.accuracy_budget is not None:
        decision = choose_float_layers(ctx, config.accuracy_budget)
        rows = decision.pop("sensitivity")
        extra["mixed_precision"] = decision
        chosen = [f["layer"] for f in decision["float_layers"]]
        config = QuantConfig.from_dict({**config.to_dict(),
                                        "skip_layers": [*config.skip_layers, *chosen]})
    if sensitivity and rows is None:
        rows = layer_sensitivity(ctx)
    if rows is not None:
        extra["sensitivity"] = rows
        extra["_files"] = write_sensitivity(rows, work)
    return config, extra


def _val_accuracies(src: Source, fp32: Path, quantized: Path, ds: Dataset) -> dict:
    """Validation accuracy of the parent (fp32) and of the quantized model; on data without
    labels the quantized model's top-1 agreement with the fp32 one instead (accuracies null).
    """
    if not ds.labelled:
        return _val_agreement(src, fp32, quantized, ds)
    if src.model is not None:  # the parent's own weights (QAT's fp32 export is fine-tuned)
        from ..training import accuracy

        a = accuracy(src.model, ds.x_val, ds.y_val)
    else:
        a = OnnxEval(fp32).accuracy(ds.x_val, ds.y_val)
    b = OnnxEval(quantized).accuracy(ds.x_val, ds.y_val)
    return {"fp32": a, "quantized": b, "loss_pts": 100.0 * (a - b)}


def _val_agreement(src: Source, fp32: Path, quantized: Path, ds: Dataset) -> dict:
    from ..measurement.agreement import agreement

    if src.model is not None:
        from ..training import predict

        ref = predict(src.model.eval(), ds.x_val)
    else:
        ref = OnnxEval(fp32).logits(ds.x_val)
    a = agreement(ref, OnnxEval(quantized).logits(ds.x_val), "fp32")
    return {"fp32": None, "quantized": None, "agreement": a,
            "loss_pts": 100.0 * (1.0 - a["top1"]),
            "scored_by": "top-1 agreement with the fp32 model (the data has no labels)"}


def _profile(fp32: Path, quantized: Path, ds: Dataset) -> dict:
    """Per-node times of both models at batch 1 (1 thread), layers paired in order."""
    from .profile import layer_rows, node_profile, node_rows

    a = node_profile(fp32, OnnxEval(fp32).shaped(ds.x_test[:1]))
    b = node_profile(quantized, OnnxEval(quantized).shaped(ds.x_test[:1]))
    return {"layers": layer_rows(a, b), "fp32_nodes": node_rows(a, 50),
            "quantized_nodes": node_rows(b, 50)}


def _summary(config: QuantConfig, o: Outcome) -> dict:
    info = {k: v for k, v in o.info.items() if k != "packed_path"}
    return {"config": config.to_dict(), **info, **o.report}


def _record_extras(summary: dict) -> dict:
    """The fields added to the measurement record (the contract welcomes extras)."""
    extras = {"quantize_seconds": round(float(summary["seconds"]), 3),
              "quantized_layers": summary.get("quantized_layers", []),
              "float_layers": summary.get("float_layers", []),
              "val_accuracy_fp32": summary["val_accuracy"]["fp32"],
              "val_accuracy": summary["val_accuracy"]["quantized"]}
    if summary.get("packed"):
        extras.update({k: v for k, v in summary["packed"].items() if k != "file"})
    return extras

