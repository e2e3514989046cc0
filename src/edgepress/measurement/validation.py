"""The validation accuracy of a run's deployment, as the runtime executes it: what the study's
``combined`` row and the search's constraint are judged on (never the test split).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def val_accuracy(run_dir: Path, data: Any, n: int | None = None) -> float:
    """Accuracy of the run's deployment (what the runtime executes) on the validation split
    (``data``: a name or a loaded Dataset), or on the first ``n`` images of a fixed shuffle of
    it — the search's cheap screen. On data without labels: the top-1 agreement with the
    original run it descends from (its first ancestor; 1.0 for the original itself).
    """
    import numpy as np

    from ..checkpoint import load_run
    from ..data import Dataset, load_data
    from ..export.deploy import ensure_deployment
    from ..runtimes.onnxruntime import OrtSession
    from .record import predict_session, shape_for

    ds = data if isinstance(data, Dataset) else load_data(data)
    idx = np.arange(len(ds.y_val))
    if n is not None and n < len(idx):
        idx = np.sort(np.random.default_rng(0).permutation(len(idx))[:n])
    run = load_run(run_dir)
    path = ensure_deployment(run, "onnx")
    session = OrtSession(path, os.cpu_count() or 1)
    logits = predict_session(session, shape_for(session, ds.x_val[idx], str(path)))
    if not ds.labelled:  # no labels: top-1 agreement with the original the run descends from
        root = original_of(run_dir)
        ref = logits if root == Path(run_dir).resolve() else _root_logits(root, ds, idx)
        return float((logits.argmax(1) == ref.argmax(1)).mean())
    return float((logits.argmax(1) == ds.y_val[idx]).mean())


def original_of(run_dir: Path) -> Path:
    """The first run of ``run_dir``'s chain of parents (itself when it has none), resolved.

    Raises:
        InputError: a parent recorded but moved or deleted (there is nothing to agree with).
    """
    from ..checkpoint import load_run
    from ..errors import InputError

    run = load_run(run_dir)
    seen = {run.path.resolve()}
    while run.meta.get("provenance", {}).get("parent"):
        parent = run.parent_path()
        if parent is None:
            raise InputError(f"run {run.name!r}: its parent is gone, so agreement on data "
                             "without labels cannot be measured")
        if not Path(parent).is_dir():  # a plain ONNX file quantized: it is the original
            return Path(parent).resolve()
        run = load_run(parent)
        if run.path.resolve() in seen:
            break
        seen.add(run.path.resolve())
    return run.path.resolve()


_ROOTS: dict[tuple, Any] = {}


def _root_logits(root: Path, ds: Any, idx: Any) -> Any:
    """The original's validation logits (cached per run, data and sample)."""
    from ..checkpoint import load_run
    from ..export.deploy import ensure_deployment
    from ..runtimes.onnxruntime import OrtSession
    from .record import predict_session, shape_for

    onnx = root if root.is_file() else root / "model.onnx"
    key = (str(root), onnx.stat().st_mtime if onnx.exists() else 0, ds.name, len(idx),
           int(idx.sum()))
    if key not in _ROOTS:
        path = root if root.is_file() else ensure_deployment(load_run(root), "onnx")
        session = OrtSession(path, os.cpu_count() or 1)
        _ROOTS[key] = predict_session(session, shape_for(session, ds.x_val[idx], str(path)))
    return _ROOTS[key]
