"""``--method drop-blocks``: bypass the residual blocks the model misses least.

Only a block whose output has its input's shape can be bypassed (the next block still gets what
it expects): in ``mobilenet-mini`` the stride-1 blocks with equal widths, the ones with a residual
add. Each such block is scored by the **validation** loss of the model with that block alone
replaced by the identity; the ``--blocks K`` with the lowest loss (the least important) are
deleted, then the model is fine-tuned on train. ``--block-names`` drops chosen blocks instead
(still scored, for the record).

Example:
    >>> from edgepress.zoo import create_model
    >>> m = create_model("mobilenet-mini", input_shape=(1, 8, 8), num_classes=10)
    >>> [n for n, row in block_shapes(m, (1, 8, 8)).items() if row["droppable"]]
    ['blocks.0', 'blocks.2', 'blocks.4', 'blocks.6']
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import Dataset
from ..errors import InputError
from ..training import predict
from .surgery import remove_module_

CONTAINER = "blocks"  # the zoo's name for the Sequential of residual blocks


def _container(model: nn.Module, model_name: str) -> nn.Sequential:
    blocks = getattr(model, CONTAINER, None)
    if not isinstance(blocks, nn.Sequential) or len(blocks) == 0:
        raise InputError(f"--method drop-blocks needs a model made of residual blocks (e.g. "
                         f"mobilenet-mini); {model_name} has none")
    return blocks


def block_shapes(model: nn.Module, input_shape: tuple[int, ...],
                 model_name: str = "this model") -> dict[str, dict[str, Any]]:
    """``{"blocks.i": {"in_shape", "out_shape", "droppable"}}`` from one forward pass."""
    blocks = _container(model, model_name)
    seen: dict[str, dict[str, Any]] = {}
    hooks = [b.register_forward_hook(
        lambda _m, i, o, key=f"{CONTAINER}.{k}": seen.__setitem__(
            key, {"in_shape": list(i[0].shape[1:]), "out_shape": list(o.shape[1:])}))
        for k, b in blocks.named_children()]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    for row in seen.values():
        row["droppable"] = row["in_shape"] == row["out_shape"]
    return seen


def val_loss(model: nn.Module, data: Dataset) -> tuple[float, float]:
    """Cross-entropy and accuracy of ``model`` on the validation split."""
    logits = torch.from_numpy(predict(model, data.x_val))
    y = torch.from_numpy(data.y_val)
    return float(F.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


def score_blocks(model: nn.Module, data: Dataset, names: list[str]) -> dict[str, dict[str, float]]:
    """Validation loss / accuracy with each named block (alone) replaced by the identity."""
    blocks = _container(model, "the model")
    scores = {}
    for name in names:
        key = name.rpartition(".")[2]
        block = blocks._modules[key]
        blocks._modules[key] = nn.Identity()
        try:
            loss, acc = val_loss(model, data)
        finally:
            blocks._modules[key] = block
        scores[name] = {"val_loss": loss, "val_accuracy": acc}
    return scores


def _normalise(name: str) -> str:
    return name if name.startswith(f"{CONTAINER}.") else f"{CONTAINER}.{name}"


def choose(shapes: dict[str, dict[str, Any]], scores: dict[str, dict[str, float]],
           blocks: int | None, names: tuple[str, ...] | None, model_name: str) -> list[str]:
    """The blocks to drop: the ``blocks`` lowest-loss ones, or exactly ``names``.

    Raises:
        InputError: more blocks than can be bypassed, an unknown block, or a named block whose
            input and output shapes differ.
    """
    droppable = [n for n, row in shapes.items() if row["droppable"]]
    if names is not None:
        chosen = [_normalise(n) for n in names]
        for n in chosen:
            if n not in shapes:
                raise InputError(f"--block-names: {model_name} has no block {n!r} "
                                 f"(blocks: {', '.join(shapes)})")
            row = shapes[n]
            if not row["droppable"]:
                raise InputError(
                    f"block {n} cannot be dropped: its input and output shapes differ "
                    f"({'×'.join(map(str, row['in_shape']))} → "
                    f"{'×'.join(map(str, row['out_shape']))}); droppable: {', '.join(droppable)}")
        return list(dict.fromkeys(chosen))
    k = int(blocks or 1)
    if k > len(droppable):
        raise InputError(f"--blocks {k}: {model_name} has only {len(droppable)} block(s) whose "
                         f"input and output shapes match ({', '.join(droppable) or 'none'})")
    return sorted(droppable, key=lambda n: scores[n]["val_loss"])[:k]


def drop_blocks_(model: nn.Module, names: list[str]) -> None:
    """Delete the named blocks (the rest keep their names)."""
    for name in names:
        remove_module_(model, name)


def replay_drop_blocks_(model: nn.Module, transform: dict) -> None:
    """Delete the recorded blocks again."""
    drop_blocks_(model, list(transform["blocks"]))
