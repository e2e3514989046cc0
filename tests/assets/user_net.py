"""A user's own network, not in the zoo: residual blocks with squeeze-excitation and hardswish.

Used by the tests and by ``benchmarks/bring_your_own.py`` as ``tests/assets/user_net.py:build``.
"""

import torch
from torch import nn


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.pool(x)
        s = torch.relu(self.fc1(s))
        return x * torch.sigmoid(self.fc2(s))


class ResidualSE(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.se = SqueezeExcite(channels)
        self.act = nn.Hardswish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.se(self.bn2(self.conv2(y)))
        return self.act(x + y)


class UserNet(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, width: int, blocks: int):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.Hardswish())
        self.blocks = nn.Sequential(*[ResidualSE(width) for _ in range(blocks)])
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False),
                                  nn.BatchNorm2d(2 * width), nn.Hardswish())
        self.block2 = ResidualSE(2 * width)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(2 * width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block2(self.down(self.blocks(self.stem(x)))))


def build(num_classes: int, input_shape: tuple, width: int = 16, blocks: int = 1) -> nn.Module:
    """The factory edgepress calls: it passes ``num_classes`` and ``input_shape`` (C, H, W)."""
    return UserNet(input_shape[0], num_classes, width, blocks)
