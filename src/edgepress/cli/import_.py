"""``edgepress import``: a measured run from a model as it is (a user's pretrained network)."""

from __future__ import annotations

import argparse

from .options import add_data, add_model, add_seed

HELP = "make a measured run from a model without training (your own pretrained network)"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    add_model(p)
    add_data(p, "fashion-mnist if installed, else digits")
    add_seed(p)
    p.add_argument("--out", required=True, metavar="RUN", help="run directory to write")


def run(args: argparse.Namespace) -> int:  # noqa: D103
    from ..api import import_model
    from .options import data_spec
    from .tables import record_table, show

    record = import_model(args.model, data=data_spec(args), out=args.out, weights=args.weights,
                          seed=args.seed)
    show(record_table(record))
    print(f"wrote {args.out}")
    return 0
