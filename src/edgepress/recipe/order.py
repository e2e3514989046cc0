r"""Which step orders work: check a recipe against its input run before anything runs.

Each step needs a PyTorch fp32 model (``torch``: prune, distill, structure, QAT) or an fp32
deployment (``fp32``: static, dynamic and weight-only quantization, which also take a run made
from a plain ONNX file), and leaves a PyTorch model or a quantized deployment. After
quantization, the fp32 weights kept beside the int8 ONNX file no longer describe what runs, so a
later PyTorch step would silently throw the quantization away, and a second quantization is
refused: quantize is always the last step.

Example:
    >>> from edgepress.recipe.parse import parse_recipe
    >>> r = parse_recipe("- step: quantize\n  mode: static\n- step: prune\n"
    ...                  "  method: magnitude\n  sparsity: 0.5\n", "r.yaml")
    >>> check_order(r, State("torch", "mlp", "the input run 'mlp'"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edgepress.errors.InputError: r.yaml line 3: step 2 (prune magnitude) needs a PyTorch model...
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..checkpoint import Run, load_run
from ..errors import InputError
from .parse import Recipe, Step


@dataclass
class State:
    """What the next step receives: ``torch``, ``onnx`` (fp32 ONNX only) or ``quantized``;
    the zoo architecture name (None for a foreign ONNX model); who made it (for messages).
    """

    kind: str
    zoo: str | None
    source: str
    from_input: bool = True


def input_state(run: Run) -> State:
    """The state of a recipe's input run."""
    precision = (run.meta.get("deployment") or {}).get("precision", "fp32")
    kind = "quantized" if precision != "fp32" else ("torch" if run.has_weights else "onnx")
    return State(kind, run.meta["architecture"].get("zoo"), f"the input run {run.name!r}")


def check_order(recipe: Recipe, state: State) -> list[State]:
    """Check every step against what the step before it leaves.

    Returns:
        The state after each step.

    Raises:
        InputError: naming the recipe file, the step's line and an order that works.
    """
    after = []
    for step in recipe.steps:
        try:
            _check(step, step.kind.needs(step.config), state)
            zoo = _zoo_after(step, state)
        except InputError as e:
            raise InputError(f"{recipe.source} line {step.line}: {e}") from None
        state = State(step.kind.makes(step.config), zoo,
                      f"step {step.index} ({step.label}, line {step.line})", from_input=False)
        after.append(state)
    return after


def _check(step: Step, need: str, state: State) -> None:
    me = f"step {step.index} ({step.label})"
    if state.kind == "quantized":
        if not state.from_input:
            fix = ("keep one quantize step, and put it last" if need == "fp32" else
                   "put quantize last (e.g. prune → quantize, distill → quantize)")
            what = "needs an fp32 model" if need == "fp32" else "needs a PyTorch model"
            raise InputError(f"{me} {what}, but {state.source} leaves only a quantized ONNX "
                             f"deployment: {fix}")
        raise InputError(f"{me} needs an fp32 model, but {state.source} is already quantized: "
                         f"start from its fp32 parent")
    if need == "torch" and state.kind != "torch":
        raise InputError(f"{me} needs a PyTorch model, but {state.source} has none (it came "
                         f"from an ONNX file): only quantize steps (static, dynamic, "
                         f"weight-only) apply to it")


def _zoo_after(step: Step, state: State) -> str | None:
    """The zoo architecture after the step (a distillation replaces it by the student's)."""
    resolve = getattr(step.config, "resolve_student", None)
    if resolve is None:
        return state.zoo
    from ..zoo import ModelSpec

    spec = resolve(state.zoo)
    if Path(spec).is_dir():
        return load_run(spec).meta["architecture"].get("zoo")
    return ModelSpec.parse(spec).name
