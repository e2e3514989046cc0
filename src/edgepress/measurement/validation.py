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
    it — the search's cheap screen.
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
    path = ensure_deployment(load_run(run_dir), "onnx")
    session = OrtSession(path, os.cpu_count() or 1)
    logits = predict_session(session, shape_for(session, ds.x_val[idx], str(path)))
    return float((logits.argmax(1) == ds.y_val[idx]).mean())
