"""PANNs CNN10 with a single cry logit (../shared/docs/models.md §2.2, §7.9).

Four ``ConvBlock`` stages (64, 128, 256, 512 channels; 2×2 average pooling; dropout 0.2), mean over
frequency, ``max_t + mean_t`` pooling, ``fc1`` 512→512 + ReLU, then one logit. The log-mel front end and the
per-mel-bin ``bn0`` live inside the module, so a waveform goes in and training and inference see identical
features. This is the window form (zero padding at the window's edges); the detector now ships as
:class:`~monitor.inference.models.streaming_cnn10.StreamingCnn10`, and this class remains for the reason-classifier family's
shared blocks and for measuring the previous detectors.

Example:
    >>> import torch
    >>> Cnn10().eval()(torch.zeros(3, 16000)).shape
    torch.Size([3])
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from monitor.inference.features import N_MELS
from monitor.inference.models.logmel import LogMel


class ConvBlock(nn.Module):
    """(Conv3×3 → BN → ReLU) × 2 → average pooling with kernel = stride ``pool`` (time, frequency); ``None``: none
    (CNN14's last stage).

    ``time_padding=0`` makes the convolutions *valid* in time: each output frame then depends on its input frames
    only, never on padding, which is what lets :mod:`monitor.inference.models.streaming_cnn10` score a stream exactly.
    """

    def __init__(self, in_channels: int, out_channels: int, pool: tuple[int, int] | None = (2, 2),
                 time_padding: int = 1) -> None:
        super().__init__()
        self.pool = pool
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=(time_padding, 1), bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=(time_padding, 1), bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def convolve(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convolve(x)
        return x if self.pool is None else F.avg_pool2d(x, self.pool)


def xavier_init(model: nn.Module) -> None:
    """PANNs' init: Xavier-uniform convs and linears, zero biases (BatchNorm keeps weight 1, bias 0)."""
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def conv_features(logmel: torch.Tensor, bn0: nn.BatchNorm2d, blocks: nn.ModuleList, training: bool,
                  augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  stages: list[torch.Tensor] | None = None) -> torch.Tensor:
    """The PANNs CNN body shared by CNN10 and CNN14: log-mel (B, T, mels) → frequency-averaged map (B, C, T').

    ``bn0`` standardises each mel bin; ``augment`` (e.g. SpecAugment) runs after it, in training only. ``stages``,
    if given, receives every block's frequency-averaged map (the multi-task model integrates them all).
    """
    x = logmel.unsqueeze(1)  # (B, 1, T, mels)
    x = bn0(x.transpose(1, 3)).transpose(1, 3)
    if augment is not None:
        x = augment(x)
    for block in blocks:
        x = F.dropout(block(x), p=0.2, training=training)
        if stages is not None:
            stages.append(x.mean(dim=3))
    return x.mean(dim=3)


class Cnn10(nn.Module):
    """CNN10 cry detector: waveform (B, N) at 16 kHz → cry logits (B,) (or (B, K) when ``num_classes > 1``).

    Needs at least 16 frames (0.15 s) because of the four pooling stages.
    """

    def __init__(self, num_classes: int = 1, n_mels: int = N_MELS, widths: tuple[int, ...] = (64, 128, 256, 512)):
        super().__init__()
        self.num_classes = num_classes
        self.frontend = LogMel(n_mels)
        self.bn0 = nn.BatchNorm2d(n_mels)
        channels = (1, *widths)
        self.blocks = nn.ModuleList(ConvBlock(a, b) for a, b in zip(channels[:-1], channels[1:]))
        self.fc1 = nn.Linear(widths[-1], widths[-1])
        self.head = nn.Linear(widths[-1], num_classes)
        xavier_init(self)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.forward_logmel(self.window_logmel(waveform))

    def window_logmel(self, waveform: torch.Tensor) -> torch.Tensor:
        """The log-mel frames (B, T, mels) this model scores for a window of audio (B, N)."""
        return self.frontend(waveform)

    def forward_logmel(
        self, logmel: torch.Tensor, augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Score log-mel frames (B, T, mels); ``augment`` (e.g. SpecAugment) runs after ``bn0`` in training."""
        return self.classify_frames(conv_features(logmel, self.bn0, self.blocks, self.training, augment))

    def classify_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Frame embeddings (B, C, T) → logits: ``max_t + mean_t``, ``fc1`` + ReLU, the head."""
        x = frames.max(dim=2).values + frames.mean(dim=2)
        x = F.dropout(x, p=0.5, training=self.training)
        x = F.relu(self.fc1(x))
        logits = self.head(x)
        return logits.squeeze(-1) if self.num_classes == 1 else logits
