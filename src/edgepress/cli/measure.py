"""``edgepress measure``: every figure of one model, as a table and ``metrics.json``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_data, add_runtime

HELP = "measure a run or an ONNX file: size, params, MACs, accuracy, latency, memory, kernels"


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    p.add_argument("target", metavar="RUN|FILE.onnx", help="run directory or ONNX file")
    add_data(p, "the run's data; for a file, fashion-mnist if installed, else digits")
    add_runtime(p)
    p.add_argument("--json", metavar="PATH", default=None,
                   help="write the record here (default: RUN/metrics.json for a run)")


def run(args: argparse.Namespace) -> int:  # noqa: D103
    from ..checkpoint import METRICS, check_output_file, write_json
    from ..measurement import measure
    from ..measurement.record import save_record
    from .tables import record_table, show

    target = Path(args.target)
    out = Path(args.json) if args.json else (target / METRICS if target.is_dir() else None)
    if out is not None:
        check_output_file(out)
    record = measure(target, data=args.data, runtime=args.runtime, threads=args.threads,
                     batch=args.batch)
    show(record_table(record))
    if out is not None:
        (write_json if args.json else save_record)(out, record)  # a run keeps its extras
        print(f"wrote {out}")
    return 0
