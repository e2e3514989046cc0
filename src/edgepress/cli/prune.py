"""``edgepress prune``: magnitude, L1, N:M or channel pruning of a run, fine-tuned and measured."""

from __future__ import annotations

import argparse

from .options import add_data, add_finetune, add_seed, data_spec

HELP = "prune a run (magnitude, l1, nm, channel), fine-tune it and measure the result"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    p.add_argument("run", metavar="RUN", help="run directory with PyTorch weights")
    p.add_argument("--out", required=True, metavar="RUN2", help="run directory to write")
    p.add_argument("--method", required=True, choices=["magnitude", "l1", "nm", "channel"],
                   help="magnitude/l1: unstructured zeros; nm: N:M pattern; channel: remove "
                   "whole channels")
    p.add_argument("--sparsity", type=float, metavar="F",
                   help="fraction of weights to zero, in [0, 1) (magnitude, l1)")
    p.add_argument("--threshold", type=float, metavar="T",
                   help="zero weights with |w| <= T (magnitude, l1)")
    p.add_argument("--scope", choices=["layer", "global"],
                   help="layer: every layer reaches --sparsity; global: one ranking across "
                   "layers, never emptying one (default: layer)")
    p.add_argument("--nm", metavar="N:M", help="keep N of every M inputs (nm; default: 2:4)")
    p.add_argument("--channel-ratio", type=float, metavar="F",
                   help="fraction of channels / neurons removed per layer, in (0, 1) (channel)")
    p.add_argument("--importance", choices=["l1", "l2", "bn", "data"],
                   help="channel ranking: weight l1 / l2 norms, BatchNorm scales, or data (each "
                   "channel's share of the next layers' output on calibration images) "
                   "(channel; default: l2)")
    p.add_argument("--reconstruct", action="store_true", default=None,
                   help="re-fit the layers after the removed channels by least squares on "
                   "calibration images, to what they gave before (channel; no labels needed)")
    p.add_argument("--l1-lambda", type=float, metavar="L",
                   help="weight of the L1 penalty λ·Σ|w| during fine-tuning (l1; default: 1e-4)")
    p.add_argument("--skip-layers", metavar="A,B", default="",
                   help="comma-separated layer names (or prefixes) to leave unpruned")
    p.add_argument("--schedule", choices=["oneshot", "agp"],
                   help="oneshot: prune then fine-tune with fixed masks; agp: ramp sparsity up "
                   "cubically while fine-tuning (magnitude; default: oneshot)")
    add_finetune(p, "fine-tuning epochs on the train split (default: 2)")
    add_data(p, "the run's data")
    add_seed(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace):  # noqa: ANN201
    """The :class:`PruneConfig` the flags describe (unset flags stay unset)."""
    from ..prune import FinetuneOptions, PruneConfig

    given = {"epochs": args.finetune_epochs, "lr": args.finetune_lr,
             "train_subset": args.train_subset, "teacher": args.finetune_teacher,
             "alpha": args.finetune_alpha, "temperature": args.finetune_temperature}
    ft = FinetuneOptions(**{k: v for k, v in given.items() if v is not None})
    return PruneConfig(
        method=args.method, sparsity=args.sparsity, threshold=args.threshold, scope=args.scope,
        nm=args.nm, channel_ratio=args.channel_ratio, importance=args.importance,
        reconstruct=args.reconstruct,
        l1_lambda=args.l1_lambda, schedule=args.schedule,
        skip_layers=tuple(s.strip() for s in args.skip_layers.split(",") if s.strip()),
        finetune=ft, seed=args.seed)


def layer_table(report: dict):  # noqa: ANN201
    """Per-layer shapes, non-zeros and sparsity from ``prune.json``."""
    from rich.table import Table

    t = Table(title=f"per-layer weights after {report['method']} pruning "
              f"(overall sparsity {report['weight_sparsity']:.2%})")
    for col in ("layer", "shape", "params", "non-zero", "sparsity", "pruned"):
        t.add_column(col, justify="left" if col in ("layer", "shape") else "right")
    for name, row in report["layers"].items():
        t.add_row(name, "×".join(map(str, row["shape"])), f"{row['params']:,}",
                  f"{row['nonzero']:,}", f"{row['sparsity']:.2%}", "yes" if row["pruned"] else "-")
    return t


def storage_line(record: dict) -> str:
    """Whether the compressed sparse file is smaller than the dense deployment file."""
    s = record["sparse_storage"]
    verdict = "smaller" if s["smaller_than_deployment_gzip"] else "NOT smaller"
    return (f"sparse weights file: {s['bytes']:,} B (gzip {s['gzip_bytes']:,} B; encodings "
            f"{s['encodings']}) vs dense ONNX {record['size_bytes']:,} B (gzip "
            f"{record['size_gzip_bytes']:,} B): {verdict} than the gzip'd deployment file")


def run(args: argparse.Namespace) -> int:  # noqa: D103
    import json
    from pathlib import Path

    from ..prune import prune
    from ..prune.run import REPORT_FILE
    from .tables import record_table, show

    config = config_from_args(args)
    record = prune(args.run, config, out=args.out, data=data_spec(args),
                   progress=not args.no_progress)
    show(record_table(record))
    show(layer_table(json.loads((Path(args.out) / REPORT_FILE).read_text())))
    print(storage_line(record))
    print(f"wrote {args.out}")
    return 0
