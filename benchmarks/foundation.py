"""Foundation figures: default training of every zoo model, measurement repeatability, compare A A.

Usage: python benchmarks/foundation.py [--data fashion-mnist]
       [--models mlp,lenet5,cnn,mobilenet-mini]
       [--out benchmarks/out/foundation] [--reuse]

Prints a Markdown table and writes it, with the JSON behind it, to OUT/. Run it on an idle
machine: latency figures taken while something else runs are noise.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

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
    args = ap.parse_args()
    out = Path(args.out)
    rows = []
    for name in args.models.split(","):
        run_dir = out / "runs" / name
        if not (args.reuse and (run_dir / "model.json").is_file()):
            train(name, data=args.data, out=run_dir, progress=False)
        run = load_run(run_dir)
        train_s = run.meta["training"]["seconds"]
        m1 = measure(run_dir)
        m2 = measure(run_dir)
        aa = compare([run_dir, run_dir])
        row = {
            "model": name, "train_seconds": train_s, "train_limit_s": TIME_LIMIT_S.get(name),
            "epochs": run.meta["provenance"]["config"]["epochs"],
            "accuracy": m1["accuracy"], "accuracy_ci95": m1["accuracy_ci95"],
            "target": TARGETS.get(name), "params": m1["params_total"], "macs": m1["macs"],
            "size_bytes": m1["size_bytes"], "size_gzip_bytes": m1["size_gzip_bytes"],
            "median_ms_1": m1["latency_ms"]["median"], "median_ms_2": m2["latency_ms"]["median"],
            "p90_ms": m1["latency_ms"]["p90"], "accuracy_2": m2["accuracy"],
            "aa_speedup": aa[1]["speedup"], "aa_speedup_ci95": aa[1]["speedup_ci95"],
            "peak_rss_mb": m1["peak_rss_mb"], "kernels": m1["kernels"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "foundation.json").write_text(json.dumps(rows, indent=2))
    md = table(rows, args.data)
    (out / "foundation.md").write_text(md)
    print(md)


def table(rows: list[dict], data: str) -> str:
    lines = [f"Default training on {data}; ONNX Runtime, 1 thread, batch 1; "
             f"{time.strftime('%Y-%m-%d')}", "",
             "| model | params | MACs | gzip KB | train s (limit) | accuracy [95% CI] (target) "
             "| median ms run1 / run2 (Δ%) | p90 ms | compare A A speed-up [CI] |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = 100 * abs(r["median_ms_2"] - r["median_ms_1"]) / r["median_ms_1"]
        lo, hi = r["aa_speedup_ci95"]
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['macs']:,} | {r['size_gzip_bytes'] / 1024:.1f} "
            f"| {r['train_seconds']:.0f} ({r['train_limit_s']}) | {r['accuracy']:.4f} "
            f"[{r['accuracy_ci95'][0]:.4f}, {r['accuracy_ci95'][1]:.4f}] (≥ {r['target']}) "
            f"| {r['median_ms_1']:.4f} / {r['median_ms_2']:.4f} ({d:.1f}%) | {r['p90_ms']:.4f} "
            f"| {r['aa_speedup']:.3f} [{lo:.3f}, {hi:.3f}] |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
