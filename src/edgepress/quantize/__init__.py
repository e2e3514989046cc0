"""Quantization: correct affine int8 on ONNX Runtime, QAT, sensitivity, mixed precision, low-bit.

One public verb, :func:`quantize` ``(target, config, out=...)``, and its validated
:class:`QuantConfig`. The pieces are importable on their own: :mod:`.affine` (the arithmetic),
:mod:`.ptq` (static / dynamic int8 with ONNX Runtime), :mod:`.qat`, :mod:`.sensitivity`,
:mod:`.mixed`, :mod:`.lowbit` / :mod:`.weight_only` (packed low-bit weights), :mod:`.profile`
(per-operator explanations) and :mod:`.deploy` (the int8 exporter ``edgepress export`` uses).

Importing this package does not import onnxruntime.

Example:
    >>> from edgepress.quantize import QuantConfig, quantize
    >>> cfg = QuantConfig(mode="static")
    >>> rec = quantize("runs/cnn", cfg, out="runs/cnn-int8")  # doctest: +SKIP
"""

from __future__ import annotations

from .config import QuantConfig
from .run import QuantizedModel, quantize, quantize_model

__all__ = ["QuantConfig", "QuantizedModel", "quantize", "quantize_model"]
