"""``edgepress compare``: several models in one process, latency interleaved, ratios vs the
first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_data, add_output, add_runtime, data_spec

HELP = "measure runs together (latency interleaved) and compare them against the first"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    p.add_argument("targets", nargs="+", metavar="RUN", help="run directories or ONNX files; "
                   "the first is the reference")
    add_data(p, "the first run's data")
    add_runtime(p)
    p.add_argument("--json", metavar="PATH", required=True, help="write the comparison here")
    add_output(p)


def run(args: argparse.Namespace) -> int:  # noqa: D103
    from ..checkpoint import check_output_file, write_json
    from ..errors import InputError
    from ..measurement import compare
    from .tables import comparison_table, show, warn_if_never_quiet

    out = check_output_file(Path(args.json))
    if len(args.targets) < 2:
        raise InputError("compare needs at least two runs")
    rows = compare(args.targets, data=data_spec(args), runtime=args.runtime, threads=args.threads,
                   batch=args.batch, progress=not args.no_progress)
    show(comparison_table(rows, wide=args.wide), wide=args.wide)
    warn_if_never_quiet(rows)
    write_json(out, rows)
    print(f"wrote {out}")
    return 0
