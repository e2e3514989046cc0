"""PyTorch → one-file ONNX (opset 18, dynamic batch), checked and verified against torch.

An export that disagrees with the PyTorch model on real inputs is an error, not a warning.

Example:
    >>> import numpy as np, tempfile
    >>> from edgepress.zoo import create_model
    >>> m = create_model("mlp", input_shape=(1, 8, 8), num_classes=10)
    >>> path = tempfile.mkdtemp() + "/m.onnx"
    >>> export_onnx(m, path, input_shape=(1, 8, 8), check_inputs=np.random.rand(4, 1, 8, 8)
    ...             .astype("float32")) <= 1e-4
    True
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..checkpoint import atomic_path

OPSET = 18
PARITY_ATOL = 1e-4
LOGIT_SCALE = 10.0  # logits up to this are held to PARITY_ATOL; larger ones to atol·|z|/10
INPUT_NAME, OUTPUT_NAME = "input", "logits"


class ExportError(RuntimeError):
    """The exported model failed its check or disagrees with PyTorch."""


def export_onnx(model: nn.Module, path: str | os.PathLike, *, input_shape: tuple[int, ...],
                check_inputs: np.ndarray, atol: float = PARITY_ATOL) -> float:
    """Export ``model`` to a single ONNX file with a dynamic batch, then verify it.

    The file is checked with ``onnx.checker`` and run in ONNX Runtime on ``check_inputs``
    (real images) at batch sizes 1 and ``len(check_inputs)``; the largest absolute logit
    difference to PyTorch must be ``<= atol`` (times |z|/10 when the largest PyTorch logit |z|
    on those images exceeds 10: float32 rounding grows with the values).

    Returns:
        The largest absolute difference seen.

    Raises:
        ExportError: the checker fails or the outputs differ by more than ``atol``.
    """
    import onnx

    model = model.eval()
    # a fresh dense tensor: numpy may keep odd strides on size-1 dims, which dynamo would trace
    # into an as_strided view (hiding the classifier's Gemm from the MAC count)
    example = torch.from_numpy(np.ascontiguousarray(check_inputs[:2], dtype=np.float32)).clone(
        memory_format=torch.contiguous_format)
    with atomic_path(Path(path)) as tmp:
        _dynamo_export(model, example, tmp)
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except onnx.checker.ValidationError as e:
            raise ExportError(f"exported ONNX fails onnx.checker: {e}") from None
        diff, largest = parity(model, tmp, check_inputs)
        tol = atol * max(1.0, largest / LOGIT_SCALE)  # logits above 10: relative (float32)
        if not diff <= tol:
            raise ExportError(f"exported ONNX disagrees with PyTorch: max |Δlogit| = {diff:.3g} "
                              f"> {tol:.3g}")
    return diff


def parity(model: nn.Module, onnx_path: str | os.PathLike, x: np.ndarray) -> tuple[float, float]:
    """Largest |ONNX Runtime logits − PyTorch logits| on ``x`` at batch 1 and full batch, and
    the largest |PyTorch logit| on ``x`` (what the difference is relative to).
    """
    from ..runtimes.onnxruntime import inference_session

    sess = inference_session(onnx_path, threads=1)
    name = sess.get_inputs()[0].name
    x = np.ascontiguousarray(x, dtype=np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    full = sess.run(None, {name: x})[0]
    one = sess.run(None, {name: x[:1]})[0]
    return (float(max(np.abs(full - ref).max(), np.abs(one - ref[:1]).max())),
            float(np.abs(ref).max()))


def _dynamo_export(model: nn.Module, example: torch.Tensor, path: Path) -> None:
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    quiet = io.StringIO()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, (example,), dynamo=True, external_data=False, opset_version=OPSET,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},), verbose=False, optimize=True)
    if program is None:
        raise ExportError("torch.onnx.export returned no program")
    program.save(str(path), external_data=False)
