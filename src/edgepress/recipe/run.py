"""``compress(run, recipe, out=...)``: run a recipe's steps in order, measuring after each.

Layout of ``OUT``::

    OUT/steps/01-prune/      a complete run directory per step (measured like every command)
    OUT/steps/02-quantize/   ... its parent is the step before (the input run for the first)
    OUT/step.json            (in each step dir) the step's inputs fingerprint, for resuming
    OUT/model.json ...       the last step's run, re-measured as OUT with the input run as its
                             parent (so fidelity is against the original model)
    OUT/compress.json        the recipe as run and one row per step: params, non-zeros, MACs,
                             bytes, gzip bytes, accuracy, latency, fidelity, time, reused or not

Everything is validated first (recipe keys and values, step order, the input run, the output
path, the data), so bad input fails before any work. Resume: a step directory whose inputs —
the parent's fingerprint and the step's resolved config — are unchanged is reused, so an
interrupted or extended recipe redoes only what changed. ``compress.json`` is written last: a
directory without it is unfinished.

Example:
    >>> s = compress("runs/mlp", "recipes/prune-then-int8.yaml", out="runs/mlp-c")  # doctest: +SKIP
    >>> [r["step"] for r in s["steps"]]  # doctest: +SKIP
    ['prune', 'quantize']
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ..checkpoint import (
    METRICS,
    MODEL_JSON,
    ONNX,
    WEIGHTS,
    Run,
    check_output_dir,
    load_run,
    relative_parent,
    write_json,
)
from ..errors import InputError
from ..version import __version__
from .order import check_order, input_state
from .parse import Recipe, Step, load_recipe

STEPS_DIR = "steps"
STEP_FILE = "step.json"
SUMMARY = "compress.json"
ROW_FIELDS = ("params_total", "params_nonzero", "macs", "size_bytes", "size_gzip_bytes",
              "accuracy", "accuracy_ci95", "agreement", "latency_ms", "fidelity")
_STEP_DIR = re.compile(r"^\d\d-[\w-]+$")


def compress(run: str | os.PathLike | Run, recipe: str | os.PathLike | Recipe, *,
             out: str | os.PathLike, data: str | None = None,
             progress: bool = True, timed: bool = True) -> dict[str, Any]:
    """Run a recipe on a run directory; write ``out`` and ``out/compress.json``.

    Args:
        run: the input run directory (not changed).
        recipe: a recipe file (see :mod:`.parse`) or a parsed :class:`Recipe`.
        out: the output directory: the final run, with every step's run under ``steps/``.
        data: the data every step uses (default: each parent run's).
        progress: progress lines and the steps' progress bars.
        timed: measure every step (and ``out``) fully; ``False`` records only what needs no
            timing (``figures.json``) — the study times each row once, in its compare.

    Returns:
        The ``compress.json`` dict: ``recipe``, ``input``, ``steps`` (one row per step) and
        ``final`` (the row of ``out`` itself).

    Raises:
        InputError: a bad recipe (file and line named), an order that cannot work, a missing
            input run, an output path that is a file or the input run, unknown data.
    """
    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    final = check_output_dir(out)
    parent = run if isinstance(run, Run) else load_run(run)
    _validate(rec, parent, final, data)
    t0 = time.perf_counter()
    before = _previous_summary(final)
    (final / SUMMARY).unlink(missing_ok=True)  # OUT is unfinished until it is written again
    rows, last, key = _run_steps(rec, parent, final / STEPS_DIR, data, progress, timed)
    final_key = hashlib.sha256(f"{key} {parent.path.resolve()}".encode()).hexdigest()
    summary: dict[str, Any] = {"recipe": rec.to_dict(), "input": _input_row(parent), "data": data,
               "steps": rows, "final": None, "final_key": final_key,
               "edgepress_version": __version__}
    if (all(r["reused"] for r in rows) and before.get("final_key") == final_key
            and _finished(final, timed)):
        summary["final"] = before["final"]  # OUT already is this recipe's finished run
    else:
        summary["final"] = _finish(final, last, parent, summary, timed)
    summary["seconds"] = round(time.perf_counter() - t0, 2)
    write_json(final / SUMMARY, summary)
    return summary


def _validate(rec: Recipe, parent: Run, final: Path, data: str | None) -> None:
    """Everything that can be checked before the first step runs."""
    _check_paths(parent.path, final)
    check_order(rec, input_state(parent))
    if data is not None:
        from ..data import load_data

        load_data(data)  # an unknown name fails now, not after the first step


def _run_steps(rec: Recipe, parent: Run, steps_dir: Path, data: str | None,
               progress: bool, timed: bool) -> tuple[list[dict[str, Any]], Path, str]:
    """Run (or reuse) every step; return the rows, the last step's directory and its key."""
    names = [f"{s.index:02d}-{s.name}" for s in rec.steps]
    _drop_stale(steps_dir, names)
    key, prev, rows = _fingerprint(parent.path), parent.path, []
    for n, (step, name) in enumerate(zip(rec.steps, names, strict=True), start=1):
        key = _step_key(key, step, data)
        rows.append(_run_step(step, prev, steps_dir / name, key, data, progress,
                              (n, len(names)), timed))
        prev = steps_dir / name
    return rows, prev, key


def _check_paths(src: Path, final: Path) -> None:
    s, f = src.resolve(), final.resolve()
    if f == s or f in s.parents:
        raise InputError(f"--out {str(final)!r} would overwrite the input run {str(src)!r}")
    if s in f.parents:
        raise InputError(f"--out {str(final)!r} lies inside the input run {str(src)!r}")


def _drop_stale(steps_dir: Path, names: list[str]) -> None:
    """Remove step directories of an earlier, different recipe (``NN-step`` names only)."""
    if not steps_dir.is_dir():
        return
    for d in steps_dir.iterdir():
        if d.is_dir() and _STEP_DIR.match(d.name) and d.name not in names:
            shutil.rmtree(d)


def _previous_summary(final: Path) -> dict[str, Any]:
    try:
        return json.loads((final / SUMMARY).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _fingerprint(run_dir: Path) -> str:
    """SHA-256 of what defines a run: its ``model.json``, weights, and (without weights) ONNX."""
    h = hashlib.sha256()
    for name in (MODEL_JSON, WEIGHTS) if (run_dir / WEIGHTS).is_file() else (MODEL_JSON, ONNX):
        path = run_dir / name
        if path.is_file():
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):  # noqa: B023
                    h.update(block)
    return h.hexdigest()


def _step_key(parent_key: str, step: Step, data: str | None) -> str:
    """A step's inputs: the parent's key, the step and its resolved config, the data."""
    blob = json.dumps([parent_key, step.name, step.config.to_dict(), data], sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _finished(d: Path, timed: bool) -> bool:
    """A finished run directory: measured as asked (a timed record serves an untimed ask)."""
    from ..produce import has_record

    return (d / MODEL_JSON).is_file() and ((d / METRICS).is_file() if timed else has_record(d))


def _reusable(d: Path, key: str, timed: bool) -> bool:
    try:
        done = json.loads((d / STEP_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return done.get("key") == key and _finished(d, timed)


def _say(progress: bool, text: str) -> None:
    if progress:
        from rich.console import Console

        Console(stderr=True).print(text)


def _run_step(step: Step, parent: Path, d: Path, key: str, data: str | None, progress: bool,
              position: tuple[int, int], timed: bool) -> dict[str, Any]:
    """Run (or reuse) one step; ``position`` is (n, of): its place among the steps run now
    (a study may start a recipe from a row that already made its first step).
    """
    from ..produce import step_record

    head = f"[bold]step {position[0]}/{position[1]}[/bold] {step.label} → {d}"
    reused = _reusable(d, key, timed)
    t0 = time.perf_counter()
    if reused:
        _say(progress, f"{head}: inputs unchanged, reused")
    else:
        _say(progress, head)
        assert step.kind.apply is not None  # an unavailable step fails validation
        step.kind.run(parent, step.config, out=d, data=data, progress=progress, timed=timed)
        write_json(d / STEP_FILE, {"key": key, "step": step.name,
                                   "config": step.config.to_dict(), "parent": str(parent),
                                   "data": data})
    record = step_record(d)
    return {"index": step.index, "step": step.name, "label": step.label, "line": step.line,
            "dir": str(Path(STEPS_DIR) / d.name), "config": step.config.to_dict(),
            "reused": reused, "seconds": round(time.perf_counter() - t0, 2),
            **{k: record.get(k) for k in ROW_FIELDS}}


def _input_row(parent: Run) -> dict[str, Any]:
    """The input run's figures, from its ``metrics.json`` when it has one (it is not
    re-measured: the input run is left untouched).
    """
    from ..records import read_record

    row: dict[str, Any] = {"run": str(parent.path), "model": parent.model_name}
    try:
        record = read_record(parent.file(METRICS))
    except InputError:
        return {**row, "measured": False}
    return {**row, "measured": True, **{k: record.get(k) for k in ROW_FIELDS}}


def _finish(final: Path, last: Path, parent: Run, summary: dict, timed: bool) -> dict[str, Any]:
    """Make ``final`` the last step's run (re-measured there, with the input run as parent)."""
    from ..produce import FIGURES, measure_in_place, step_record

    tmp = final / f".final.{os.getpid()}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:  # the copy too: an interrupt during it must not leave the half-made copy behind
        shutil.copytree(last, tmp, ignore=shutil.ignore_patterns(STEP_FILE),
                        copy_function=shutil.copy2)
        meta = json.loads((tmp / MODEL_JSON).read_text())
        prov = meta.setdefault("provenance", {})
        prov.update(parent=str(parent.path.resolve()),
                    parent_relative=relative_parent(parent.path, final),
                    last_step=str(last.resolve()),
                    command=" ".join(["edgepress", *sys.argv[1:]]),
                    config={"recipe": summary["recipe"]})
        write_json(tmp / MODEL_JSON, meta)
        _touch_deployment(tmp)
        for stale in (METRICS, FIGURES):  # the last step's records, made with another parent
            (tmp / stale).unlink(missing_ok=True)
        record = measure_in_place(tmp, final, timed=timed)
        for k, v in step_record(last).items():  # the step's extra fields (sparsity, packed...)
            record.setdefault(k, v)
        write_json(tmp / (METRICS if timed else FIGURES), record)
        for old in final.iterdir():  # the previous final run's files go; steps/ stays
            if old.name not in (STEPS_DIR, tmp.name):
                shutil.rmtree(old) if old.is_dir() else old.unlink()
        for new in tmp.iterdir():
            os.replace(new, final / new.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"dir": str(final), **{k: record.get(k) for k in ROW_FIELDS}}


def _touch_deployment(run_dir: Path) -> None:
    """Keep the copied deployment newer than the weights, so measuring does not re-export it
    (a re-export of an int8 run would re-calibrate: the same model, but wasted time).
    """
    for name in (ONNX, "model.pte"):
        p = run_dir / name
        if p.is_file():
            os.utime(p)
