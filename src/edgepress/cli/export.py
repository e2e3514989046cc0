"""``edgepress export``: write a run's deployment file (``model.onnx`` or ``model.pte``)."""

from __future__ import annotations

import argparse

HELP = "write RUN/model.onnx (default) or RUN/model.pte, reproducing the recorded deployment"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    p.add_argument("run", metavar="RUN", help="run directory")
    p.add_argument("--format", default="onnx", choices=["onnx", "pte"],
                   help="deployment format (default: onnx)")


def run(args: argparse.Namespace) -> int:  # noqa: D103
    from ..checkpoint import load_run
    from ..export.deploy import export_run

    run = load_run(args.run)
    path = export_run(run, args.format)
    if args.format == "pte":  # a copy of the file, measured alone, reports the run's counts
        from ..measurement.record import record_twin_counts

        record_twin_counts(run)
    print(f"wrote {path}")
    return 0
