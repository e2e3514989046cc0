"""The model registry: ``@register_model`` and ``create_model("lenet5:width=0.25", ...)``.

Example:
    >>> m = create_model("mlp:width=0.5", input_shape=(1, 8, 8), num_classes=10)
    >>> m.hidden
    (150, 50)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import InputError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable:
    """Register ``fn(*, input_shape, num_classes, **kwargs) -> nn.Module`` under ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS[name] = fn
        return fn

    return deco


def list_models() -> list[str]:
    """Names of the registered models."""
    return sorted(_MODELS)


def scaled(c: int, width: float) -> int:
    """A hidden width scaled by the multiplier: ``max(1, round(c·width))``."""
    return max(1, round(c * width))


@dataclass
class ModelSpec:
    """A zoo name and its keyword options, parsed from ``NAME[:k=v,k=v]``."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def is_user(self) -> bool:
        """Whether this names a user's factory (``SOURCE:FACTORY``) rather than a zoo model."""
        from .user import is_user_spec

        return is_user_spec(self.name)

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """Parse ``"lenet5:width=0.25"`` into ``ModelSpec("lenet5", {"width": 0.25})``, or a
        user's ``FILE.py:FACTORY[:k=v]`` / ``package.module:FACTORY[:k=v]`` into
        ``ModelSpec("/abs/FILE.py:FACTORY", {...})`` (the file must exist).

        Raises:
            InputError: unknown name, a missing source file, a malformed option, or
                ``width <= 0``.
        """
        from .user import canonical_source, is_user_spec, source_file, split_user_spec

        if is_user_spec(text):
            source, factory, rest = split_user_spec(text)
            source_file(source)  # raises InputError: missing file or unimportable module
            name = f"{canonical_source(source)}:{factory}"
        else:
            name, _, rest = text.partition(":")
            if name not in _MODELS:
                raise InputError(f"unknown model {name!r} (known: {', '.join(list_models())}, "
                                 "or FILE.py:FACTORY / package.module:FACTORY)")
        kwargs: dict[str, Any] = {}
        for item in filter(None, rest.split(",")):
            key, eq, value = item.partition("=")
            if not eq or not key:
                raise InputError(f"model option {item!r} is not key=value")
            kwargs[key.strip()] = _number(value.strip())
        spec = cls(name, kwargs)
        spec.validate()
        return spec

    def validate(self) -> None:
        """Check option values that every zoo model shares (a user's options are theirs)."""
        if self.is_user:
            return
        width = self.kwargs.get("width", 1.0)
        if not isinstance(width, int | float) or not width > 0:
            raise InputError(f"width must be > 0 (got {width!r})")

    def __str__(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.kwargs.items())
        return f"{self.name}:{opts}" if opts else self.name


def create_model(spec: str | ModelSpec, *, input_shape: tuple[int, ...],
                 num_classes: int) -> nn.Module:
    """Build a zoo model (or a user's, see :mod:`.user`) for images of ``input_shape``
    (C, H, W) and ``num_classes`` outputs.

    Raises:
        InputError: unknown model or option.
    """
    spec = ModelSpec.parse(spec) if isinstance(spec, str) else spec
    spec.validate()
    if spec.is_user:
        from .user import build_user_model, split_user_spec

        source, factory, _ = split_user_spec(spec.name)
        return build_user_model(source, factory, spec.kwargs, input_shape=tuple(input_shape),
                                num_classes=num_classes)
    try:
        return _MODELS[spec.name](input_shape=tuple(input_shape), num_classes=num_classes,
                                  **spec.kwargs)
    except TypeError as e:
        raise InputError(f"bad option for model {spec.name!r}: {e}") from None


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
