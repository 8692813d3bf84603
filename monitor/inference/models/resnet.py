"""ResNet18 baseline on a one-channel feature image (../shared/docs/models.md §7.10, §8).

The standard ImageNet ResNet18 (He et al. 2016, torchvision's layout) with a 1-channel stem: 7×7 stride-2 conv,
BN, ReLU, 3×3 stride-2 max-pool, BasicBlock stages [2, 2, 2, 2] of widths 64/128/256/512 (stride 2 from the
second stage on, 1×1 conv + BN downsample), global average pool and a linear head. Written out here so nothing
depends on torchvision. The input is the (B, F, T) MFCC or log-mel, treated as a (B, 1, F, T) image; any F and
T work (global pooling), even the 13 × T MFCC, which the stride-32 body reduces to 1 × ⌈T/32⌉.

With 6 classes it has 11,173,318 parameters: torchvision's 11,689,512 minus 6,272 for the 1-channel stem and
minus the 1000-way head's 513,000, plus 3,078 for the 6-way head. (The IETMA paper reports 10.66 M for its
ResNet18, a configuration it does not describe.)

Example:
    >>> import torch
    >>> ResNet18(num_classes=5).eval()(torch.zeros(2, 13, 64)).shape
    torch.Size([2, 5])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    """Two 3×3 conv-BN layers with ReLU between and after the residual add; 1×1 conv + BN shortcut on a shape change."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + residual)


class ResNet18(nn.Module):
    """ResNet18: features (B, F, T) → logits (B, num_classes)."""

    def __init__(
        self, num_classes: int = 6, widths: Sequence[int] = (64, 128, 256, 512), depths: Sequence[int] = (2, 2, 2, 2)
    ) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, widths[0], 7, stride=2, padding=3, bias=False)
        self.stem_bn = nn.BatchNorm2d(widths[0])
        blocks: list[nn.Module] = []
        in_channels = widths[0]
        for stage, (width, depth) in enumerate(zip(widths, depths)):
            for i in range(depth):
                blocks.append(BasicBlock(in_channels, width, stride=2 if stage > 0 and i == 0 else 1))
                in_channels = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(widths[-1], num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        """torchvision's init: Kaiming-normal (fan-out) convs, BN weight 1 and bias 0, default Linear."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem(features.unsqueeze(1))))
        return self.blocks(F.max_pool2d(x, 3, stride=2, padding=1)).mean(dim=(2, 3))

    def logits(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(embedding)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.logits(self.embed(features))
