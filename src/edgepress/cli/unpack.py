"""``edgepress unpack``: an ``.epz`` archive back into a complete, measured run directory."""

from __future__ import annotations

import argparse

HELP = "rebuild a run directory (bit-identical weights, deployment, metrics) from an archive"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    p.add_argument("archive", metavar="FILE.epz", help="archive written by edgepress pack")
    p.add_argument("--out", required=True, metavar="RUN2", help="run directory to write")


def run(args: argparse.Namespace) -> int:  # noqa: D103
    from ..pack import unpack
    from .tables import record_table, show

    record = unpack(args.archive, out=args.out)
    show(record_table(record))
    print(f"wrote {args.out}")
    return 0
