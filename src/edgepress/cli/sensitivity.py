"""``edgepress sensitivity``: per-layer pruning sensitivity of a run (table + PNG plot)."""

from __future__ import annotations

import argparse

from .options import add_data, data_spec

HELP = "prune one layer at a time to several sparsities; validation accuracy as a table and plot"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    p.add_argument("run", metavar="RUN", help="run directory with PyTorch weights")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for sensitivity.json, sensitivity.md and sensitivity.png")
    p.add_argument("--sparsities", default="0.3,0.5,0.7,0.8,0.9,0.95", metavar="F,F",
                   help="comma-separated sparsities in [0, 1) (default: 0.3,0.5,0.7,0.8,0.9,0.95)")
    p.add_argument("--skip-layers", metavar="A,B", default="", help="layers not to scan")
    add_data(p, "the run's data")


def run(args: argparse.Namespace) -> int:  # noqa: D103
    from pathlib import Path

    from ..errors import InputError
    from ..prune.sensitivity import scan_markdown, scan_run

    try:
        sparsities = tuple(float(s) for s in args.sparsities.split(",") if s.strip())
    except ValueError:
        raise InputError(f"--sparsities must be numbers like 0.5,0.9 (got "
                         f"{args.sparsities!r})") from None
    skip = tuple(s.strip() for s in args.skip_layers.split(",") if s.strip())
    scan = scan_run(args.run, out=args.out, data=data_spec(args), sparsities=sparsities,
                    skip_layers=skip)
    print(scan_markdown(scan))
    print(f"wrote {Path(args.out) / 'sensitivity.md'}, sensitivity.json, sensitivity.png")
    return 0
