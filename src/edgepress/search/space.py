"""The search space: a conditional, define-by-run recipe over every family, in a valid order.

A trial draws, in this order (each a step of the recipe, or none):

1. **pruning** — ``channel`` (a channel ratio), ``magnitude`` (unstructured global sparsity),
   ``nm`` (2:4), or none;
2. **structure** — ``lowrank`` (an energy), ``drop-blocks`` (only for models with residual
   blocks), ``cluster`` (bits), or none;
3. **quantization** — ``static`` int8 (granularity, and per-layer float fallback under an
   accuracy budget), ``weight-only`` low-bit (bits), or none;
4. **fine-tune** for the steps that train — epochs, and ``teacher: none | parent`` (recovery by
   distillation from the unpruned parent).

The recipe is the trial's product: :func:`recipe_of` turns the parameters into the same
YAML list ``edgepress compress --recipe`` runs, so a front point is rebuilt exactly.

Example:
    >>> import optuna
    >>> t = optuna.trial.FixedTrial({"prune": "channel", "channel_ratio": 0.5,
    ...                              "structure_plain": "none", "quantize": "static",
    ...                              "granularity": "channel", "float_fallback": False,
    ...                              "finetune_epochs": 2, "teacher": "parent"})
    >>> [s["step"] for s in suggest_recipe(t, residual=False)]
    ['prune', 'quantize']
"""

from __future__ import annotations

from typing import Any

import yaml

PRUNE = ("none", "channel", "magnitude", "nm")
STRUCTURE = ("none", "lowrank", "drop-blocks", "cluster")
QUANTIZE = ("none", "static", "weight-only")
EPOCHS = (1, 2, 4)


def suggest_recipe(trial: Any, *, residual: bool, max_epochs: int | None = None,
                   train_subset: int | None = None) -> list[dict[str, Any]]:
    """Draw one recipe from ``trial`` (an Optuna trial, or ``FixedTrial`` to replay one).

    Args:
        trial: where the choices come from.
        residual: whether the model has residual blocks (``drop-blocks`` is offered only then).
        max_epochs: cap on the fine-tune epochs offered (the search's budget).
        train_subset: fine-tune on the first N training images only (written into the recipe,
            so the recipe still rebuilds the trial exactly).
    """
    steps: list[dict[str, Any]] = []
    epochs = [e for e in EPOCHS if max_epochs is None or e <= max_epochs] or [1]
    trains = False
    prune = trial.suggest_categorical("prune", PRUNE)
    if prune == "channel":
        steps.append({"step": "prune", "method": "channel",
                      "channel_ratio": trial.suggest_float("channel_ratio", 0.25, 0.75,
                                                           step=0.125)})
        trains = True
    elif prune == "magnitude":
        steps.append({"step": "prune", "method": "magnitude", "scope": "global",
                      "sparsity": trial.suggest_float("sparsity", 0.5, 0.95, step=0.01)})
        trains = True
    elif prune == "nm":
        steps.append({"step": "prune", "method": "nm", "nm": "2:4"})
        trains = True
    choices = STRUCTURE if residual else tuple(s for s in STRUCTURE if s != "drop-blocks")
    structure = trial.suggest_categorical("structure" if residual else "structure_plain",
                                          choices)
    if structure == "lowrank":
        steps.append({"step": "structure", "method": "lowrank",
                      "energy": trial.suggest_float("energy", 0.6, 0.95, step=0.05)})
        trains = True
    elif structure == "drop-blocks":
        steps.append({"step": "structure", "method": "drop-blocks",
                      "blocks": trial.suggest_int("blocks", 1, 2)})
        trains = True
    elif structure == "cluster":
        steps.append({"step": "structure", "method": "cluster",
                      "bits": trial.suggest_int("cluster_bits", 3, 6)})
        trains = True
    quant = trial.suggest_categorical("quantize", QUANTIZE)
    if quant == "static":
        step: dict[str, Any] = {"step": "quantize", "mode": "static",
                                "granularity": trial.suggest_categorical(
                                    "granularity", ("channel", "tensor"))}
        if trial.suggest_categorical("float_fallback", (False, True)):
            step["accuracy_budget"] = 0.5  # keep the most sensitive layers float
        steps.append(step)
    elif quant == "weight-only":
        steps.append({"step": "quantize", "mode": "weight-only",
                      "bits": trial.suggest_categorical("weight_bits", (2, 4))})
    if trains:
        ep = trial.suggest_categorical("finetune_epochs", tuple(epochs))
        teacher = trial.suggest_categorical("teacher", ("none", "parent"))
        for s in steps:
            if s["step"] in ("prune", "structure"):
                s["finetune_epochs"] = ep
                s["finetune_teacher"] = teacher
                if train_subset is not None:
                    s["train_subset"] = train_subset
    return steps


def recipe_of(steps: list[dict[str, Any]]) -> str:
    """The YAML recipe text of ``steps`` (what ``edgepress compress --recipe`` reads).

    >>> print(recipe_of([{"step": "quantize", "mode": "static"}]).strip())
    - step: quantize
      mode: static
    """
    return yaml.safe_dump(steps, sort_keys=False)


def params_of_recipe(steps: list[dict[str, Any]], *, residual: bool) -> dict[str, Any] | None:
    """The trial parameters that draw exactly ``steps`` (to enqueue a shipped recipe), or
    ``None`` when the space cannot express it (a distillation step, a fixed sparsity off the
    grid, ...).

    >>> params_of_recipe([{"step": "quantize", "mode": "static", "granularity": "channel"}],
    ...                  residual=False)["quantize"]
    'static'
    """
    p: dict[str, Any] = {"prune": "none", ("structure" if residual else "structure_plain"): "none",
                         "quantize": "none"}
    epochs = teacher = None
    for s in steps:
        kind = s.get("step")
        ep, te = s.get("finetune_epochs"), s.get("finetune_teacher", "none")
        if kind == "prune" and s.get("method") == "channel":
            p.update(prune="channel", channel_ratio=float(s["channel_ratio"]))
        elif kind == "prune" and s.get("method") == "magnitude":
            p.update(prune="magnitude", sparsity=round(float(s["sparsity"]), 2))
        elif kind == "prune" and s.get("method") == "nm" and s.get("nm", "2:4") == "2:4":
            p.update(prune="nm")
        elif kind == "structure" and s.get("method") == "cluster":
            p.update({("structure" if residual else "structure_plain"): "cluster",
                      "cluster_bits": int(s.get("bits", 5))})
        elif kind == "structure" and s.get("method") == "lowrank" and "energy" in s:
            p.update({("structure" if residual else "structure_plain"): "lowrank",
                      "energy": float(s["energy"])})
        elif kind == "quantize" and s.get("mode") == "static":
            p.update(quantize="static", granularity=s.get("granularity", "channel"),
                     float_fallback=s.get("accuracy_budget") is not None)
        elif kind == "quantize" and s.get("mode") == "weight-only":
            p.update(quantize="weight-only", weight_bits=int(s.get("bits", 4)))
        else:
            return None
        if kind in ("prune", "structure"):
            epochs, teacher = ep, te
    if epochs is not None or any(s.get("step") in ("prune", "structure") for s in steps):
        p.update(finetune_epochs=_nearest(int(epochs or 2)), teacher=teacher or "none")
    return p


def _nearest(epochs: int) -> int:
    return min(EPOCHS, key=lambda e: (abs(e - epochs), -e))


def yaml_steps(text: str | None) -> list[dict]:
    """The steps of a recipe's YAML text (``[]`` for none)."""
    return list(yaml.safe_load(text) or []) if text else []


def step_label(step: dict) -> str:
    """``prune channel 0.5``, ``quantize static``, ...

    >>> step_label({"step": "prune", "method": "channel", "channel_ratio": 0.5})
    'prune channel 0.5'
    """
    kind = step.get("step", "?")
    what = step.get("method") or step.get("mode") or ""
    arg = next((step[k] for k in ("channel_ratio", "sparsity", "energy", "bits", "blocks", "nm")
                if k in step), None)
    return " ".join(str(x) for x in (kind, what, arg) if x not in ("", None))
