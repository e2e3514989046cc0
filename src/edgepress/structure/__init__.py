"""Structural compression: BN folding, layer merging, low-rank factorisation, block dropping and
weight clustering — each a ``(model, config)`` verb, and a run → run verb that measures the result.

Names load on first use, so validating a :class:`StructureConfig` does not import torch.

Example:
    >>> from edgepress.structure import StructureConfig, structure
    >>> rec = structure("runs/mlp", StructureConfig(method="lowrank", energy=0.8),
    ...                 out="runs/mlp-lr")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "StructureConfig": "config",
    "structure": "run", "structure_": "run", "StructureReport": "run", "REPORT_FILE": "run",
    "METHODS": "methods",
    "replay_": "replay", "TRANSFORMS": "replay",
    "fold_bn_": "fold", "merge_": "merge", "lowrank_": "lowrank", "factorise": "lowrank",
    "block_shapes": "drop", "Codebooks": "cluster", "kmeans_1d": "cluster",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
