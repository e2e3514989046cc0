"""Distillation figures: how much of the teacher–student gap knowledge distillation closes.

Protocol (honest): the temperature is chosen on the validation split with seed 0 (sweep over
--temperatures, each arm trained with identical settings, the baseline arm being the same student
without a teacher); the chosen temperature is then run with --seeds seeds and the test accuracy of
both arms reported — mean gap closed and its spread. The test split is only reported, never used
to choose.

Usage: python benchmarks/distillation.py [--data fashion-mnist] [--teacher RUN]
       [--student lenet5:width=0.25] [--temperatures 1,2,4,8] [--seeds 3] [--epochs N]
       [--out benchmarks/out/distillation] [--quick]

The teacher defaults to the foundation benchmark's mobilenet-mini run
(benchmarks/out/foundation/runs/mobilenet-mini), trained with the default recipe if missing.
Writes OUT/distillation.md and OUT/distillation.json. Latency plays no part, so the machine need
not be idle.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

from _common import reuse_or_train, stamped

from edgepress.distill import DistillConfig, distill


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--teacher", default="benchmarks/out/foundation/runs/mobilenet-mini")
    ap.add_argument("--teacher-model", default="mobilenet-mini",
                    help="zoo model to train as teacher when --teacher does not exist")
    ap.add_argument("--student", default="lenet5:width=0.25")
    ap.add_argument("--temperatures", default="1,2,4,8")
    ap.add_argument("--alpha", type=float, default=0.7)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=None, help="student epochs (default: recipe)")
    ap.add_argument("--out", default="benchmarks/out/distillation")
    ap.add_argument("--quick", action="store_true", help="2 epochs, 1 seed (smoke test)")
    args = ap.parse_args()
    if args.quick:
        args.epochs, args.seeds = 2, 1
    out, t0 = Path(args.out), time.perf_counter()
    teacher = ensure_teacher(Path(args.teacher), args)
    temps = [float(t) for t in args.temperatures.split(",")]
    sweep = []
    for t in temps:
        s = run(teacher, args, out / f"sweep-T{t:g}", temperature=t, seeds=1)
        sweep.append({"temperature": t, "kd_val": s["kd_val_accuracy"][0],
                      "baseline_val": s["baseline_val_accuracy"][0],
                      "kd_test": s["kd_accuracy"][0], "baseline_test": s["baseline_accuracy"][0],
                      "teacher_test": s["teacher_accuracy"]})
        print(json.dumps(sweep[-1]), flush=True)
    best = max(sweep, key=lambda r: r["kd_val"])["temperature"]  # chosen on validation only
    final = run(teacher, args, out / f"final-T{best:g}", temperature=best, seeds=args.seeds)
    result = {"data": args.data, "teacher": str(teacher), "student": args.student,
              "alpha": args.alpha, "chosen_temperature": best, "sweep": sweep,
              "final": final, "minutes": round((time.perf_counter() - t0) / 60, 1)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "distillation.json").write_text(json.dumps(result, indent=2))
    md = table(result)
    (out / "distillation.md").write_text(stamped(md))
    print(md)


def ensure_teacher(path: Path, args: argparse.Namespace) -> Path:
    """The teacher run: ``path`` when it exists and was trained on ``--data``, else trained."""
    return reuse_or_train(args.teacher_model, args.data, path, Path(args.out) / "teacher",
                          epochs=2 if args.quick else None)


def run(teacher: Path, args: argparse.Namespace, out: Path, *, temperature: float,
        seeds: int) -> dict:
    """One distill call (both arms, ``seeds`` seeds); reuses ``out`` when it already holds one."""
    summary = out / "distill.json"
    cfg = DistillConfig(temperature=temperature, alpha=args.alpha, seeds=seeds,
                        epochs=args.epochs, cache_teacher=True)
    if summary.is_file():
        s = json.loads(summary.read_text())
        if s["config"]["distill"] == cfg.to_dict():
            return s
        shutil.rmtree(out)
    return distill(str(teacher), args.student, cfg, out=out, data=args.data, progress=False)


def table(r: dict) -> str:
    f = r["final"]
    kd, base = f["kd_accuracy"], f["baseline_accuracy"]
    per_seed = [(k - b) / (f["teacher_accuracy"] - b) for k, b in zip(kd, base, strict=True)
                if f["teacher_accuracy"] > b]
    lines = [f"# Distillation on {r['data']}", "",
             f"Teacher {r['teacher']} (test {f['teacher_accuracy']:.4f}); student "
             f"{r['student']}; α = {r['alpha']}; both arms trained with identical settings "
             f"(same seed, initial weights, data order, epochs; they differ only in the loss); "
             f"{time.strftime('%Y-%m-%d')}, {r['minutes']} min.", "",
             "## Temperature sweep (seed 0; T chosen on validation)", "",
             "| T | KD val | no-teacher val | KD test | no-teacher test |", "|---|---|---|---|---|"]
    for s in r["sweep"]:
        mark = " ←" if s["temperature"] == r["chosen_temperature"] else ""
        lines.append(f"| {s['temperature']:g}{mark} | {s['kd_val']:.4f} | {s['baseline_val']:.4f} "
                     f"| {s['kd_test']:.4f} | {s['baseline_test']:.4f} |")
    spread = statistics.stdev(per_seed) if len(per_seed) > 1 else 0.0
    gap = f["gap_closed"]
    lines += ["", f"## {len(kd)} seeds at T = {r['chosen_temperature']:g} (test split)", "",
              "| seed | KD | no teacher | Δ pts | gap closed |", "|---|---|---|---|---|"]
    for i, (k, b) in enumerate(zip(kd, base, strict=True)):
        g = (k - b) / (f["teacher_accuracy"] - b) if f["teacher_accuracy"] > b else None
        lines.append(f"| {f['config']['seeds'][i]} | {k:.4f} | {b:.4f} | {100 * (k - b):+.2f} "
                     f"| {'—' if g is None else f'{100 * g:.0f}%'} |")
    lines += ["", f"- mean: KD {statistics.fmean(kd):.4f}, no teacher {statistics.fmean(base):.4f}"
              f", teacher {f['teacher_accuracy']:.4f}",
              f"- gap closed (of the means): "
              f"{'— (teacher not better)' if gap is None else f'{100 * gap:.0f}%'}; per-seed "
              f"spread (sd): {100 * spread:.0f} pts of the gap; goal ≥ 50%"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
