"""``edgepress structure``: fold, merge, low-rank, drop blocks or cluster a run, then measure it."""

from __future__ import annotations

import argparse

from .options import add_data, add_finetune, add_seed, data_spec

HELP = ("restructure a run (fold BN, merge layers, low-rank, drop blocks, cluster weights), "
        "fine-tune it and measure the result")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory with PyTorch weights")
    p.add_argument("--out", required=True, metavar="RUN2", help="run directory to write")
    p.add_argument("--method", required=True,
                   choices=["fold", "merge", "lowrank", "drop-blocks", "cluster"],
                   help="fold: BatchNorm into the layer before it (exact); merge: consecutive "
                   "linear / 1×1 conv layers into one, no-op layers out (exact); lowrank: "
                   "truncated SVD into two thin layers; drop-blocks: bypass the least important "
                   "residual blocks; cluster: k-means weight sharing (2**bits values per layer)")
    rank = p.add_mutually_exclusive_group()
    rank.add_argument("--rank", type=int, metavar="R",
                      help="lowrank: the same rank for every layer, 1 <= R < min(m, n)")
    rank.add_argument("--energy", type=float, metavar="E",
                      help="lowrank: per-layer rank keeping this fraction of Σσ², in (0, 1] "
                      "(default: 0.9)")
    p.add_argument("--blocks", type=int, metavar="K",
                   help="drop-blocks: drop the K blocks whose bypass costs the least validation "
                   "loss (default: 1)")
    p.add_argument("--block-names", metavar="A,B",
                   help="drop-blocks: drop exactly these blocks (e.g. blocks.2,blocks.4)")
    p.add_argument("--bits", type=int, metavar="B",
                   help="cluster: 2**B shared values per layer, B in 1..8 (default: 5)")
    p.add_argument("--skip-layers", metavar="A,B",
                   help="lowrank / cluster: layer names (or prefixes) to leave as they are")
    add_finetune(p, "lowrank / drop-blocks / cluster: fine-tuning epochs on the train split "
                   "(default: 2)")
    add_data(p, "the run's data")
    add_seed(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _names(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(s.strip() for s in text.split(",") if s.strip())


def config_from_args(args: argparse.Namespace):  # noqa: ANN201
    """The :class:`StructureConfig` the flags describe (unset flags stay unset)."""
    from ..structure import StructureConfig

    return StructureConfig(
        method=args.method, rank=args.rank, energy=args.energy, blocks=args.blocks,
        block_names=_names(args.block_names), bits=args.bits,
        skip_layers=_names(args.skip_layers), finetune_epochs=args.finetune_epochs,
        finetune_lr=args.finetune_lr, train_subset=args.train_subset,
        finetune_teacher=args.finetune_teacher, finetune_alpha=args.finetune_alpha,
        finetune_temperature=args.finetune_temperature, seed=args.seed)


def before_after_table(report: dict):  # noqa: ANN201
    """Parameters, MACs, bytes and accuracy before and after, from ``structure.json``."""
    from rich.table import Table

    t = Table(title=f"structure --method {report['method']}: before → after")
    for col in ("", "before", "after", "after / before"):
        t.add_column(col, justify="left" if not col else "right")
    b, a = report["before"], report["after"]
    for key, label in (("params", "parameters"), ("params_nonzero", "non-zero parameters"),
                       ("macs", "MACs"), ("weight_bytes", "weight bytes"),
                       ("layers", "conv / linear / BN layers")):
        ratio = f"{a[key] / b[key]:.3f}" if b[key] else "-"
        t.add_row(label, f"{b[key]:,}", f"{a[key]:,}", ratio)
    t.add_row("val accuracy (PyTorch)", f"{b['val_accuracy']:.4f}", f"{a['val_accuracy']:.4f}",
              f"{100 * (a['val_accuracy'] - b['val_accuracy']):+.2f} pts")
    tb, ta = ((side.get("deployed") or {}).get("accuracy") for side in (b, a))
    if tb is not None and ta is not None:
        t.add_row("test accuracy (deployed)", f"{tb:.4f}", f"{ta:.4f}",
                  f"{100 * (ta - tb):+.2f} pts")
    return t


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from ..structure import REPORT_FILE, structure
    from .tables import record_table, show

    config = config_from_args(args)
    record = structure(args.run, config, out=args.out, data=data_spec(args),
                       progress=not args.no_progress)
    report = json.loads((Path(args.out) / REPORT_FILE).read_text())
    show(record_table(record))
    show(before_after_table(report))
    print(report["message"])
    print(f"wrote {args.out}")
    return 0
