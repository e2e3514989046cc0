"""``edgepress search``: the measured, constrained Pareto front over every family (Optuna)."""

from __future__ import annotations

import argparse

from .main import positive_int
from .options import data_spec

HELP = "search every family for the measured Pareto front of size and speed under an " \
       "accuracy budget"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    p.add_argument("run", metavar="RUN", help="the trained run to compress (not changed)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="search directory: front.json, trials.csv, search.md, report.html")
    p.add_argument("--budget-pts", type=float, default=1.0, metavar="P",
                   help="largest validation accuracy loss in points (default: 1.0)")
    p.add_argument("--objectives", default="size,latency", metavar="O,O",
                   help="size and/or latency (default: size,latency)")
    p.add_argument("--runtime", default="onnxruntime", choices=["onnxruntime", "executorch"],
                   help="where latency is timed (default: onnxruntime)")
    p.add_argument("--trials", type=int, default=20, metavar="N",
                   help="the study's total finished trials, every worker together (default 20)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="stop this worker after S seconds")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage (default: sqlite:///DIR/search.db); several workers on "
                        "one postgresql:// URL and --study-name are one search")
    p.add_argument("--study-name", default=None, metavar="NAME",
                   help="the Optuna study (default: edgepress-search)")
    p.add_argument("--data", default=None, metavar="D", help="the data (default: the run's)")
    p.add_argument("--max-epochs", type=positive_int, default=2, metavar="N",
                   help="longest fine-tune a trial may draw (default 2)")
    p.add_argument("--train-subset", type=positive_int, default=None, metavar="N",
                   help="fine-tunes use the first N training images (default: all)")
    p.add_argument("--latency-seconds", type=float, default=1.0, metavar="S",
                   help="timed seconds per model in each trial's session (default 1.0)")
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed (default 0)")
    p.add_argument("--no-progress", action="store_true", help="no progress output")


def run(args: argparse.Namespace) -> int:  # noqa: D103
    from ..search import SearchConfig, search

    config = SearchConfig(budget_pts=args.budget_pts,
                          objectives=tuple(o.strip() for o in args.objectives.split(",")
                                           if o.strip()),
                          runtime=args.runtime, trials=args.trials, timeout=args.timeout,
                          storage=args.storage, study_name=args.study_name, seed=args.seed,
                          data=data_spec(args) if args.data else None,
                          max_epochs=args.max_epochs, train_subset=args.train_subset,
                          latency_seconds=args.latency_seconds)
    summary = search(args.run, config, out=args.out, progress=not args.no_progress)
    print(f"{summary['trials']} trials, {summary['feasible']} within {config.budget_pts} pts; "
          f"front of {len(summary['front'])}")
    if summary["knee"]:
        k = summary["knee"]
        print(f"knee: trial {k['trial']}: {k['size_gzip_bytes']:,} B gzip, "
              f"{k['speedup']:.2f}× [{k['speedup_ci95'][0]:.2f}, {k['speedup_ci95'][1]:.2f}], "
              f"Δ {k['accuracy_delta_pts']:+.2f} pts (test)")
    print(f"wrote {args.out}/front.json, trials.csv, search.md, report.html")
    return 0
