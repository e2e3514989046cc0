"""``edgepress study``: the seed's comparison table, measured honestly, with an HTML report."""

from __future__ import annotations

import argparse

from .options import add_data, add_seed, data_spec

HELP = "train a baseline, apply every compression family and their combination, compare them"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    add_data(p, "fashion-mnist if installed, else digits")
    p.add_argument("--model", default="cnn", metavar="NAME",
                   help="zoo model of the original row (default: cnn)")
    p.add_argument("--quick", action="store_true",
                   help="a training subset and few epochs (minutes; a smoke test, not figures)")
    p.add_argument("--baseline", metavar="RUN", default=None,
                   help="use this trained run as the original row instead of training one")
    p.add_argument("--runtimes", metavar="R,R", default=None,
                   help="runtimes to measure on (default: onnxruntime, and executorch when "
                   "installed)")
    p.add_argument("--recipes", metavar="FILE,FILE", default=None,
                   help="recipe files the combined row chooses among (default: the knee of a "
                   "search whose first trials are the shipped recipes)")
    p.add_argument("--search-seconds", type=float, default=None, metavar="S",
                   help="the combined row's search time (default: 60 with --quick, else 600; "
                   "0: choose among the shipped recipes, no search)")
    add_seed(p)
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    p.add_argument("--wide", action="store_true",
                   help="every table column (default: a layout that fits 80 columns)")
    p.add_argument("--out", required=True, metavar="DIR", help="study directory (resumed if it "
                   "exists)")


def run(args: argparse.Namespace) -> int:  # noqa: D103
    from ..study import StudyConfig, study
    from .tables import comparison_table, show

    config = StudyConfig(model=args.model, data=data_spec(args), quick=args.quick, seed=args.seed,
                         baseline=args.baseline,
                         runtimes=args.runtimes.split(",") if args.runtimes else None,
                         recipes=args.recipes.split(",") if args.recipes else None,
                         search_seconds=args.search_seconds)
    records = study(config, out=args.out, progress=not args.no_progress)
    for rt in dict.fromkeys(r["runtime"] for r in records):
        show(comparison_table([r for r in records if r["runtime"] == rt], wide=args.wide),
             wide=args.wide)
    print(f"wrote {args.out}/study.md, study.csv, study.json, report.html")
    return 0
