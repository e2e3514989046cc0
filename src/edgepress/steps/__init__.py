"""One step abstraction for every technique: a registered config + ``apply``, one runner.

Example:
    >>> sorted(step_names())[:3]
    ['distill', 'prune', 'quantize']
"""

from .base import StepContext, StepResult, StepRun
from .registry import StepType, get_step, open_torch, register_step, step_names
from .runner import run_step, step_meta, write_result

__all__ = ["StepContext", "StepResult", "StepRun", "StepType", "get_step", "open_torch",
           "register_step", "run_step", "step_meta", "step_names", "write_result"]
