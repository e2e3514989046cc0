r"""Recipes: a YAML list of compression steps, validated with line numbers, run and measured.

:func:`compress` runs a recipe on a run directory — each step into ``OUT/steps/NN-step/`` (a
complete, measured run), the last one becoming ``OUT`` itself, with ``OUT/compress.json``
comparing them. Steps come from a registry (:mod:`.steps`): ``prune``, ``quantize``, ``distill``
and, when that package is present, ``structure``; :func:`register_step` adds one.

Example:
    >>> from edgepress.recipe import parse_recipe
    >>> r = parse_recipe("- step: prune\n  method: channel\n  channel_ratio: 0.5\n"
    ...                  "- step: quantize\n  mode: static\n")
    >>> [s.label for s in r.steps]
    ['prune channel', 'quantize static']
"""

from ..steps.registry import StepType, get_step, register_step, step_names
from .order import check_order, input_state
from .parse import Recipe, Step, load_recipe, parse_recipe, shipped_recipes
from .run import compress

__all__ = ["Recipe", "Step", "StepType", "check_order", "compress", "get_step", "input_state",
           "load_recipe", "parse_recipe", "register_step", "shipped_recipes", "step_names"]
