"""The zoo: ``mlp`` (LeNet-300-100), ``lenet5``, ``cnn`` and ``mobilenet-mini``.

Every model takes float32 N×C×H×W images in [0, 1] and returns N×classes logits. Layers live in
named sub-modules (never a bare top-level ``nn.Sequential``, which ExecuTorch's BN fusion rejects).
Every conv keeps enough padding that 8×8 inputs (scikit-learn digits) work too.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .registry import register_model, scaled


class MLP(nn.Module):
    """LeNet-300-100: flatten, 300, 100, classes, with ReLU."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: float = 1.0):
        super().__init__()
        self.hidden = (scaled(300, width), scaled(100, width))
        h1, h2 = self.hidden
        self.flatten = nn.Flatten()
        self.features = nn.Sequential(
            nn.Linear(math.prod(input_shape), h1), nn.ReLU(), nn.Linear(h1, h2), nn.ReLU())
        self.classifier = nn.Linear(h2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.classifier(self.features(self.flatten(x)))


class LeNet5(nn.Module):
    """LeNet-5: conv 5×5 (6), pool, conv 5×5 (16), pool, FC 120, 84, classes; ReLU, pad 2."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: float = 1.0):
        super().__init__()
        c1, c2, f1, f2 = (scaled(c, width) for c in (6, 16, 120, 84))
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], c1, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2))
        h, w = input_shape[1] // 4, input_shape[2] // 4
        self.flatten = nn.Flatten()
        self.classifier = nn.Sequential(
            nn.Linear(c2 * h * w, f1), nn.ReLU(), nn.Linear(f1, f2), nn.ReLU(),
            nn.Linear(f2, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.classifier(self.flatten(self.features(x)))


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1,
            act: type[nn.Module] | None = nn.ReLU) -> nn.Sequential:
    """Conv (no bias) → BN → activation (``act=None`` for a linear projection)."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class CNN(nn.Module):
    """The compute-bound workhorse: conv-BN-ReLU 32 @28, 64 @28, pool, 128 @14, pool, GAP, linear.

    ≈29 M MACs at 28×28, so that compute, not per-operator overhead, decides its latency.
    """

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: float = 1.0):
        super().__init__()
        c1, c2, c3 = (scaled(c, width) for c in (32, 64, 128))
        self.features = nn.Sequential(
            conv_bn(input_shape[0], c1), conv_bn(c1, c2), nn.MaxPool2d(2),
            conv_bn(c2, c3), nn.MaxPool2d(2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(c3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.classifier(self.flatten(self.pool(self.features(x))))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1×1 expand (ReLU6), 3×3 depthwise (ReLU6), 1×1 project; residual add
    when the stride is 1 and the widths match.
    """

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn(cin, hidden, 1, act=nn.ReLU6))
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                   conv_bn(hidden, cout, 1, act=None)]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return x + self.conv(x) if self.use_residual else self.conv(x)


# (expansion, channels, repeats, first stride) per stage
MOBILENET_MINI_STAGES = ((1, 16, 1, 1), (4, 24, 2, 2), (4, 40, 2, 2), (4, 64, 2, 1))


class MobileNetMini(nn.Module):
    """Phone-style net: stem conv, inverted-residual stages (BN, ReLU6, residual adds), 1×1 head,
    GAP, linear. ≈0.1 M parameters and ≈8 M MACs at 28×28.
    """

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: float = 1.0):
        super().__init__()
        cin = scaled(16, width)
        self.stem = conv_bn(input_shape[0], cin, 3, act=nn.ReLU6)
        blocks: list[nn.Module] = []
        for t, c, n, s in MOBILENET_MINI_STAGES:
            cout = scaled(c, width)
            for i in range(n):
                blocks.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        head = scaled(256, width)
        self.head = conv_bn(cin, head, 1, act=nn.ReLU6)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        x = self.head(self.blocks(self.stem(x)))
        return self.classifier(self.flatten(self.pool(x)))


@register_model("mlp")
def mlp(*, input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Module:
    """LeNet-300-100 (784-300-100-10 on Fashion-MNIST)."""
    return MLP(input_shape, num_classes, width)


@register_model("lenet5")
def lenet5(*, input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Module:
    """LeNet-5 with ReLU and max-pool."""
    return LeNet5(input_shape, num_classes, width)


@register_model("cnn")
def cnn(*, input_shape: tuple[int, ...], num_classes: int, width: float = 1.0) -> nn.Module:
    """Three conv-BN-ReLU stages of 32/64/128 channels (≈30 M MACs at 28×28)."""
    return CNN(input_shape, num_classes, width)


@register_model("mobilenet-mini")
def mobilenet_mini(*, input_shape: tuple[int, ...], num_classes: int,
                   width: float = 1.0) -> nn.Module:
    """A MobileNetV2-style phone model (≈0.1 M parameters, ≈8 M MACs at 28×28)."""
    return MobileNetMini(input_shape, num_classes, width)
