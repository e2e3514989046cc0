"""The model zoo and its registry.

Example:
    >>> from edgepress.zoo import create_model, list_models
    >>> list_models()
    ['cnn', 'efficientnet-lite0', 'lenet5', 'mlp', 'mobilenet-mini']
"""

from . import efficientnet as _efficientnet  # noqa: F401  (registers efficientnet-lite0)
from . import models as _models  # noqa: F401  (registers the zoo)
from .registry import ModelSpec, create_model, list_models, register_model, scaled

__all__ = ["ModelSpec", "create_model", "list_models", "register_model", "scaled"]
