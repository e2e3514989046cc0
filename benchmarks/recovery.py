"""Distillation-aided recovery (issue 17): cnn channel pruning 0.5 with a short fine-tune, on the
labels alone against ``--finetune-teacher parent`` (the unpruned model as teacher), three seeds
each, test split.

Usage (nothing else running):
    python benchmarks/recovery.py [--data fashion-mnist] [--parent RUN]
        [--seeds 0,1,2] [--epochs 2] [--train-subset 30000] [--alpha 0.7] [--temperature 4]
        [--out benchmarks/out/recovery]

The fine-tune budget defaults to the study's (2 epochs on the first 30,000 training images), whose
pruned row this is. ``--parent`` defaults to the foundation benchmark's cnn (trained here with the
default recipe when absent). Prints Markdown and writes OUT/recovery.md and .json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from _common import reuse_or_train, stamped

from edgepress.prune import FinetuneOptions, PruneConfig, prune


def arm(parent: Path, teacher: str, seed: int, args: argparse.Namespace, runs: Path) -> dict:
    out = runs / f"{'kd' if teacher != 'none' else 'plain'}-s{seed}"
    ft = FinetuneOptions(epochs=args.epochs, train_subset=args.train_subset, teacher=teacher,
                         alpha=args.alpha, temperature=args.temperature)
    if not (out / "metrics.json").is_file():
        prune(parent, PruneConfig(method="channel", channel_ratio=0.5, finetune=ft, seed=seed),
              out=out, progress=False)
    rec = json.loads((out / "metrics.json").read_text())
    meta = json.loads((out / "model.json").read_text())
    return {"teacher": teacher, "seed": seed, "accuracy": rec["accuracy"],
            "seconds": meta["training"]["seconds"], "params": rec["params_total"],
            "macs": rec["macs"], "run": str(out)}


def table(parent_acc: float, rows: list[dict], args: argparse.Namespace, minutes: float) -> str:
    lines = [f"# Distillation-aided recovery of cnn channel pruning 0.5, {args.data}", "",
             f"{args.epochs} fine-tune epochs on the first {args.train_subset} training images"
             f"{budget_note(args)}; teacher = the unpruned parent (α = {args.alpha}, "
             f"T = {args.temperature}); seeds {args.seeds}; test split; "
             f"{time.strftime('%Y-%m-%d')}; {minutes:.1f} min.", "",
             f"Original (unpruned) test accuracy: {100 * parent_acc:.2f}%.", "",
             "| fine-tune | seed accuracies (%) | mean (%) | Δ vs original (pts) | sd (pts) | "
             "fine-tune s (mean) |", "|---|---|---|---|---|---|"]
    for teacher in ("none", "parent"):
        accs = [r["accuracy"] for r in rows if r["teacher"] == teacher]
        secs = [r["seconds"] for r in rows if r["teacher"] == teacher]
        mean = statistics.mean(accs)
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        name = "labels only" if teacher == "none" else "teacher: parent"
        lines.append(f"| {name} | {' / '.join(f'{100 * a:.2f}' for a in accs)} | "
                     f"{100 * mean:.2f} | {100 * (mean - parent_acc):+.2f} | {100 * sd:.2f} | "
                     f"{statistics.mean(secs):.0f} |")
    return "\n".join(lines) + "\n"


def budget_note(args: argparse.Namespace) -> str:
    """`` (the study's budget)`` when the fine-tune is the full study's, else nothing."""
    return " (the study's budget)" if (args.epochs, args.train_subset) == (2, 30000) else ""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="fashion-mnist")
    ap.add_argument("--parent", default="benchmarks/out/foundation/runs/cnn")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-subset", type=int, default=30000)
    ap.add_argument("--alpha", type=float, default=0.7)
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--out", default="benchmarks/out/recovery")
    args = ap.parse_args()
    t0 = time.perf_counter()
    out = Path(args.out)
    parent = reuse_or_train("cnn", args.data, Path(args.parent), out / "runs" / "cnn")
    parent_acc = json.loads((parent / "metrics.json").read_text())["accuracy"]
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for teacher in ("none", "parent"):
            rows.append(arm(parent, teacher, seed, args, out / "runs"))
            print(json.dumps(rows[-1]), flush=True)
    md = table(parent_acc, rows, args, (time.perf_counter() - t0) / 60)
    (out / "recovery.json").write_text(json.dumps({"parent_accuracy": parent_acc, "rows": rows},
                                                  indent=2))
    (out / "recovery.md").write_text(stamped(md))
    print(stamped(md))


if __name__ == "__main__":
    main()
