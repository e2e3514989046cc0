"""Noise floor and quiet-block figures (issue 16): how far a second session of the same file
lands from the first (``noise_floor``) on an idle host and on a busy one (a second heavy process
running), and whether the quiet-rounds speed-up agrees with the all-rounds one for cnn int8 and
cnn pruned.

Usage (nothing else running):
    python benchmarks/noise_floor.py [--data fashion-mnist] [--models lenet5,cnn,mobilenet-mini]
        [--runs DIR] [--epochs 1] [--cnn RUN --int8 RUN --pruned RUN]
        [--out benchmarks/out/noise-floor]

Latency does not depend on the weights' values (dense fp32 kernels), so models missing from
``--runs`` are trained for ``--epochs`` (1) only: their accuracy is not a figure here. cnn's int8
(static, per-channel) and pruned (half the channels removed, no fine-tune) variants are made
from ``--cnn`` unless given. Prints Markdown and writes OUT/noise_floor.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import stamped

from edgepress import compare, train
from edgepress.prune import FinetuneOptions, PruneConfig, prune
from edgepress.quantize import QuantConfig, quantize

BUSY = ("import numpy as np, time\n"
        "a = np.random.default_rng(0).random((400, 400))\n"
        "t = time.time()\n"
        "while time.time() - t < 3600: a = (a @ a) / 400.0\n")


def run_of(model: str, args: argparse.Namespace) -> Path:
    d = Path(args.runs) / model
    if not (d / "model.json").is_file():
        print(f"training {model} ({args.epochs} epoch) -> {d}", flush=True)
        train(model, data=args.data, out=d, epochs=args.epochs, progress=False)
    return d


def floor_row(run: Path, host: str) -> dict:
    rows = compare([run, run])
    again, ref = rows[-1], rows[0]
    return {"model": run.name, "host": host, "noise_floor": ref["noise_floor"],
            "again_over_ref": again["latency_ms"]["median"] / ref["latency_ms"]["median"],
            "median_ms": ref["latency_ms"]["median"],
            "quiet_fraction": ref["latency_ms"]["quiet_fraction"],
            "quiet_fallback": ref["latency_ms"]["quiet_fallback"],
            "aa_speedup": rows[1]["speedup"], "aa_ci95": rows[1]["speedup_ci95"],
            "aa_change": rows[1]["latency_change"]}


def busy_process() -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", BUSY], env=env)


def variants(args: argparse.Namespace, cnn: Path) -> dict[str, Path]:
    out = Path(args.runs)
    int8 = Path(args.int8) if args.int8 else out / "cnn-int8"
    pruned = Path(args.pruned) if args.pruned else out / "cnn-pruned"
    if not (int8 / "model.json").is_file():
        quantize(cnn, QuantConfig(mode="static", granularity="channel"), out=int8,
                 progress=False)
    if not (pruned / "model.json").is_file():
        prune(cnn, PruneConfig(method="channel", channel_ratio=0.5,
                               finetune=FinetuneOptions(epochs=0)), out=pruned, progress=False)
    return {"int8": int8, "pruned": pruned}


def agreement(cnn: Path, made: dict[str, Path], host: str) -> list[dict]:
    rows = compare([cnn, *made.values()], variants=["cnn", *made])
    out = []
    for r in rows[1:-1]:
        lo, hi = r["speedup_ci95_timing"]
        f = r["noise_floor"]
        lo_f, hi_f = min(lo, r["speedup"] * (1 - f)), max(hi, r["speedup"] * (1 + f))
        out.append({"variant": r["variant"], "host": host, "speedup": r["speedup"],
                    "speedup_all": r["speedup_all"], "ci_timing": [lo, hi],
                    "ci_floor": [lo_f, hi_f], "ci95": r["speedup_ci95"],
                    "agree": bool(lo_f <= r["speedup_all"] <= hi_f),
                    "quiet_fraction": r["latency_ms"]["quiet_fraction"],
                    "noise_floor": f})
    return out


def table(floors: list[dict], agree: list[dict]) -> str:
    lines = [f"# Noise floor and quiet blocks, {time.strftime('%Y-%m-%d')}", "",
             "ONNX Runtime, 1 thread, batch 1. `noise_floor` = |A′/A − 1| (at least 0.5%) of two "
             "sessions of one file timed in the same interleaved rounds; busy = a second process "
             "doing 400×400 float64 matmuls on the other core.", "",
             "| model | host | median ms | A′/A | noise floor | quiet % | fallback | "
             "A A speed-up [CI] |", "|---|---|---|---|---|---|---|---|"]
    for r in floors:
        lo, hi = r["aa_ci95"]
        lines.append(f"| {r['model']} | {r['host']} | {r['median_ms']:.4f} | "
                     f"{r['again_over_ref']:.4f} | {100 * r['noise_floor']:.2f}% | "
                     f"{100 * r['quiet_fraction']:.0f} | {r['quiet_fallback']} | "
                     f"{r['aa_speedup']:.3f} [{lo:.3f}, {hi:.3f}] ({r['aa_change']}) |")
    lines += ["", "Quiet-rounds speed-up against the all-rounds one (agree: the all-rounds "
              "ratio lies in the bootstrap CI widened to the noise floor, before the CI is "
              "widened to cover it).", "",
              "| variant | host | speed-up | speed-up, all rounds | CI (timing ± floor) | "
              "reported CI | agree | quiet % |", "|---|---|---|---|---|---|---|---|"]
    for r in agree:
        lines.append(f"| cnn {r['variant']} | {r['host']} | {r['speedup']:.3f} | "
                     f"{r['speedup_all']:.3f} | [{r['ci_floor'][0]:.3f}, {r['ci_floor'][1]:.3f}] "
                     f"| [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] | {r['agree']} | "
                     f"{100 * r['quiet_fraction']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--models", default="lenet5,cnn,mobilenet-mini")
    ap.add_argument("--runs", default="benchmarks/out/noise-floor/runs")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--cnn", default=None)
    ap.add_argument("--int8", default=None)
    ap.add_argument("--pruned", default=None)
    ap.add_argument("--out", default="benchmarks/out/noise-floor")
    args = ap.parse_args()
    runs = {m: (Path(args.cnn) if m == "cnn" and args.cnn else run_of(m, args))
            for m in args.models.split(",")}
    made = variants(args, runs["cnn"]) if "cnn" in runs else {}
    floors, agree = [], []
    for host in ("idle", "busy"):
        busy = busy_process() if host == "busy" else None
        try:
            if busy:
                time.sleep(1.0)
            for run in runs.values():
                floors.append(floor_row(run, host))
                print(json.dumps(floors[-1]), flush=True)
            if made:
                agree += agreement(runs["cnn"], made, host)
                print(json.dumps(agree[-2:]), flush=True)
        finally:
            if busy:
                busy.kill()
                busy.wait()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "noise_floor.json").write_text(json.dumps({"floors": floors, "agreement": agree},
                                                     indent=2))
    md = table(floors, agree)
    (out / "noise_floor.md").write_text(stamped(md))
    print(stamped(md))


if __name__ == "__main__":
    main()
