"""Structural compression as a registered step (``step: structure``).

Example:
    >>> from edgepress.steps import get_step
    >>> get_step("structure").config.__name__
    'StructureConfig'
"""

from ..steps.registry import register_step
from .config import StructureConfig
from .run import apply_structure, open_structure

register_step("structure", StructureConfig, apply_structure, open=open_structure)
