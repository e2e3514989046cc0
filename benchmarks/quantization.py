"""Quantization figures (issue 4): static int8 on every zoo model, granularity × calibration,
dynamic int8, QAT where PTQ loses, 4-bit weights, PTQ time.

Usage (on an idle machine; latency taken while something else runs is noise):
    python benchmarks/quantization.py [--data fashion-mnist]
        [--models mlp,lenet5,cnn,mobilenet-mini] [--baselines benchmarks/out/foundation/runs]
        [--out benchmarks/out/quantization]
        [--epochs N] [--train-subset N] [--qat-epochs 2] [--qat-lr 1e-4] [--ptq-model mlp:width=4]
        [--sections static,granularity,dynamic,weight-only,qat,ptq-time]

Baselines are the default-trained runs in BASELINES/<model> (trained there when absent). Every
speed-up, size ratio and accuracy delta comes from ``edgepress.measurement.compare`` (1 thread,
batch 1, latency interleaved) of the quantized run against its fp32 parent. The granularity ×
calibration table is accuracy only (test split via ONNX Runtime, and logit SQNR against fp32).
Prints Markdown and writes OUT/quantization.md and OUT/quantization.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from _common import stamped

from edgepress import train
from edgepress.checkpoint import load_run
from edgepress.data import load_data
from edgepress.measurement import compare, measured_rows
from edgepress.quantize import QuantConfig, quantize
from edgepress.quantize.deploy import build_quantized, export_fp32
from edgepress.quantize.evaluate import OnnxEval, compare_logits
from edgepress.quantize.profile import explain, layer_rows, node_profile
from edgepress.zoo import ModelSpec, create_model

ZOO = ("mlp", "lenet5", "cnn", "mobilenet-mini")
SLOW = 1.3  # explain every speed-up below this


def slug(spec: str) -> str:
    return spec.replace(":", "_").replace("=", "")


def baseline(spec: str, args) -> Path:
    """The default-trained fp32 run of ``spec`` (trained when absent)."""
    run_dir = Path(args.baselines) / slug(spec)
    if (run_dir / "model.json").is_file():
        data = load_run(run_dir).meta["data"]
        if data != load_data(args.data).name:
            raise SystemExit(f"{run_dir} was trained on {data}, not {args.data}; "
                             "pass --baselines DIR")
        return run_dir
    print(f"training baseline {spec} on {args.data} -> {run_dir}", flush=True)
    train(spec, data=args.data, out=run_dir, epochs=args.epochs, train_subset=args.train_subset,
          progress=False)
    return run_dir


def versus(base: Path, variant: Path, args, explain_slow: bool = True) -> dict:
    """compare([fp32, variant]) plus the per-operator explanation when it is not faster."""
    ref, rec = measured_rows(compare([base, variant], data=args.data))
    saved = json.loads((Path(variant) / "metrics.json").read_text())  # quantize's extra fields
    for key in ("quantize_seconds", "packed_ratio", "float_layers"):
        rec[key] = saved.get(key)
    row = {"speedup": rec["speedup"], "speedup_ci95": rec["speedup_ci95"],
           "size_ratio_gzip": rec["size_ratio"],
           "onnx_bytes_ratio": rec["size_bytes"] / ref["size_bytes"],
           "accuracy_fp32": ref["accuracy"], "accuracy": rec["accuracy"],
           "accuracy_delta_pts": rec["accuracy_delta_pts"], "p_value": rec["p_value"],
           "median_ms_fp32": ref["latency_ms"]["median"], "median_ms": rec["latency_ms"]["median"],
           "kernels": rec["kernels"], "quantize_seconds": rec.get("quantize_seconds"),
           "packed_ratio": rec.get("packed_ratio"), "float_layers": rec.get("float_layers")}
    if explain_slow and rec["speedup"] < SLOW:
        layers = _layers(ref["file"], rec["file"], args.data)
        row["explanation"] = explain(ref, rec, layers=layers)["text"]
    return row


def _layers(fp32: str, quantized: str, data: str) -> list[dict]:
    ds = load_data(data)
    a = node_profile(fp32, OnnxEval(fp32).shaped(ds.x_test[:1]), runs=50)
    b = node_profile(quantized, OnnxEval(quantized).shaped(ds.x_test[:1]), runs=50)
    return layer_rows(a, b)


def static_all(bases: dict, args, out: Path) -> list[dict]:
    rows = []
    for spec, base in bases.items():
        q = out / "runs" / f"{slug(spec)}-int8"
        quantize(base, QuantConfig(mode="static"), out=q, data=args.data, progress=False)
        rows.append({"model": spec, **versus(base, q, args)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def granularity_table(bases: dict, args) -> list[dict]:
    """Per-tensor vs per-channel × minmax / percentile / entropy: test accuracy and SQNR."""
    ds = load_data(args.data)
    rows = []
    for spec, base in bases.items():
        with tempfile.TemporaryDirectory() as w:
            work = Path(w)
            fp32 = export_fp32(load_run(base).build_model(), work / "fp32.onnx",
                               tuple(ds.input_shape), ds)
            ref = OnnxEval(fp32).logits(ds.x_test)
            for gran in ("tensor", "channel"):
                for method in ("minmax", "percentile", "entropy"):
                    cfg = QuantConfig(mode="static", granularity=gran,
                                      calib_method=method).resolved()
                    sub = work / f"{gran}-{method}"
                    sub.mkdir()
                    info = build_quantized(fp32, sub / "q.onnx", cfg, ds, sub)
                    m = compare_logits(ref, OnnxEval(sub / "q.onnx").logits(ds.x_test), ds.y_test)
                    rows.append({"model": spec, "granularity": gran, "calib_method": method,
                                 "accuracy": m["accuracy"], "delta_pts": -m["loss_pts"],
                                 "logit_sqnr_db": m["sqnr_db"], "ptq_seconds": info["seconds"]})
                    print(json.dumps(rows[-1]), flush=True)
    return rows


def dynamic_rows(bases: dict, args, out: Path) -> list[dict]:
    rows = []
    for spec in [s for s in bases if ModelSpec.parse(s).name in ("cnn", "mlp")]:
        q = out / "runs" / f"{slug(spec)}-dynamic"
        quantize(bases[spec], QuantConfig(mode="dynamic"), out=q, data=args.data)
        rows.append({"model": spec, **versus(bases[spec], q, args)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def weight_only_rows(bases: dict, args, out: Path) -> list[dict]:
    rows = []
    for spec in [s for s in bases if ModelSpec.parse(s).name in ("mlp", "lenet5")]:
        for group in (None, 64):
            q = out / "runs" / f"{slug(spec)}-w4{'' if group is None else f'-g{group}'}"
            cfg = QuantConfig(mode="weight-only", bits=4, group_size=group)
            quantize(bases[spec], cfg, out=q, data=args.data)
            rec = json.loads((q / "metrics.json").read_text())
            rows.append({"model": spec, "group_size": group,
                         **versus(bases[spec], q, args, explain_slow=False),
                         "packed_weight_bytes": rec["packed_weight_bytes"],
                         "fp32_weight_bytes": rec["fp32_weight_bytes"],
                         "val_loss_pts": 100 * (rec["val_accuracy_fp32"] - rec["val_accuracy"])})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def qat_candidates(bases: dict, args) -> list[tuple[str, QuantConfig, QuantConfig]]:
    """PTQ settings that may lose >= 1 pt, mildest first: per-tensor int8 on mobilenet-mini,
    per-channel 4-bit weights on every model, then per-channel 2-bit weights."""
    def qat(**kw) -> QuantConfig:
        return QuantConfig(mode="qat", epochs=args.qat_epochs, lr=args.qat_lr, **kw)

    out = [(s, QuantConfig(mode="static", granularity="tensor"), qat(granularity="tensor"))
           for s in bases if ModelSpec.parse(s).name == "mobilenet-mini"]
    for bits in (4, 2):
        out += [(s, QuantConfig(mode="weight-only", bits=bits), qat(bits=bits)) for s in bases]
    return out


def qat_rows(bases: dict, args, out: Path) -> dict:
    """QAT on the first PTQ setting (:func:`qat_candidates`) that loses >= 1 pt on validation."""
    tried = []
    for spec, ptq_cfg, qat_cfg in qat_candidates(bases, args):
        ptq = out / "runs" / f"{slug(spec)}-ptq-{ptq_cfg.mode}-{ptq_cfg.granularity}{ptq_cfg.bits}"
        rec = quantize(bases[spec], ptq_cfg, out=ptq, data=args.data, progress=False)
        val_loss = 100 * (rec["val_accuracy_fp32"] - rec["val_accuracy"])
        tried.append({"model": spec, "ptq": ptq_cfg.to_dict(), "val_loss_pts": val_loss})
        print(json.dumps(tried[-1]), flush=True)
        if val_loss >= 1.0:
            return _run_qat(bases[spec], spec, ptq, qat_cfg, args, out, tried)
    return {"tried": tried, "note": "no PTQ setting lost >= 1 pt on validation; QAT not needed"}


def _run_qat(base: Path, spec: str, ptq: Path, cfg: QuantConfig, args, out: Path,
             tried: list) -> dict:
    q = out / "runs" / f"{slug(spec)}-qat-{cfg.granularity}{cfg.bits}"
    t0 = time.perf_counter()
    quantize(base, cfg, out=q, data=args.data, progress=False)
    seconds = time.perf_counter() - t0
    ref, r_ptq, r_qat = measured_rows(compare([base, ptq, q], data=args.data))
    loss = ref["accuracy"] - r_ptq["accuracy"]
    recovered = (r_qat["accuracy"] - r_ptq["accuracy"]) / loss if loss > 0 else None
    return {"model": spec, "config": cfg.to_dict(), "tried": tried, "seconds": seconds,
            "accuracy_fp32": ref["accuracy"], "accuracy_ptq": r_ptq["accuracy"],
            "accuracy_qat": r_qat["accuracy"], "recovered_fraction": recovered,
            "speedup_ptq": r_ptq["speedup"], "speedup_qat": r_qat["speedup"]}


def ptq_time(args) -> dict:
    """Static PTQ (pre-processing + 512-image minmax calibration + QDQ rewrite) of an untrained
    ``--ptq-model``; accuracy evaluation excluded. Median of 3."""
    ds = load_data(args.data)
    spec = ModelSpec.parse(args.ptq_model)
    model = create_model(spec, input_shape=ds.input_shape, num_classes=ds.num_classes).eval()
    params = sum(p.numel() for p in model.parameters())
    times = []
    with tempfile.TemporaryDirectory() as w:
        fp32 = export_fp32(model, Path(w) / "fp32.onnx", tuple(ds.input_shape), ds)
        for i in range(3):
            sub = Path(w) / str(i)
            sub.mkdir()
            cfg = QuantConfig(mode="static", calibration=512, calib_method="minmax").resolved()
            times.append(build_quantized(fp32, sub / "q.onnx", cfg, ds, sub)["seconds"])
    return {"model": args.ptq_model, "params": params, "images": 512, "seconds": times,
            "median_seconds": statistics.median(times)}


def md_static(rows: list[dict], title: str) -> list[str]:
    lines = [f"### {title}", "",
             "| model | fp32 acc | quantized acc | Δ pts (McNemar p) | ONNX bytes × | gzip × "
             "| median ms fp32 → q | speed-up [95% CI] | quantize s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["speedup_ci95"]
        name = r["model"] + (f" g{r['group_size']}" if r.get("group_size") else "")
        lines.append(
            f"| {name} | {r['accuracy_fp32']:.4f} | {r['accuracy']:.4f} | "
            f"{r['accuracy_delta_pts']:+.2f} ({r['p_value']:.2g}) | {r['onnx_bytes_ratio']:.3f} | "
            f"{r['size_ratio_gzip']:.3f} | {r['median_ms_fp32']:.4f} → {r['median_ms']:.4f} | "
            f"{r['speedup']:.2f} [{lo:.2f}, {hi:.2f}] | {r['quantize_seconds'] or 0:.2f} |")
    for r in rows:
        if r.get("explanation"):
            lines += ["", f"Why {r['model']} is not ≥ {SLOW}× faster:"]
            lines += [f"- {t}" for t in r["explanation"]]
    return lines + [""]


def md_granularity(rows: list[dict]) -> list[str]:
    cols = [(g, m) for g in ("tensor", "channel") for m in ("minmax", "percentile", "entropy")]
    lines = ["### Static int8: per-tensor vs per-channel × calibration (test Δ pts vs fp32, "
             "logit SQNR dB)", "",
             "| model | " + " | ".join(f"{g}/{m}" for g, m in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for spec in dict.fromkeys(r["model"] for r in rows):
        cells = []
        for g, m in cols:
            r = next(x for x in rows if x["model"] == spec and x["granularity"] == g
                     and x["calib_method"] == m)
            cells.append(f"{r['delta_pts']:+.2f} ({r['logit_sqnr_db']:.1f} dB)")
        lines.append(f"| {spec} | " + " | ".join(cells) + " |")
    return lines + [""]


def md_qat(q: dict) -> list[str]:
    lines = ["### QAT where PTQ loses", ""]
    lines += [f"- tried {t['model']} {t['ptq']['mode']} {t['ptq']['granularity']} "
              f"{t['ptq']['bits']}-bit: PTQ loses {t['val_loss_pts']:.2f} pts on validation"
              for t in q.get("tried", [])]
    if "accuracy_qat" not in q:
        return lines + [f"- {q.get('note', '')}", ""]
    rec = q["recovered_fraction"]
    lines.append(f"- {q['model']} ({q['config']['mode']} {q['config']['granularity']} "
                 f"{q['config']['bits']}-bit, {q['config']['epochs']} epochs, lr "
                 f"{q['config']['lr']:g}, {q['seconds']:.0f} s): test accuracy fp32 "
                 f"{q['accuracy_fp32']:.4f}, PTQ {q['accuracy_ptq']:.4f}, QAT "
                 f"{q['accuracy_qat']:.4f}; recovered "
                 f"{'n/a' if rec is None else f'{100 * rec:.0f}%'} of the PTQ loss "
                 f"(target ≥ 50%)")
    return lines + [""]


def md_weight_only(rows: list[dict]) -> list[str]:
    return md_static(rows, "4-bit weight-only (per channel; g64 = groups of 64, fp16 scales) "
                           "vs fp32") + ["Packed 4-bit weights / fp32 weight bytes: " + ", ".join(
        f"{r['model']}{'' if r['group_size'] is None else ' g' + str(r['group_size'])} "
        f"{r['packed_ratio']:.3f}" for r in rows), ""]


def md_ptq_time(t: dict) -> list[str]:
    return ["### PTQ time", "",
            f"{t['model']} ({t['params']:,} parameters), {t['images']} images, minmax: "
            f"median {t['median_seconds']:.2f} s of {', '.join(f'{s:.2f}' for s in t['seconds'])}"
            " (pre-processing + calibration + QDQ rewrite; accuracy evaluation excluded)", ""]


# section name -> (result key, compute(bases, args, out), markdown(result))
SECTIONS = {
    "static": ("static", static_all,
               lambda r: md_static(r, "Static per-channel int8 (QDQ) vs fp32")),
    "granularity": ("granularity", lambda b, a, o: granularity_table(b, a), md_granularity),
    "dynamic": ("dynamic", dynamic_rows, lambda r: md_static(r, "Dynamic int8 vs fp32")),
    "weight-only": ("weight_only", weight_only_rows, md_weight_only),
    "qat": ("qat", qat_rows, md_qat),
    "ptq-time": ("ptq_time", lambda b, a, o: ptq_time(a), md_ptq_time),
}


def markdown(res: dict, args) -> str:
    lines = [f"## Quantization on {args.data} — ONNX Runtime, 1 thread, batch 1, "
             f"{time.strftime('%Y-%m-%d')}", ""]
    for key, _, md in SECTIONS.values():
        if key in res:
            lines += md(res[key])
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--models", default=",".join(ZOO))
    ap.add_argument("--baselines", default=None,
                    help="fp32 runs, one folder per model (default: benchmarks/out/foundation/"
                    "runs for fashion-mnist, else OUT/baselines)")
    ap.add_argument("--out", default="benchmarks/out/quantization")
    ap.add_argument("--epochs", type=int, default=None, help="baseline training epochs when "
                    "a baseline must be trained (default: the model's recipe)")
    ap.add_argument("--train-subset", type=int, default=None)
    ap.add_argument("--qat-epochs", type=int, default=2)
    ap.add_argument("--qat-lr", type=float, default=1e-4)
    ap.add_argument("--ptq-model", default="mlp:width=4")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help="which parts to run (default: all); a subset writes "
                    "OUT/quantization-<sections>.md/.json")
    args = ap.parse_args()
    out = Path(args.out)
    if args.baselines is None:
        args.baselines = ("benchmarks/out/foundation/runs" if args.data == "fashion-mnist"
                          else str(out / "baselines"))
    bases = {spec: baseline(spec, args) for spec in args.models.split(",")}
    res: dict = {"data": args.data, "args": vars(args)}
    sections = args.sections.split(",")
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown --sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    for name in sections:
        key, compute, _ = SECTIONS[name]
        res[key] = compute(bases, args, out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "quantization" if set(sections) == set(SECTIONS) else "-".join(["quantization",
                                                                          *sections])
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2, default=str))
    md = markdown(res, args)
    (out / f"{stem}.md").write_text(stamped(md))
    print(md)


if __name__ == "__main__":
    main()
