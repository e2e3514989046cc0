"""The five methods behind one signature, dispatched through :data:`METHODS`.

Each takes ``(model, config, ctx)``, changes the model in place and returns a
:class:`MethodResult`: per-method details for ``structure.json``, the structural transform to
record in ``model.json`` (None when the layers kept their shapes) and the fine-tuning record.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..data import Dataset
from ..training import TrainConfig
from .cluster import Codebooks, clusterable
from .config import StructureConfig
from .drop import block_shapes, choose, drop_blocks_, score_blocks, val_loss
from .finetune import finetune
from .fold import fold_bn_, leftover_bns
from .lowrank import lowrank_
from .merge import merge_


@dataclass
class Context:
    """What a method may use besides the model and its config."""

    data: Dataset
    recipe: TrainConfig | None = None
    progress: bool = True
    model_name: str = "the model"
    teacher: nn.Module | None = None  # distil from it while fine-tuning (finetune_teacher)


@dataclass
class MethodResult:
    """What a method did (details), what to replay (transform) and how it fine-tuned."""

    details: dict[str, Any]
    transform: dict[str, Any] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    message: str = ""


def _fold(model: nn.Module, config: StructureConfig, ctx: Context) -> MethodResult:
    pairs = fold_bn_(model)
    left = leftover_bns(model)
    message = (f"folded {len(pairs)} BatchNorm layer(s)" if pairs else "nothing to fold: no "
               "BatchNorm directly follows a conv / linear layer")
    if left:
        message += f"; {len(left)} BatchNorm layer(s) left (no layer right before them)"
    return MethodResult(
        details={"folded": [{"layer": a, "bn": b} for a, b in pairs], "bn_left": left,
                 "nothing_to_fold": not pairs},
        transform={"kind": "fold", "pairs": pairs} if pairs else None, message=message)


def _merge(model: nn.Module, config: StructureConfig, ctx: Context) -> MethodResult:
    r = merge_(model)
    if r["nothing_to_merge"]:
        message = ("nothing to merge: every pair of adjacent layers has a non-linearity or a "
                   "BatchNorm between them, and there are no no-op layers")
    else:
        grew = sum(p["params_after"] - p["params_before"] for p in r["merged"])
        message = (f"merged {len(r['merged'])} layer pair(s) (parameters {grew:+,}), removed "
                   f"{len(r['removed'])} no-op layer(s)")
    details = {k: v for k, v in r.items() if k != "ops"}
    return MethodResult(details=details, message=message,
                        transform={"kind": "merge", "ops": r["ops"]} if r["ops"] else None)


def _lowrank(model: nn.Module, config: StructureConfig, ctx: Context) -> MethodResult:
    rows = lowrank_(model, config)
    ranks = {n: row["rank"] for n, row in rows.items() if row["factorised"]}
    skipped = [n for n, row in rows.items() if not row["factorised"]]
    training = (finetune(model, ctx.data, config, ctx.recipe, progress=ctx.progress,
                         teacher=ctx.teacher) if ranks
                else {"config": None, "history": [], "seconds": 0.0,
                      "skipped": "nothing was factorised"})
    listed = ", ".join(f"{n}: r={r}" for n, r in ranks.items()) or "none"
    message = (f"factorised {len(ranks)} layer(s) ({listed})"
               + (f"; skipped {len(skipped)} that would not shrink: {', '.join(skipped)}"
                  if skipped else ""))
    return MethodResult(details={"layers": rows, "ranks": ranks, "skipped": skipped},
                        transform={"kind": "lowrank", "ranks": ranks} if ranks else None,
                        training=training, message=message)


def _drop_blocks(model: nn.Module, config: StructureConfig, ctx: Context) -> MethodResult:
    shapes = block_shapes(model, ctx.data.input_shape, ctx.model_name)
    droppable = [n for n, row in shapes.items() if row["droppable"]]
    choose(shapes, dict.fromkeys(droppable, {"val_loss": 0.0}), config.blocks,
           config.block_names, ctx.model_name)  # bad input fails before any scoring
    base_loss, base_acc = val_loss(model, ctx.data)
    scores = score_blocks(model, ctx.data, droppable)
    dropped = choose(shapes, scores, config.blocks, config.block_names, ctx.model_name)
    drop_blocks_(model, dropped)
    training = finetune(model, ctx.data, config, ctx.recipe, progress=ctx.progress,
                        teacher=ctx.teacher)
    blocks = {n: {**row, **scores.get(n, {}), "dropped": n in dropped}
              for n, row in shapes.items()}
    return MethodResult(
        details={"baseline_val_loss": base_loss, "baseline_val_accuracy": base_acc,
                 "blocks": blocks, "dropped": dropped, "droppable": droppable},
        transform={"kind": "drop_blocks", "blocks": dropped}, training=training,
        message=f"dropped {', '.join(dropped)} (validation loss when bypassed: "
                f"{', '.join(format(scores[n]['val_loss'], '.4f') for n in dropped)}; "
                f"with every block {base_loss:.4f})")


def _cluster(model: nn.Module, config: StructureConfig, ctx: Context) -> MethodResult:
    layers = clusterable(model, config.skip_layers or ())
    books = Codebooks(layers, config.clusters)
    training = finetune(model, ctx.data, config, ctx.recipe, progress=ctx.progress,
                        teacher=ctx.teacher, loss_fn=books.loss_fn, after_step=books.write_,
                        params=books.trainable(model))
    books.write_()
    rows = books.report(int(config.bits or 0))
    worst = max((r["distinct_nonzero"] for r in rows.values()), default=0)
    return MethodResult(
        details={"bits": config.bits, "k": config.clusters, "layers": rows,
                 "max_distinct_nonzero": worst},
        training=training,
        message=f"clustered {len(rows)} layer(s) to k = {config.clusters} shared values "
                f"(at most {worst} distinct non-zero values per layer)")


METHODS: dict[str, Callable[[nn.Module, StructureConfig, Context], MethodResult]] = {
    "fold": _fold, "merge": _merge, "lowrank": _lowrank, "drop-blocks": _drop_blocks,
    "cluster": _cluster,
}
