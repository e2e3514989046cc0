"""Distillation as a registered step (``step: distill``): the incoming run is the teacher.

Example:
    >>> from edgepress.steps import get_step
    >>> get_step("distill").reads(get_step("distill").parse({"student": "mlp"}))
    ()
"""

from pathlib import Path
from typing import Any

from ..steps.registry import register_step
from .config import DistillStepConfig
from .run import apply_distill, open_teacher


def _reads(config: Any) -> tuple[str, ...]:
    """A student given as a run directory is read too (an output may not be it)."""
    return (config.student,) if Path(config.student).is_dir() else ()


register_step("distill", DistillStepConfig, apply_distill, open=open_teacher, reads=_reads)
