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

    path = export_run(load_run(args.run), args.format)
    print(f"wrote {path}")
    return 0
