"""``edgepress train``: train a zoo model with its default recipe into a run directory."""

from __future__ import annotations

import argparse

from .main import positive_int
from .options import add_data, add_model, add_seed

HELP = "train a zoo model (or your own) with its default recipe"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    add_model(p)
    add_data(p, "fashion-mnist if installed, else digits")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the model's recipe)")
    add_seed(p)
    p.add_argument("--batch-size", type=positive_int, default=None, help="training batch size")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    p.add_argument("--train-subset", type=positive_int, default=None,
                   help="train on the first N training images only (quick runs)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory to write")


def run(args: argparse.Namespace) -> int:  # noqa: D103
    from ..api import train
    from .options import data_spec
    from .tables import record_table, show

    record = train(args.model, data=data_spec(args), out=args.out, epochs=args.epochs,
                   seed=args.seed, batch_size=args.batch_size, lr=args.lr,
                   train_subset=args.train_subset, weights=args.weights,
                   progress=not args.no_progress)
    show(record_table(record))
    print(f"wrote {args.out}")
    return 0
