"""Your own model on your own images (issue 17): a residual network with squeeze-excitation and
hardswish that is not in the zoo (``tests/assets/user_net.py:build``), trained on a three-channel
image folder built from Fashion-MNIST (PNG files, resized to 32×32 on load), then channel
pruning 0.5 with a distillation-aided fine-tune, and static int8 — compared on ONNX Runtime and
ExecuTorch/XNNPACK.

Usage (nothing else running):
    python benchmarks/bring_your_own.py [--train 12000] [--test 2000] [--epochs 8]
        [--out benchmarks/out/byo]

The folder's images are the first ``--train`` training and ``--test`` test images of
Fashion-MNIST, each tinted by a colour drawn from its index (not its class), so that the three
channels differ. Prints Markdown and writes OUT/byo.md and .json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _common import stamped

from edgepress import compare, train
from edgepress.data import load_data
from edgepress.measurement import measured_rows
from edgepress.prune import FinetuneOptions, PruneConfig, prune
from edgepress.quantize import QuantConfig, quantize

FACTORY = str(Path(__file__).resolve().parents[1] / "tests" / "assets" / "user_net.py") + \
    ":build:width=16"


def write_folder(root: Path, n_train: int, n_test: int) -> Path:
    from PIL import Image

    if (root / "done").is_file():
        return root
    ds = load_data("fashion-mnist")
    x = np.concatenate([ds.x_train, ds.x_val])
    y = np.concatenate([ds.y_train, ds.y_val])
    rng = np.random.default_rng(0)
    for split, (xs, ys) in (("train", (x[:n_train], y[:n_train])),
                            ("test", (ds.x_test[:n_test], ds.y_test[:n_test]))):
        for i, (img, c) in enumerate(zip(xs, ys, strict=True)):
            d = root / split / f"{int(c):02d}"
            d.mkdir(parents=True, exist_ok=True)
            tint = rng.uniform(0.5, 1.0, 3)
            rgb = (img[0][..., None] * tint * 255).astype(np.uint8)
            Image.fromarray(rgb).save(d / f"{i:05d}.png")
    (root / "done").write_text("ok\n")
    return root


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=12000)
    ap.add_argument("--test", type=int, default=2000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--out", default="benchmarks/out/byo")
    args = ap.parse_args()
    t0 = time.perf_counter()
    out = Path(args.out)
    folder = write_folder(out / "images", args.train, args.test)
    data = f"imagefolder:{folder.resolve()}@32x32"
    runs = out / "runs"
    base = runs / "user-net"
    if not (base / "metrics.json").is_file():
        train(FACTORY, data=data, out=base, epochs=args.epochs, lr=5e-3, progress=False)
    half = runs / "user-net-half"
    if not (half / "metrics.json").is_file():
        prune(base, PruneConfig(method="channel", channel_ratio=0.5,
                                finetune=FinetuneOptions(epochs=2, teacher="parent")),
              out=half, progress=False)
    q = {}
    for name, parent in (("int8", base), ("half-int8", half)):
        q[name] = runs / f"user-net-{name}"
        if not (q[name] / "metrics.json").is_file():
            quantize(parent, QuantConfig(mode="static", granularity="channel"), out=q[name],
                     progress=False)
    variants = {"original": base, "pruned 0.5": half, "int8": q["int8"],
                "pruned 0.5 + int8": q["half-int8"]}
    rows = {}
    for rt in ("onnxruntime", "executorch"):
        rows[rt] = measured_rows(compare(list(variants.values()), runtime=rt,
                                         variants=list(variants)))
        print(f"compared on {rt}", flush=True)
    md = table(rows, data, (time.perf_counter() - t0) / 60)
    (out / "byo.json").write_text(json.dumps(rows, indent=2))
    (out / "byo.md").write_text(stamped(md))
    print(stamped(md))


def table(rows: dict[str, list[dict]], data: str, minutes: float) -> str:
    ref = rows["onnxruntime"][0]
    lines = ["# Your own model on your own images", "",
             f"Model `{Path(FACTORY.split(':')[0]).name}:build:width=16` (residual + "
             f"squeeze-excitation + hardswish, not in the zoo) on `{data.split('/')[-1]}`: "
             f"{ref['n_test']} test images, 3×32×32, 10 classes; 1 thread, batch 1; "
             f"{time.strftime('%Y-%m-%d')}; {minutes:.1f} min.", "",
             "| variant | runtime | params | MACs | gzip KB | accuracy (Δ pts [95% CI]) | "
             "median ms | speed-up [95% CI] | kernels |", "|---|---|---|---|---|---|---|---|---|"]
    for rt, recs in rows.items():
        for r in recs:
            lo, hi = r["speedup_ci95"]
            d_lo, d_hi = r["accuracy_delta_ci95_pts"]
            kernels = ", ".join(f"{k}×{v}" for k, v in sorted(r["kernels"].items())[:6])
            lines.append(
                f"| {r['variant']} | {rt} | {r['params_total']:,} | {r['macs']:,} | "
                f"{r['size_gzip_bytes'] / 1024:.1f} | {100 * r['accuracy']:.2f} "
                f"({r['accuracy_delta_pts']:+.2f} [{d_lo:+.2f}, {d_hi:+.2f}]) | "
                f"{r['latency_ms']['median']:.4f} | {r['speedup']:.2f} [{lo:.2f}, {hi:.2f}] "
                f"({r['latency_change']}) | {kernels} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
