"""``edgepress measure``: every figure of one model, as a table and ``metrics.json``."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_data, add_output, add_runtime, data_spec

HELP = ("measure a run, an ONNX file or an ExecuTorch program: size, params, MACs, accuracy, "
        "latency, memory, kernels")


def add_arguments(p: argparse.ArgumentParser) -> None:  # noqa: D103
    p.add_argument("target", metavar="RUN|FILE.onnx|FILE.pte",
                   help="run directory, ONNX file or ExecuTorch program (a .pte file is measured "
                        "with --runtime executorch unless --runtime says otherwise)")
    add_data(p, "the run's data; for a file, fashion-mnist if installed, else digits")
    add_runtime(p)
    p.set_defaults(runtime=None)  # None: inferred from the target (runtime_for)
    p.add_argument("--json", metavar="PATH", default=None,
                   help="write the record here (default: RUN/metrics.json for a run)")
    add_output(p)


def run(args: argparse.Namespace) -> int:  # noqa: D103
    from ..checkpoint import METRICS, check_output_file, write_json
    from ..measurement import measure
    from ..measurement.record import save_record
    from .tables import record_table, show, warn_if_never_quiet

    target = Path(args.target)
    out = Path(args.json) if args.json else (target / METRICS if target.is_dir() else None)
    if out is not None:
        check_output_file(out)
    record = measure(target, data=data_spec(args), runtime=args.runtime or runtime_for(target),
                     threads=args.threads, batch=args.batch, progress=not args.no_progress)
    show(record_table(record), wide=args.wide)
    warn_if_never_quiet([record])
    if out is not None:
        (write_json if args.json else save_record)(out, record)  # a run keeps its extras
        print(f"wrote {out}")
    return 0


def runtime_for(target: Path) -> str:
    """The runtime a target is measured with when ``--runtime`` is not given: ``executorch``
    for a ``.pte`` file, else ``onnxruntime``.
    """
    return "executorch" if target.suffix == ".pte" and not target.is_dir() else "onnxruntime"
