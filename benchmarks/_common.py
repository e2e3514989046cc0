"""Helpers shared by the benchmark scripts (they run as ``python benchmarks/X.py``, so this file
is importable as ``_common``)."""

from __future__ import annotations

from pathlib import Path

from edgepress import train
from edgepress.checkpoint import load_run


def data_of(run_dir: Path) -> str | None:
    """The data a run was trained on, or None when ``run_dir`` is not a run."""
    return load_run(run_dir).meta["data"] if (run_dir / "model.json").is_file() else None


def reuse_or_train(model: str, data: str, given: Path, mine: Path, *,
                   epochs: int | None = None) -> Path:
    """``given`` when it is a run trained on ``data`` (e.g. the foundation benchmark's), else
    ``mine``, trained here with the model's default recipe (``epochs`` overrides) unless an
    earlier invocation already did.
    """
    if data_of(given) == data:
        return given
    if data_of(mine) != data:
        print(f"training {model} on {data} into {mine}", flush=True)
        train(model, data=data, out=mine, epochs=epochs, progress=False)
    return mine


def provenance() -> str:
    """One line: the commit measured, the measurement protocol's commit (the last change to
    ``src/edgepress/measurement``), and the host (CPU, ISA), for every results file.
    """
    import subprocess

    from edgepress.measurement.machine import machine_info

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, timeout=30,
                                  cwd=Path(__file__).parent).stdout.strip() or "unknown"
        except OSError:
            return "unknown"

    head = git("rev-parse", "--short", "HEAD")
    dirty = " (with uncommitted changes)" if git("status", "--porcelain", "--", "../src") not in (
        "", "unknown") else ""
    protocol = git("log", "-1", "--format=%h", "--", "../src/edgepress/measurement")
    m = machine_info()
    return (f"Measured at commit {head}{dirty}; measurement protocol of commit {protocol}; "
            f"host {m['cpu']}, {m['cores']} cores, ISA {', '.join(m['isa'])}.")


def stamped(md: str) -> str:
    """``md`` with the :func:`provenance` line after its first line (the title): the commit as
    it was when the script started (a long benchmark must not name a later commit).
    """
    first, _, rest = md.partition("\n")
    return f"{first}\n\n{_AT_START}\n{rest}"


_AT_START = provenance()  # taken when a benchmark script imports this module, i.e. at its start
