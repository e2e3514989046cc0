"""The study's rows, each defined as recipe steps (validated like any recipe) and a sentence
saying how it was made; and the training budget applied to every step.

Example:
    >>> steps = row_steps("pruned", "cnn")
    >>> [s.label for s in steps]
    ['prune channel']
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..recipe import Recipe, Step, parse_recipe
from .config import Budget

# row -> (recipe text, definition shown in the report). {model} is the zoo model's name.
ROWS: dict[str, tuple[str, str]] = {
    "pruned": ("- step: prune\n  method: channel\n  channel_ratio: 0.5\n  importance: l2\n"
               "  finetune_epochs: 4\n",
               "channel pruning: half of every layer's channels removed (L2-norm ranking, "
               "dependency graph), then fine-tuned on train"),
    "quantized": ("- step: quantize\n  mode: static\n  granularity: channel\n",
                  "static int8 (ONNX QDQ): per-channel symmetric weights, asymmetric uint8 "
                  "activations calibrated (min-max) on 512 training images"),
    "distilled": ("- step: distill\n  student: same:width=0.5\n  temperature: 4.0\n  alpha: 0.7\n"
                  "  cache_teacher: true\n",
                  "knowledge distillation: a half-width student of the same family trained on "
                  "the original's soft labels (T = 4, α = 0.7); the same student trained without "
                  "a teacher is in its baseline/ folder"),
}
# the structured method that suits each model family
STRUCTURED: dict[str, tuple[str, str]] = {
    "mobilenet-mini": ("- step: structure\n  method: drop-blocks\n  blocks: 1\n",
                       "block dropping: the residual block whose bypass hurts validation loss "
                       "least is removed, then fine-tuned"),
    "mlp": ("- step: structure\n  method: lowrank\n  energy: 0.9\n",
            "low-rank factorisation: each hidden Linear split into two by truncated SVD keeping "
            "90% of the spectral energy, then fine-tuned"),
    "default": ("- step: structure\n  method: lowrank\n  energy: 0.9\n",
                "low-rank factorisation: each layer split into two by truncated SVD keeping 90% "
                "of the spectral energy (convs: k×k to r channels, then 1×1), then fine-tuned"),
}
DEFINITIONS = {
    "original": "the baseline: the zoo model trained with its default recipe (fp32 ONNX)",
    "combined": "among the shipped recipes, the smallest gzip'd deployment whose validation "
                "accuracy is within 1 point of the original's",
}


# rows that another model family makes differently
FOR_MODEL: dict[tuple[str, str], tuple[str, str]] = {
    ("pruned", "efficientnet-lite0"): (
        "- step: prune\n  method: channel\n  channel_ratio: 0.25\n  importance: data\n"
        "  reconstruct: true\n  skip_layers: [" + ", ".join(
            ["head", "classifier", "stem", "blocks.0.conv.1",
             *(f"blocks.{i}.conv.2" for i in range(1, 16))]) + "]\n  finetune_epochs: 0\n",
        "channel pruning: a quarter of every MBConv block's hidden channels removed, ranked by "
        "their share of the projection's output on the calibration photographs, the layers "
        "after them re-fitted by least squares (the residual stream, head and classifier kept; "
        "no fine-tune: distilling on the fine-tuning photographs lowers agreement on the "
        "evaluation ones)"),
    ("quantized", "efficientnet-lite0"): (
        "- step: quantize\n  mode: static\n  granularity: channel\n  bias_correction: true\n",
        "static int8 (ONNX QDQ): per-channel symmetric weights, asymmetric uint8 activations "
        "calibrated (min-max) on the 512 calibration photographs, each layer's bias absorbing "
        "the mean shift its rounded weights cause on them (bias correction: top-1 agreement "
        "86.98% → 92.61% on ONNX Runtime, AVX2 host)"),
}


def row_steps(row: str, model: str, budget: Budget | None = None) -> list[Step]:
    """The validated steps of ``row`` for zoo model ``model`` under ``budget``."""
    text = (FOR_MODEL[(row, model)] if (row, model) in FOR_MODEL
            else STRUCTURED.get(model, STRUCTURED["default"]) if row == "structured"
            else ROWS[row])[0]
    return with_budget(parse_recipe(text, source=f"<study row {row}>"), budget).steps


def definition(row: str, model: str) -> str:
    """How ``row`` is made, in one sentence."""
    if (row, model) in FOR_MODEL:
        return FOR_MODEL[(row, model)][1]
    if row == "structured":
        return STRUCTURED.get(model, STRUCTURED["default"])[1]
    return ROWS[row][1] if row in ROWS else DEFINITIONS[row]


def with_budget(recipe: Recipe, budget: Budget | None) -> Recipe:
    """``recipe`` with every step's training cut to ``budget`` (never raised above the step's)."""
    if budget is None:
        return recipe
    steps = [dataclasses.replace(s, config=_budgeted(s.config, budget)) for s in recipe.steps]
    return dataclasses.replace(recipe, steps=steps)


def _budgeted(config: Any, b: Budget) -> Any:
    """A step config with its training capped by the budget: a fine-tune (any family, through
    the shared :class:`~edgepress.finetune.Finetune` shape) or a distilled student's training.
    """
    from ..distill.config import DistillConfig
    from ..finetune import finetune_of, with_finetune

    ft = finetune_of(config)
    if ft is not None:
        teacher = b.finetune_teacher if (b.finetune_teacher and ft.teacher == "none") \
            else ft.teacher
        return with_finetune(config, dataclasses.replace(
            ft, epochs=ft.epochs if b.finetune_epochs is None else min(ft.epochs,
                                                                       b.finetune_epochs),
            train_subset=ft.train_subset or b.finetune_subset or b.train_subset,
            teacher=teacher))
    if isinstance(config, DistillConfig):  # a fresh student: both arms
        return dataclasses.replace(config, epochs=_cap(config.epochs, b.student_epochs),
                                   train_subset=config.train_subset or b.train_subset)
    return config


def _cap(value: int | None, limit: int | None) -> int | None:
    if limit is None:
        return value
    return limit if value is None else min(value, limit)
