"""The cry verifier's temporal head: CNN10 frame embeddings over the last few seconds → one "is it a cry" logit.

A 1 s window shows a cry's timbre but hardly its rhythm. A cry is sustained voiced phonation in units of about
0.5–1.5 s with inspiratory breaths between them; a laugh is a train of 4–7 short bursts per second; a meow is a
single arc. The head sees 80 ms frames (the CNN10 body with its last pooling in frequency only, so the frame rate
of 12.5 Hz still resolves a laugh's bursts) over 3 s, through dilated 1-D convolutions with a receptive field of
1.3 s, then attention and max pooling over time. It is small (about 0.2 M parameters) because the body is the
detector's own, shared and frozen: the detector scores every hop, the head only runs when the detector wants to
start a cry (openWakeWord's verifier pattern), so it costs nothing while the room is quiet.

Example:
    >>> import torch
    >>> head = TemporalHead(512)
    >>> head(torch.zeros(2, 512, 37)).shape
    torch.Size([2])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


VERIFIER_SECONDS = 3.0  # the audio the verifier sees, ending at the window that would start the cry


class TemporalHead(nn.Module):
    """Frame embeddings (B, C, T) → logits (B,): 1×1 projection, dilated convolutions (1, 2, 4) with residuals,
    attention pooling concatenated with max pooling, one linear layer."""

    def __init__(self, in_channels: int, channels: int = 128, dilations: tuple[int, ...] = (1, 2, 4)) -> None:
        super().__init__()
        self.project = nn.Conv1d(in_channels, channels, 1)
        self.convs = nn.ModuleList(nn.Conv1d(channels, channels, 3, padding=d, dilation=d) for d in dilations)
        self.norms = nn.ModuleList(nn.BatchNorm1d(channels) for _ in dilations)
        self.attention = nn.Conv1d(channels, 1, 1)
        self.out = nn.Linear(2 * channels, 1)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.project(frames))
        for conv, norm in zip(self.convs, self.norms):
            x = x + F.relu(norm(conv(x)))
        weights = torch.softmax(self.attention(x), dim=2)
        pooled = torch.cat([(x * weights).sum(dim=2), x.max(dim=2).values], dim=1)
        return self.out(F.dropout(pooled, p=0.3, training=self.training)).squeeze(-1)
