"""Foundation figures: default training of every zoo model, measurement repeatability, compare A A.

Usage: python benchmarks/foundation.py [--data fashion-mnist]
       [--models mlp,lenet5,cnn,mobilenet-mini]
       [--out benchmarks/out/foundation] [--reuse] [--repeats 2]

Prints a Markdown table and writes it, with the JSON behind it, to OUT/. Run it on an idle
machine: latency figures taken while something else runs are noise.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from _common import stamped

from edgepress import compare, measure, train
from edgepress.checkpoint import load_run

TARGETS = {"mlp": 0.88, "lenet5": 0.89, "cnn": 0.91, "mobilenet-mini": 0.90}
TIME_LIMIT_S = {"mlp": 120, "lenet5": 120, "cnn": 600, "mobilenet-mini": 600}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--models", default=",".join(TARGETS))
    ap.add_argument("--out", default="benchmarks/out/foundation")
    ap.add_argument("--reuse", action="store_true", help="reuse trained runs in OUT/runs")
    ap.add_argument("--repeats", type=int, default=2,
                    help="consecutive `measure` calls per model (repeatability; default 2)")
    args = ap.parse_args()
    out = Path(args.out)
    rows = []
    for name in args.models.split(","):
        run_dir = out / "runs" / name
        if not (args.reuse and (run_dir / "model.json").is_file()):
            train(name, data=args.data, out=run_dir, progress=False)
        run = load_run(run_dir)
        train_s = run.meta["training"]["seconds"]
        ms = [measure(run_dir) for _ in range(max(2, args.repeats))]
        m1, m2 = ms[0], ms[1]
        aa = compare([run_dir, run_dir])
        lat = [m["latency_ms"] for m in ms]
        row = {
            "model": name, "train_seconds": train_s, "train_limit_s": TIME_LIMIT_S.get(name),
            "epochs": run.meta["provenance"]["config"]["epochs"],
            "accuracy": m1["accuracy"], "accuracy_ci95": m1["accuracy_ci95"],
            "target": TARGETS.get(name), "params": m1["params_total"], "macs": m1["macs"],
            "size_bytes": m1["size_bytes"], "size_gzip_bytes": m1["size_gzip_bytes"],
            "median_ms_1": m1["latency_ms"]["median"], "median_ms_2": m2["latency_ms"]["median"],
            "p90_ms": m1["latency_ms"]["p90"], "accuracy_2": m2["accuracy"],
            "medians_ms": [x["median"] for x in lat],
            "medians_all_ms": [x.get("median_all", x["median"]) for x in lat],
            "quiet_fractions": [x.get("quiet_fraction", 1.0) for x in lat],
            "accuracies": [m["accuracy"] for m in ms],
            "aa_speedup": aa[1]["speedup"], "aa_speedup_ci95": aa[1]["speedup_ci95"],
            "noise_floor": aa[1]["noise_floor"],
            "peak_rss_mb": m1["peak_rss_mb"], "kernels": m1["kernels"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "foundation.json").write_text(json.dumps(rows, indent=2))
    md = table(rows, args.data)
    (out / "foundation.md").write_text(stamped(md))
    print(md)


def table(rows: list[dict], data: str) -> str:
    lines = [f"Default training on {data}; ONNX Runtime, 1 thread, batch 1; "
             f"{time.strftime('%Y-%m-%d')}", "",
             "| model | params | MACs | gzip KB | train s (limit) | accuracy [95% CI] (target) "
             "| median ms, consecutive `measure` calls (max Δ%) | all-runs medians (max Δ%) "
             "| quiet % | p90 ms | compare A A speed-up [CI] |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["aa_speedup_ci95"]
        meds, alls = r["medians_ms"], r["medians_all_ms"]
        quiet = "/".join(f"{100 * q:.0f}" for q in r["quiet_fractions"])
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['macs']:,} | {r['size_gzip_bytes'] / 1024:.1f} "
            f"| {r['train_seconds']:.0f} ({r['train_limit_s']}) | {r['accuracy']:.4f} "
            f"[{r['accuracy_ci95'][0]:.4f}, {r['accuracy_ci95'][1]:.4f}] (≥ {r['target']}) "
            f"| {_series(meds)} | {_series(alls)} | {quiet} | {r['p90_ms']:.4f} "
            f"| {r['aa_speedup']:.3f} [{lo:.3f}, {hi:.3f}] |")
    return "\n".join(lines) + "\n"


def _series(ms: list[float]) -> str:
    """``0.672 / 0.675 (0.4%)``: the values and the largest gap between consecutive ones."""
    gap = max(abs(b - a) / min(a, b) for a, b in zip(ms[:-1], ms[1:], strict=True))
    return " / ".join(f"{m:.4f}" for m in ms) + f" ({100 * gap:.1f}%)"


if __name__ == "__main__":
    main()
