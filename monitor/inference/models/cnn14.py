"""PANNs CNN14 body with InfantCryNet's pooling heads (../shared/docs/models.md §2.2, §5, §8).

Six stages of CNN10's :class:`~monitor.inference.models.cnn10.ConvBlock` (64, 128, 256, 512, 1024, 2048 channels; 2×2
average pooling in the first five, none in the last; dropout 0.2 after each), the mean over frequency, then one
of InfantCryNet's two best clip poolings over time:

* ``pooling="stat"``: statistics pooling ``[mean_t; std_t]`` (4096-d) → dropout 0.5 → ``fc1`` 4096→2048 + ReLU.
  The paper writes ``fc([h_avg; s²])`` with the variance; we use the standard deviation (x-vector style), which
  has the features' scale and is what models.md §5 and the issue specify.
* ``pooling="mha"``: multi-head attention pooling. The 2048 channels are split into ``n_heads`` subspaces; head h
  scores each frame with its own vector (``α_h = softmax_t(w_hᵀ x_t + b_h)``) and returns ``Σ_t α_{h,t} x_t``
  over its subspace; the heads are concatenated (2048-d) → dropout 0.5 → ``fc1`` 2048→2048 + ReLU.

Then a linear head to ``num_classes``. The input is the shared log-mel (B, T, 64) from
:class:`monitor.inference.models.logmel.LogMel`, standardised per mel bin by ``bn0`` as in :class:`~monitor.inference.models.cnn10.Cnn10`.
Five pooling stages need T ≥ 32 frames (0.32 s). About 84 M (stat) / 80 M (mha) parameters: an offline baseline,
not something to ship to a Raspberry Pi.

Example:
    >>> import torch
    >>> Cnn14(num_classes=5, pooling="mha").eval()(torch.zeros(2, 64, 64)).shape
    torch.Size([2, 5])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from monitor.inference.features import N_MELS
from monitor.inference.models.cnn10 import ConvBlock, conv_features, xavier_init

POOLINGS = ("stat", "mha")


class StatisticsPooling(nn.Module):
    """(B, C, T) → (B, 2C): ``[mean_t; std_t]`` (population std, variance floored at ``eps``)."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = x.var(dim=2, unbiased=False)
        return torch.cat([x.mean(dim=2), torch.sqrt(var.clamp(min=self.eps))], dim=1)


class MultiHeadAttentionPooling(nn.Module):
    """(B, C, T) → (B, C): per-head softmax-over-time weights on per-head channel subspaces (see module doc).

    The scorer is a grouped 1×1 conv, so head h sees only its own ``C / n_heads`` channels.
    """

    def __init__(self, channels: int, n_heads: int = 8) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.score = nn.Conv1d(channels, n_heads, 1, groups=n_heads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t = x.shape
        weights = torch.softmax(self.score(x), dim=2)  # (B, H, T)
        pooled = (x.view(b, self.n_heads, c // self.n_heads, t) * weights.unsqueeze(2)).sum(dim=3)
        return pooled.reshape(b, c)


class Cnn14(nn.Module):
    """CNN14 reason classifier: log-mel (B, T, mels) → logits (B, num_classes)."""

    def __init__(
        self,
        num_classes: int = 6,
        pooling: str = "stat",
        n_heads: int = 8,
        n_mels: int = N_MELS,
        widths: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048),
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown CNN14 pooling {pooling!r}; known: {', '.join(POOLINGS)}")
        self.bn0 = nn.BatchNorm2d(n_mels)
        channels = (1, *widths)
        self.blocks = nn.ModuleList(ConvBlock(a, b) for a, b in zip(channels[:-2], channels[1:-1]))
        self.blocks.append(ConvBlock(channels[-2], channels[-1], pool=None))
        width = widths[-1]
        if pooling == "stat":
            self.pool: nn.Module = StatisticsPooling()
            self.fc1 = nn.Linear(2 * width, width)
        else:
            self.pool = MultiHeadAttentionPooling(width, n_heads)
            self.fc1 = nn.Linear(width, width)
        self.head = nn.Linear(width, num_classes)
        xavier_init(self)  # the attention scorer too

    def embed(
        self, logmel: torch.Tensor, augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> torch.Tensor:
        """The ``fc1`` output the head reads, (B, width), from log-mel frames (B, T, mels); ``augment`` (e.g.
        SpecAugment) runs after ``bn0`` in training."""
        x = self.pool(conv_features(logmel, self.bn0, self.blocks, self.training, augment))
        x = F.dropout(x, p=0.5, training=self.training)
        return F.relu(self.fc1(x))

    def logits(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(embedding)

    def forward(
        self, logmel: torch.Tensor, augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> torch.Tensor:
        return self.logits(self.embed(logmel, augment))
