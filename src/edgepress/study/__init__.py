"""The study: edgepress's main job — the seed's comparison table, measured honestly.

Example:
    >>> StudyConfig(model="mobilenet-mini").model
    'mobilenet-mini'
"""

from .config import QUICK, Budget, StudyConfig
from .run import ROWS, shipped_recipes, study

__all__ = ["QUICK", "ROWS", "Budget", "StudyConfig", "shipped_recipes", "study"]
