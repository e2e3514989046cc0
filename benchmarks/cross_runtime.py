"""Cross-runtime figures (issue 7): fp32, int8, pruned and pruned+int8 on ONNX Runtime and on
ExecuTorch/XNNPACK (the kernels phones run), side by side; each speed-up against that runtime's
own fp32 model.

Usage (on an idle machine; latency taken while something else runs is noise):
    python benchmarks/cross_runtime.py [--data fashion-mnist] [--models cnn,mobilenet-mini,lenet5]
        [--baselines benchmarks/out/foundation/runs] [--pruned benchmarks/out/pruning/runs]
        [--out benchmarks/out/cross_runtime] [--prune-model cnn] [--prune-epochs 3] [--quick]

Baselines are copied from BASELINES/<model> when trained on --data (so the foundation's runs are
left as they are), else trained with the default recipe, into OUT/runs/<model>. int8 is static
per-channel (edgepress.quantize, 512 calibration images, minmax); ExecuTorch re-applies the same
quantization with XNNPACKQuantizer on the same images when it exports model.pte. The pruned
variant (channel 0.5) is copied from PRUNED/<model>-ch50 when it was pruned from the same
baseline weights, else pruned here. For each model and runtime, one edgepress.compare session
(1 thread, batch 1, latency interleaved) measures fp32 and its variants.
Prints Markdown and writes OUT/cross_runtime.md and OUT/cross_runtime.json. Smoke test:
``--data digits --quick --out /tmp/xrt``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from _common import data_of, stamped

from edgepress import train
from edgepress.checkpoint import load_run
from edgepress.measurement import compare, measured_rows
from edgepress.prune import FinetuneOptions, PruneConfig, prune
from edgepress.quantize import QuantConfig, quantize

RUNTIMES = ("onnxruntime", "executorch")
LABEL = {"onnxruntime": "ONNX Runtime", "executorch": "XNNPACK"}
INT8 = QuantConfig(mode="static", granularity="channel")
SLOW = 1.3  # an int8 speed-up below this gets its kernels listed


def _copy_run(src: Path, dst: Path) -> Path:
    """A run copied without its deployment files (they are re-exported on demand)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("model.json", "model.safetensors", "model.onnx", "metrics.json"):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    return dst


def baseline(model: str, args: argparse.Namespace, runs: Path) -> Path:
    """OUT/runs/<model>: the foundation's run when trained on --data, else trained here."""
    mine, given = runs / model, Path(args.baselines) / model
    if data_of(mine) == args.data:
        return mine
    if data_of(given) == args.data:
        return _copy_run(given, mine)
    print(f"training {model} on {args.data}", flush=True)
    train(model, data=args.data, out=mine, epochs=2 if args.quick else None, progress=False)
    return mine


def int8(parent: Path, runs: Path) -> Path:
    """Static per-channel int8 of ``parent`` (reused when already made from it)."""
    out = runs / f"{parent.name}-int8"
    if (out / "model.json").is_file():
        meta = load_run(out).meta
        if (meta["provenance"]["parent"] == str(parent)
                and meta["deployment"]["quantization"]["granularity"] == "channel"):
            return out
    quantize(parent, INT8, out=out, progress=False)
    print(f"quantized {out.name}", flush=True)
    return out


def pruned(parent: Path, args: argparse.Namespace, runs: Path) -> Path:
    """Channel-pruned (ratio 0.5) ``parent``: the pruning benchmark's run when it was made from
    the same weights, else pruned and fine-tuned here.
    """
    out = runs / f"{parent.name}-ch50"
    if (out / "model.json").is_file():
        return out
    given = Path(args.pruned) / f"{parent.name}-ch50"
    if (given / "model.json").is_file() and _same_weights(load_run(given), parent):
        _copy_run(given, out)
        meta = json.loads((out / "model.json").read_text())
        meta["provenance"]["parent"] = str(parent)
        (out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        (out / "model.safetensors").touch()  # the copied ONNX stays newer than the weights
        (out / "model.onnx").touch()
        return out
    ft = FinetuneOptions(epochs=1 if args.quick else args.prune_epochs)
    prune(parent, PruneConfig(method="channel", channel_ratio=0.5, finetune=ft), out=out,
          progress=False)
    print(f"pruned {out.name}", flush=True)
    return out


def _same_weights(run, parent: Path) -> bool:
    src = Path(run.meta["provenance"].get("parent") or "")
    return (src / "model.safetensors").is_file() and (
        (src / "model.safetensors").read_bytes() == (parent / "model.safetensors").read_bytes())


def measure_model(model: str, args: argparse.Namespace, runs: Path) -> dict[str, list[dict]]:
    """{runtime: compare records [fp32, int8, (pruned, pruned+int8)]} for one model."""
    base = baseline(model, args, runs)
    variants = {"fp32": base, "int8": int8(base, runs)}
    if model == args.prune_model:
        p = pruned(base, args, runs)
        variants.update({"pruned": p, "pruned+int8": int8(p, runs)})
    out = {}
    for rt in RUNTIMES:
        rows = compare(list(variants.values()), data=args.data, runtime=rt,
                       variants=list(variants))
        out[rt] = measured_rows(rows)  # without the noise-floor row
        print(f"compared {model} on {rt}", flush=True)
    return out


def _cell(r: dict) -> tuple[str, str, str]:
    lo, hi = r["speedup_ci95"]
    return (f"{r['latency_ms']['median']:.4f}", f"{r['speedup']:.2f} [{lo:.2f}, {hi:.2f}]",
            f"{100 * r['accuracy']:.2f} ({r['accuracy_delta_pts']:+.2f})")


def _delegation(r: dict) -> str:
    d = r.get("delegation") or {}
    if d.get("share") is None:
        return "—"
    outside = ", ".join(f"{k}×{v}" for k, v in d.get("outside", {}).items())
    return f"{d['share']:.0%}" + (f" (outside: {outside})" if outside else "")


def table(results: dict[str, dict[str, list[dict]]]) -> list[str]:
    """One row per (model, variant): both runtimes side by side."""
    lines = ["| model | variant | ORT median ms | ORT speed-up [95% CI] | ORT accuracy (Δ pts) "
             "| XNNPACK median ms | XNNPACK speed-up [95% CI] | XNNPACK accuracy (Δ pts) "
             "| gzip KB ONNX / pte | XNNPACK share |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for model, by_rt in results.items():
        for o, e in zip(by_rt["onnxruntime"], by_rt["executorch"], strict=True):
            lines.append(f"| {model} | {o['variant']} | " + " | ".join(_cell(o)) + " | "
                         + " | ".join(_cell(e)) + f" | {o['size_gzip_bytes'] / 1024:.1f} / "
                         f"{e['size_gzip_bytes'] / 1024:.1f} | {_delegation(e)} |")
    return lines


def checks(results: dict[str, dict[str, list[dict]]]) -> list[str]:
    """The issue's target (cnn int8 on XNNPACK) and every int8 row that did not speed up."""
    out = []
    cnn = results.get("cnn", {}).get("executorch")
    if cnn:
        q = next(r for r in cnn if r["variant"] == "int8")
        ok = q["speedup"] >= 2.5 and q["accuracy_delta_pts"] >= -0.5
        lo, hi = q["speedup_ci95"]
        out.append(f"- {'PASS' if ok else 'FAIL'} cnn int8 on XNNPACK: speed-up "
                   f"{q['speedup']:.2f} [{lo:.2f}, {hi:.2f}] (≥ 2.5), Δ accuracy "
                   f"{q['accuracy_delta_pts']:+.2f} pts (≥ −0.5)")
    for model, by_rt in results.items():
        for rt, rows in by_rt.items():
            for r in rows:
                if r["variant"].endswith("int8") and r["speedup"] < SLOW:
                    kern = ", ".join(f"{k}×{v}" for k, v in r["kernels"].items())
                    out.append(f"- {model} {r['variant']} on {LABEL[rt]}: speed-up "
                               f"{r['speedup']:.2f} (< {SLOW}); {r['macs']:,} MACs; kernels: "
                               f"{kern}")
    return out


def report(results: dict, args: argparse.Namespace, minutes: float) -> str:
    """The Markdown report."""
    any_rec = next(iter(next(iter(results.values())).values()))[0]
    lines = [f"# fp32 / int8 / pruned on ONNX Runtime and ExecuTorch (XNNPACK), {args.data}", "",
             f"1 thread, batch 1; one interleaved `compare` session per model and runtime; each "
             f"speed-up against that runtime's own fp32 model. {any_rec['machine']['cpu']}, "
             f"ISA {', '.join(any_rec['machine']['isa'])}; onnxruntime "
             f"{any_rec['versions']['onnxruntime']}, executorch "
             f"{any_rec['versions']['executorch']}; {time.strftime('%Y-%m-%d')}; "
             f"{minutes:.1f} min{' (--quick)' if args.quick else ''}.", "",
             "int8 = static, per-channel symmetric int8 weights, per-tensor activations "
             "calibrated on the same 512 training images (minmax) for both runtimes: ONNX Runtime "
             "runs the QDQ model (uint8 activations), XNNPACK the pt2e XNNPACKQuantizer program "
             "(int8 activations). XNNPACK share = operator nodes lowered to the delegate.", ""]
    lines += table(results) + ["", "## Figures to reach, and where int8 does not help", ""]
    lines += checks(results) or ["- (nothing to report)"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--models", default="cnn,mobilenet-mini,lenet5")
    ap.add_argument("--baselines", default="benchmarks/out/foundation/runs")
    ap.add_argument("--pruned", default="benchmarks/out/pruning/runs")
    ap.add_argument("--out", default="benchmarks/out/cross_runtime")
    ap.add_argument("--prune-model", default="cnn", help="the model also pruned (channel 0.5)")
    ap.add_argument("--prune-epochs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="2-epoch baselines, 1 fine-tune epoch")
    args = ap.parse_args()
    out, t0 = Path(args.out), time.perf_counter()
    runs = out / "runs"
    results = {m: measure_model(m, args, runs) for m in args.models.split(",")}
    minutes = (time.perf_counter() - t0) / 60
    out.mkdir(parents=True, exist_ok=True)
    (out / "cross_runtime.json").write_text(json.dumps(results, indent=2))
    md = report(results, args, minutes)
    (out / "cross_runtime.md").write_text(stamped(md))
    print(md)


if __name__ == "__main__":
    main()
