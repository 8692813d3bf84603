"""ECAPA-TDNN baseline with SpeechBrain's structure (``lobes/models/ECAPA_TDNN.py``; ../shared/docs/models.md §4).

TDNN block (k5) → three SE-Res2Blocks (k3, dilations 2, 3, 4, Res2Net scale 8) → multi-layer feature aggregation
(concat of the three block outputs, 1×1 TDNN to ``3C``) → attentive statistics pooling with global context →
BN → 1×1 conv to a 192-d embedding → classifier. SpeechBrain's quirks are kept: every conv pads 'same' with
*reflect* padding, and TDNN blocks apply the activation *before* BN.

Differences from SpeechBrain, all deliberate:

* Input is channels-first MFCC (B, 13, T), the same tensor IETMA takes, not SpeechBrain's (B, T, F).
* No length masks: training uses fixed-length crops, so every frame is valid.
* ``head="linear"`` (the default) is a plain ``Linear(192→K)`` trained with softmax cross-entropy, which suits a
  5–6 class task better than the speaker-verification loss. ``head="cosine"`` is SpeechBrain's cosine classifier
  (``W`` K×192, no bias, xavier init), whose outputs are cosines in [−1, 1]; pass them through
  :func:`additive_angular_margin` in training for the AAM-softmax loss (margin 0.2, scale 30).

With C = 128 and 13 MFCC it has 721,846 parameters (721,840 with the cosine head, the 0.72 M of models.md §4).
Needs T ≥ 5 (reflect padding of the dilation-4 convs).

Example:
    >>> import torch
    >>> model = EcapaTdnn(num_classes=6).eval()
    >>> model(torch.zeros(2, 13, 100)).shape
    torch.Size([2, 6])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

HEADS = ("linear", "cosine")


def same_conv(in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1) -> nn.Conv1d:
    """SpeechBrain's ``Conv1d``: bias, stride 1, 'same' length via reflect padding (odd kernels only)."""
    return nn.Conv1d(
        in_channels, out_channels, kernel_size, dilation=dilation, padding=dilation * (kernel_size - 1) // 2,
        padding_mode="reflect",
    )


class TdnnBlock(nn.Module):
    """``BN(ReLU(conv(x)))``: activation before BN, as in SpeechBrain."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv = same_conv(in_channels, out_channels, kernel_size, dilation)
        self.bn = nn.BatchNorm1d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


class Res2Net(nn.Module):
    """Split C into ``scale`` groups; ``y1 = x1``, ``y2 = T(x2)``, ``y_i = T(x_i + y_{i−1})``; concat."""

    def __init__(self, channels: int, scale: int = 8, kernel_size: int = 3, dilation: int = 1) -> None:
        super().__init__()
        self.scale = scale
        width = channels // scale
        self.convs = nn.ModuleList(TdnnBlock(width, width, kernel_size, dilation) for _ in range(scale - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        chunks = torch.chunk(x, self.scale, dim=1)
        outputs = [chunks[0]]
        for i, (chunk, conv) in enumerate(zip(chunks[1:], self.convs)):
            outputs.append(conv(chunk if i == 0 else chunk + outputs[-1]))
        return torch.cat(outputs, dim=1)


class SeBlock(nn.Module):
    """``x ⊙ σ(conv2(ReLU(conv1(mean_t x))))`` with 1×1 convs (with bias), C → se_channels → C."""

    def __init__(self, channels: int, se_channels: int = 128) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(channels, se_channels, 1)
        self.conv2 = nn.Conv1d(se_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv2(F.relu(self.conv1(x.mean(dim=2, keepdim=True)))))


class SeRes2Block(nn.Module):
    """TDNN 1×1 → Res2Net (k3, dilation d) → TDNN 1×1 → SE, plus the residual (1×1 shortcut only if C changes)."""

    def __init__(
        self, in_channels: int, channels: int, dilation: int, scale: int = 8, se_channels: int = 128
    ) -> None:
        super().__init__()
        self.tdnn1 = TdnnBlock(in_channels, channels)
        self.res2net = Res2Net(channels, scale, 3, dilation)
        self.tdnn2 = TdnnBlock(channels, channels)
        self.se = SeBlock(channels, se_channels)
        self.shortcut = nn.Conv1d(in_channels, channels, 1) if in_channels != channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.shortcut is None else self.shortcut(x)
        return self.se(self.tdnn2(self.res2net(self.tdnn1(x)))) + residual


def weighted_stats(x: torch.Tensor, weights: torch.Tensor, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of x (B, C, T) over time under weights summing to 1 over T; variance clamped at ``eps``."""
    mean = (weights * x).sum(dim=2)
    std = torch.sqrt((weights * (x - mean.unsqueeze(2)) ** 2).sum(dim=2).clamp(min=eps))
    return mean, std


class AttentiveStatsPooling(nn.Module):
    """Attentive statistics pooling with global context: (B, C, T) → (B, 2C).

    Frame scores come from ``[h; mean_t h; std_t h]`` through TDNN 1×1 (3C → attention) → tanh → 1×1 conv
    (→ C), softmax over time per channel; the output is the attention-weighted mean and std.
    """

    def __init__(self, channels: int, attention_channels: int = 128) -> None:
        super().__init__()
        self.tdnn = TdnnBlock(3 * channels, attention_channels)
        self.conv = nn.Conv1d(attention_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[2]
        mean, std = weighted_stats(x, torch.full_like(x, 1.0 / frames))
        context = torch.cat([x, mean.unsqueeze(2).expand_as(x), std.unsqueeze(2).expand_as(x)], dim=1)
        weights = torch.softmax(self.conv(torch.tanh(self.tdnn(context))), dim=2)
        return torch.cat(weighted_stats(x, weights), dim=1)


class EcapaTdnn(nn.Module):
    """ECAPA-TDNN classifier: MFCC (B, in_channels, T) → logits (B, num_classes) (cosines for ``head="cosine"``).

    ``channels`` is C for the first four layers; MFA outputs ``mfa_channels`` (default 3C, SpeechBrain's 1536 for
    C = 512). ``embed`` returns the 192-d embedding.
    """

    def __init__(
        self,
        num_classes: int = 6,
        in_channels: int = 13,
        channels: int = 128,
        mfa_channels: int | None = None,
        dilations: Sequence[int] = (2, 3, 4),
        scale: int = 8,
        se_channels: int = 128,
        attention_channels: int = 128,
        embedding_dim: int = 192,
        head: str = "linear",
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown ECAPA head {head!r}; known: {', '.join(HEADS)}")
        mfa_channels = mfa_channels or 3 * channels
        self.tdnn = TdnnBlock(in_channels, channels, 5)
        self.blocks = nn.ModuleList(SeRes2Block(channels, channels, d, scale, se_channels) for d in dilations)
        self.mfa = TdnnBlock(len(dilations) * channels, mfa_channels)
        self.pooling = AttentiveStatsPooling(mfa_channels, attention_channels)
        self.pool_bn = nn.BatchNorm1d(2 * mfa_channels)
        self.embedding = nn.Linear(2 * mfa_channels, embedding_dim)  # SpeechBrain's 1×1 conv on a length-1 map
        if head == "linear":
            self.head: nn.Module = nn.Linear(embedding_dim, num_classes)
        else:
            self.head = CosineClassifier(embedding_dim, num_classes)

    def embed(self, mfcc: torch.Tensor) -> torch.Tensor:
        x = self.tdnn(mfcc)
        outputs = []
        for block in self.blocks:
            x = block(x)
            outputs.append(x)
        x = self.mfa(torch.cat(outputs, dim=1))
        return self.embedding(self.pool_bn(self.pooling(x)))

    def logits(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.head(embedding)

    def forward(self, mfcc: torch.Tensor) -> torch.Tensor:
        return self.logits(self.embed(mfcc))


class CosineClassifier(nn.Module):
    """``cos θ = normalize(x) · normalize(W)ᵀ`` with W (K × D) xavier-initialised and no bias (SpeechBrain)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(x), F.normalize(self.weight))


def additive_angular_margin(
    cosine: torch.Tensor, targets: torch.Tensor, margin: float = 0.2, scale: float = 30.0
) -> torch.Tensor:
    """AAM-softmax logits: the target class's cosine becomes ``cos(θ + m)``, everything is scaled by ``s``.

    Where ``cos θ ≤ cos(π − m)`` (θ + m would pass π) the target logit falls back to ``cos θ − m·sin(π − m)``, as in
    SpeechBrain. Feed the result to ``F.cross_entropy(·, targets)`` in training; use ``scale · cosine`` (or the
    plain cosines) at inference.

    Example:
        >>> cos = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
        >>> additive_angular_margin(cos, torch.tensor([0, 1]))[0, 1].item() == 30 * 0.1
        True
    """
    cosine = cosine.clamp(-1.0 + 1e-7, 1.0 - 1e-7)  # keeps sqrt's gradient finite
    sine = torch.sqrt(1.0 - cosine**2)
    with_margin = cosine * math.cos(margin) - sine * math.sin(margin)
    fallback = cosine - margin * math.sin(math.pi - margin)
    with_margin = torch.where(cosine > math.cos(math.pi - margin), with_margin, fallback)
    one_hot = F.one_hot(targets, cosine.shape[1]).to(cosine.dtype)
    return scale * (one_hot * with_margin + (1.0 - one_hot) * cosine)
