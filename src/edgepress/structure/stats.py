"""What a PyTorch model costs and scores, counted the same way before and after a change.

MACs are counted with forward hooks on Conv / Linear layers at batch 1 (every output element
costs ``fan-in / groups`` multiply-accumulates), as the ONNX counter does for Conv / Gemm / MatMul.

Example:
    >>> from edgepress.zoo import create_model
    >>> count_macs(create_model("mlp", input_shape=(1, 8, 8), num_classes=10), (1, 8, 8))
    50200
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..data import Dataset
from ..training import accuracy
from .surgery import count_params


def _layer_macs(layer: Any, out: torch.Tensor) -> int:
    if isinstance(layer, nn.Linear):
        return out.numel() * layer.in_features
    fan_in = layer.in_channels // layer.groups * math.prod(layer.kernel_size)
    return out.numel() * fan_in


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass of one image."""
    total = [0]
    hooks = [m.register_forward_hook(lambda mod, _i, o: total.__setitem__(
        0, total[0] + _layer_macs(mod, o)))
        for m in model.modules() if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d)]
    was_training = model.training
    try:
        model.eval()(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return int(total[0])


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's tensors as stored (parameters and buffers, fp32 weights file)."""
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def summary(model: nn.Module, data: Dataset) -> dict[str, Any]:
    """Parameters (all / non-zero), MACs, weight bytes and validation accuracy (in PyTorch; the
    test accuracy is the deployment's, measured by the runner: ``deployed``).
    """
    params, nonzero = count_params(model)
    return {"params": params, "params_nonzero": nonzero,
            "macs": count_macs(model, data.input_shape), "weight_bytes": weight_bytes(model),
            "layers": sum(1 for m in model.modules()
                          if isinstance(m, nn.Linear | nn.Conv2d | nn.BatchNorm2d)),
            "val_accuracy": accuracy(model, data.x_val, data.y_val)}
