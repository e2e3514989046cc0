"""edgepress: compress neural networks for edge devices and measure what each step really buys.

The public verbs are importable from here; heavy modules load on first use, and
``import edgepress`` never imports onnxruntime or executorch.

Example:
    >>> import edgepress
    >>> rec = edgepress.train("mlp", data="digits", out="runs/mlp", epochs=2)  # doctest: +SKIP
    >>> rows = edgepress.compare(["runs/mlp", "runs/mlp"])  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from .errors import InputError
from .version import __version__

_LAZY = {
    "train": "edgepress.api",
    "import_model": "edgepress.api",
    "load_weights_": "edgepress.weights",
    "measure": "edgepress.measurement",
    "compare": "edgepress.measurement",
    "load_data": "edgepress.data",
    "create_model": "edgepress.zoo",
    "list_models": "edgepress.zoo",
    "load_run": "edgepress.checkpoint",
    "fit": "edgepress.training",
    "TrainConfig": "edgepress.training",
    "export_onnx": "edgepress.export.onnx",
    "prune": "edgepress.prune",
    "prune_": "edgepress.prune",
    "PruneConfig": "edgepress.prune",
    "quantize": "edgepress.quantize",
    "QuantConfig": "edgepress.quantize",
    "distill": "edgepress.distill",
    "distill_": "edgepress.distill",
    "quantize_model": "edgepress.quantize",
    "QuantizedModel": "edgepress.quantize",
    "DistillConfig": "edgepress.distill",
    "structure": "edgepress.structure",
    "structure_": "edgepress.structure",
    "StructureConfig": "edgepress.structure",
    "compress": "edgepress.recipe",
    "study": "edgepress.study",
    "StudyConfig": "edgepress.study",
}

__all__ = ["InputError", "__version__", *_LAZY]


class _Package(types.ModuleType):
    """``edgepress`` itself: keeps the verbs ``prune``, ``quantize``, ``distill``, ``structure``
    and ``study`` reachable as functions after their same-named subpackages are imported (the
    import system would otherwise overwrite ``edgepress.prune`` with the subpackage).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return  # the subpackage stays in sys.modules; the attribute stays the verb
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'edgepress' has no attribute {name!r}")
