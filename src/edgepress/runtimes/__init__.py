"""Runtimes behind one small interface (:class:`Runtime`, :class:`Session`)."""

from .base import Runtime, Session, get_runtime, register_runtime, runtime_names

__all__ = ["Runtime", "Session", "get_runtime", "register_runtime", "runtime_names"]
