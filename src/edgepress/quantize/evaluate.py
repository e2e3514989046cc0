"""Run an ONNX model on a split with ONNX Runtime: logits, accuracy and SQNR against a reference.

Quantization decisions (which layers stay float, how sensitive a layer is) are made on the
validation split with exactly the runtime that will deploy the model.

Example:
    >>> ev = OnnxEval("runs/mlp/model.onnx")  # doctest: +SKIP
    >>> ev.accuracy(ds.x_val, ds.y_val)  # doctest: +SKIP
    0.97
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..measurement.stats import sqnr_db


class OnnxEval:
    """An ONNX Runtime session that takes N×C×H×W images and returns N×classes logits."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        from ..runtimes.onnxruntime import OrtSession

        self.path = Path(path)
        self.session = OrtSession(self.path, threads or (os.cpu_count() or 1))

    @property
    def input_name(self) -> str:
        """The model's input name (any name: "input", "pixels", ...)."""
        return self.session.input_name

    @property
    def fixed_batch(self) -> int | None:
        """The batch the model insists on (``None`` when dynamic)."""
        return self.session.fixed_batch

    def shaped(self, x: np.ndarray) -> np.ndarray:
        """``x`` reshaped to the model's own per-example input shape."""
        from ..measurement.record import shape_for

        return shape_for(self.session, x, str(self.path))

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Logits on all of ``x`` (chunked, padded for fixed-batch models)."""
        from ..measurement.record import predict_session

        return predict_session(self.session, self.shaped(x))

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        """Top-1 accuracy on ``(x, y)``."""
        return float((self.logits(x).argmax(1) == y).mean())


def compare_logits(ref: np.ndarray, other: np.ndarray,
                   y: np.ndarray | None) -> dict[str, float]:
    """How far ``other`` is from ``ref``: its score, the loss against ``ref`` in points, and the
    logit SQNR in dB. With labels ``y`` the score is top-1 ``accuracy``; without (``None``) it
    is top-1 ``agreement`` with ``ref``, whose own score is then 1 by definition.

    >>> ref = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    >>> out = np.array([[2.0, 0.1], [0.0, 2.0], [0.0, 1.0], [0.0, 2.0]])
    >>> d = compare_logits(ref, out, None)
    >>> d["agreement"], d["loss_pts"]
    (0.75, 25.0)
    >>> compare_logits(ref, out, np.array([0, 1, 0, 0]))["loss_pts"]  # accuracy 0.75 → 0.50
    25.0
    """
    if y is None:
        agr = float((ref.argmax(1) == other.argmax(1)).mean())
        return {"agreement": agr, "loss_pts": 100.0 * (1.0 - agr),
                "sqnr_db": sqnr_db(ref, other)}
    acc_ref = float((ref.argmax(1) == y).mean())
    acc = float((other.argmax(1) == y).mean())
    return {"accuracy": acc, "loss_pts": 100.0 * (acc_ref - acc), "sqnr_db": sqnr_db(ref, other)}


def score(d: dict) -> float:
    """The score :func:`compare_logits` returned: accuracy, or agreement on unlabelled data."""
    return d["accuracy"] if "accuracy" in d else d["agreement"]
