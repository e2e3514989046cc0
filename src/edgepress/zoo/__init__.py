"""The model zoo and its registry.

Example:
    >>> from edgepress.zoo import create_model, list_models
    >>> list_models()
    ['cnn', 'lenet5', 'mlp', 'mobilenet-mini']
"""

from . import models as _models  # noqa: F401  (registers the zoo)
from .registry import ModelSpec, create_model, list_models, register_model, scaled

__all__ = ["ModelSpec", "create_model", "list_models", "register_model", "scaled"]
