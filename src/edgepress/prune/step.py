"""Pruning as a registered step (``step: prune`` in recipes, the study and the search).

Example:
    >>> from edgepress.steps import get_step
    >>> get_step("prune").config.__name__
    'PruneConfig'
"""

from ..steps.registry import FINETUNE_ALIASES, register_step
from .config import PruneConfig
from .run import apply_prune, open_prune

register_step("prune", PruneConfig, apply_prune, open=open_prune, aliases=FINETUNE_ALIASES)
