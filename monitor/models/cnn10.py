"""PANNs CNN10 with a single cry logit (../shared/docs/models.md §2.2, §7.9).

Four ``ConvBlock`` stages (64, 128, 256, 512 channels; 2×2 average pooling; dropout 0.2), mean over
frequency, ``max_t + mean_t`` pooling, ``fc1`` 512→512 + ReLU, then one logit. The log-mel front end and the
per-mel-bin ``bn0`` live inside the module, so a waveform goes in and training and inference see identical
features.

With ``verifier_channels`` > 0 the model also carries a second stage, ``verify(waveform)``: the same body over
a longer stretch of audio, its last pooling in frequency only (80 ms frames), into a
:class:`~monitor.models.verifier.TemporalHead`. One file, one hash, one manifest entry hold both.

Example:
    >>> import torch
    >>> model = Cnn10(verifier_channels=128).eval()
    >>> model(torch.zeros(3, 16000)).shape, model.verify(torch.zeros(3, 48000)).shape
    (torch.Size([3]), torch.Size([3]))
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from monitor.features import N_MELS, LogMel
from monitor.models.verifier import TemporalHead


class ConvBlock(nn.Module):
    """(Conv3×3 → BN → ReLU) × 2 → 2×2 average pool (``pool=False``: none, CNN14's last stage)."""

    def __init__(self, in_channels: int, out_channels: int, pool: bool = True) -> None:
        super().__init__()
        self.pool = pool
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, pool_time: bool = True) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        if not self.pool:
            return x
        return F.avg_pool2d(x, 2 if pool_time else (1, 2))


def xavier_init(model: nn.Module) -> None:
    """PANNs' init: Xavier-uniform convs and linears, zero biases (BatchNorm keeps weight 1, bias 0)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def conv_features(logmel: torch.Tensor, bn0: nn.BatchNorm2d, blocks: nn.ModuleList, training: bool,
                  augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """The PANNs CNN body shared by CNN10 and CNN14: log-mel (B, T, mels) → frequency-averaged map (B, C, T').

    ``bn0`` standardises each mel bin; ``augment`` (e.g. SpecAugment) runs after it, in training only.
    """
    x = logmel.unsqueeze(1)  # (B, 1, T, mels)
    x = bn0(x.transpose(1, 3)).transpose(1, 3)
    if augment is not None:
        x = augment(x)
    for block in blocks:
        x = F.dropout(block(x), p=0.2, training=training)
    return x.mean(dim=3)


class Cnn10(nn.Module):
    """CNN10 cry detector: waveform (B, N) at 16 kHz → cry logits (B,) (or (B, K) when ``num_classes > 1``).

    Needs at least 16 frames (0.15 s) because of the four pooling stages.
    """

    def __init__(self, num_classes: int = 1, n_mels: int = N_MELS, widths: tuple[int, ...] = (64, 128, 256, 512),
                 verifier_channels: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.frontend = LogMel(n_mels)
        self.bn0 = nn.BatchNorm2d(n_mels)
        channels = (1, *widths)
        self.blocks = nn.ModuleList(ConvBlock(a, b) for a, b in zip(channels[:-1], channels[1:]))
        self.fc1 = nn.Linear(widths[-1], widths[-1])
        self.head = nn.Linear(widths[-1], num_classes)
        xavier_init(self)
        self.verifier = TemporalHead(widths[-1], verifier_channels) if verifier_channels else None

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.forward_logmel(self.frontend(waveform))

    def forward_logmel(
        self, logmel: torch.Tensor, augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Score log-mel frames (B, T, mels); ``augment`` (e.g. SpecAugment) runs after ``bn0`` in training."""
        x = conv_features(logmel, self.bn0, self.blocks, self.training, augment)
        x = x.max(dim=2).values + x.mean(dim=2)
        x = F.dropout(x, p=0.5, training=self.training)
        x = F.relu(self.fc1(x))
        logits = self.head(x)
        return logits.squeeze(-1) if self.num_classes == 1 else logits

    def frame_embeddings(self, logmel: torch.Tensor) -> torch.Tensor:
        """Log-mel (B, T, mels) → frame embeddings (B, C, T // 8): the body, its last pooling in frequency only,
        averaged over frequency. Eval-mode features (no dropout): the verifier trains on a frozen body."""
        x = self.bn0(logmel.unsqueeze(1).transpose(1, 3)).transpose(1, 3)
        for block in self.blocks[:-1]:
            x = block(x)
        return self.blocks[-1](x, pool_time=False).mean(dim=3)

    def verify(self, waveform: torch.Tensor) -> torch.Tensor:
        """Second-stage cry logits (B,) for a few seconds of audio (B, N); needs ``verifier_channels`` > 0."""
        if self.verifier is None:
            raise ValueError("this detector has no verifier head")
        return self.verifier(self.frame_embeddings(self.frontend(waveform)))
