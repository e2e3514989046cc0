"""The dict/JSON round-trip every configuration dataclass shares.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class C(JsonConfig):
    ...     x: int = 1
    >>> C.from_dict(C(x=2).to_dict())
    C(x=2)
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, TypeVar

from .errors import InputError

T = TypeVar("T", bound="JsonConfig")


class JsonConfig:
    """Mixin for dataclasses: ``to_dict`` and a strict ``from_dict`` (unknown keys are errors)."""

    config_name = "configuration"  # how error messages name the options

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], d: dict[str, Any]) -> T:
        """Inverse of :meth:`to_dict`; unknown keys are an ``InputError``."""
        unknown = set(d) - {f.name for f in fields(cls)}  # type: ignore[arg-type]
        if unknown:
            raise InputError(f"unknown {cls.config_name} option(s): {', '.join(sorted(unknown))}")
        return cls(**d)


CONFIG_VERSION = 1  # the version of every step config this edgepress writes


def check_version(name: str, version: object, current: int = CONFIG_VERSION) -> None:
    """A step config's ``version`` must be one this edgepress reads (1 .. ``current``).

    >>> check_version("pruning", 1)
    >>> check_version("pruning", 7)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    edgepress.errors.InputError: pruning config version 7 is newer than this edgepress ...
    """
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(f"{name} config version must be a positive integer (got {version!r})")
    if version > current:
        raise InputError(f"{name} config version {version} is newer than this edgepress reads "
                         f"({current}); upgrade edgepress")
