"""Quantization as a registered step (``step: quantize``): QAT needs a PyTorch parent, the other
modes take any fp32 deployment (a PyTorch run or a plain ONNX file); every mode leaves a
quantized deployment.

Example:
    >>> from edgepress.steps import get_step
    >>> step = get_step("quantize")
    >>> step.needs(step.parse({"mode": "static"})), step.makes(step.parse({"mode": "static"}))
    ('fp32', 'quantized')
"""

from typing import Any

from ..steps.registry import register_step
from .config import QuantConfig
from .run import apply_quantize, open_quantize


def _needs(config: Any) -> str:
    return "torch" if config.mode == "qat" else "fp32"


# the shared fine-tune keys name QAT's own fields
ALIASES = {"finetune_epochs": "epochs", "finetune_lr": "lr", "finetune_teacher": "teacher",
           "finetune_alpha": "alpha", "finetune_temperature": "temperature"}

register_step("quantize", QuantConfig, apply_quantize, open=open_quantize, needs=_needs,
              makes="quantized", aliases=ALIASES)
