"""``edgepress quantize``: static / dynamic int8, QAT or low-bit weights, into a new run."""

from __future__ import annotations

import argparse

from .main import positive_int
from .options import add_data, add_seed, add_teacher, data_spec

HELP = "quantize a run or an fp32 ONNX file (static/dynamic int8, QAT, low-bit weights)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", metavar="RUN|FILE.onnx",
                   help="run directory, or an fp32 ONNX file from any framework")
    p.add_argument("--out", required=True, metavar="RUN2", help="run directory to write")
    p.add_argument("--mode", required=True, choices=["static", "dynamic", "qat", "weight-only"],
                   help="static: int8 weights+activations, calibrated; dynamic: int8 weights, "
                   "activations at run time; qat: fake-quant fine-tuning then int8; weight-only: "
                   "b-bit weights, float compute")
    p.add_argument("--granularity", default="channel", choices=["tensor", "channel"],
                   help="one weight scale per tensor or per output channel (default: channel)")
    p.add_argument("--calib-method", default=None, choices=["minmax", "percentile", "entropy"],
                   help="activation range calibration (static, qat; default: minmax)")
    p.add_argument("--calibration", type=int, default=None, metavar="N",
                   help="training images to calibrate on (static, qat; default: 512)")
    p.add_argument("--bits", type=int, default=None, metavar="B",
                   help="weight bits: 8 (static, dynamic, qat) or 1, 2, 4, 8 (weight-only, qat)")
    p.add_argument("--group-size", type=int, default=None, metavar="G",
                   help="weight-only: one scale per G input weights of a channel (default: "
                   "per channel)")
    p.add_argument("--skip-layers", default="", metavar="A,B",
                   help="layers kept in float (module paths such as features.0, or ONNX node "
                   "names)")
    p.add_argument("--accuracy-budget", type=float, default=None, metavar="PTS",
                   help="static: keep the most sensitive layers float until validation "
                   "accuracy is within PTS points of fp32 (unlabelled data: top-1 agreement "
                   "with fp32 at least 100 - PTS %%)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="qat: fine-tuning epochs (default: 2)")
    p.add_argument("--lr", type=float, default=None, help="qat: learning rate (default: 1e-4)")
    p.add_argument("--train-subset", type=positive_int, default=None, metavar="N",
                   help="qat: fine-tune on the first N training images only")
    add_teacher(p)
    add_data(p, "the run's data; for a file, fashion-mnist if installed, else digits")
    add_seed(p)
    p.add_argument("--sensitivity", action="store_true",
                   help="static: also write the per-layer sensitivity table and plot")
    p.add_argument("--profile", action="store_true",
                   help="print and save the per-operator time of fp32 vs quantized")
    p.add_argument("--equalize", action="store_true", default=None,
                   help="static: cross-layer equalisation first (BatchNorm folded, ReLU6 → ReLU, "
                        "conv pairs' weight ranges evened out) so per-tensor int8 fits "
                        "depthwise networks")
    p.add_argument("--bias-correction", action="store_true", default=None,
                   help="static: correct each layer's bias for the mean shift its weights' "
                        "quantization error causes on the calibration images")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..quantize import QuantConfig, quantize
    from .tables import record_table, show

    config = QuantConfig(
        mode=args.mode, granularity=args.granularity, calib_method=args.calib_method,
        calibration=args.calibration, bits=args.bits, group_size=args.group_size,
        skip_layers=[s for s in args.skip_layers.split(",") if s.strip()],
        accuracy_budget=args.accuracy_budget, epochs=args.epochs, lr=args.lr,
        train_subset=args.train_subset, teacher=args.finetune_teacher,
        alpha=args.finetune_alpha, temperature=args.finetune_temperature,
        equalize=args.equalize, bias_correction=args.bias_correction, seed=args.seed)
    record = quantize(args.target, config, out=args.out, data=data_spec(args),
                      sensitivity=args.sensitivity, profile=args.profile,
                      progress=not args.no_progress)
    show(record_table(record))
    _print_notes(args.out, record, args.profile)
    print(f"wrote {args.out}")
    return 0


def _print_notes(out: str, record: dict, profile: bool) -> None:
    import json
    from pathlib import Path

    summary = json.loads((Path(out) / "quantize.json").read_text())
    val = summary["val_accuracy"]
    scored = (f"val accuracy {val['fp32']:.4f} → {val['quantized']:.4f} "
              f"({-val['loss_pts']:+.2f} pts)" if val.get("fp32") is not None else
              f"val top-1 agreement with fp32 {val['agreement']['top1']:.4f} (no labels)")
    print(f"quantized in {record['quantize_seconds']:.2f} s; {scored}; float layers: "
          f"{', '.join(record['float_layers']) or 'none'}")
    for f in (summary.get("mixed_precision") or {}).get("float_layers", []):
        print(f"  kept float: {f['layer']}: {f['reason']}")
    if record.get("packed_weight_bytes"):
        print(f"packed weights: {record['packed_weight_bytes']:,} B = "
              f"{record['packed_ratio']:.3f}× their fp32 bytes")
    if profile:
        _print_profile(out, record, summary)


def _print_profile(out: str, record: dict, summary: dict) -> None:
    from pathlib import Path

    from ..checkpoint import load_run
    from ..measurement import measure
    from ..quantize.profile import explain, markdown

    parent = load_run(out).meta["provenance"]["parent"]
    ref_path = Path(parent) / "metrics.json" if Path(parent).is_dir() else None
    if ref_path is not None and ref_path.is_file():
        import json

        ref = json.loads(ref_path.read_text())
    else:
        ref = measure(parent, data=record["data"])
    if "kernel_time_us" not in ref:
        ref = measure(parent, data=record["data"])
    layers = (summary.get("profile") or {}).get("layers")
    print(markdown(explain(ref, record, layers=layers), "fp32", "quantized"))
