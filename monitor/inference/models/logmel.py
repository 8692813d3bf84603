"""The log-mel front end inside every model (torch); its settings and numpy twin are in :mod:`monitor.inference.features`.

Example:
    >>> import torch
    >>> LogMel()(torch.zeros(2, 16000)).shape
    torch.Size([2, 101, 64])
"""

from __future__ import annotations

import torch
import torchaudio
from torch import nn

from monitor import SAMPLE_RATE
from monitor.inference.features import AMIN, F_MAX, F_MIN, HOP, N_FFT, N_MELS


class LogMel(nn.Module):
    """Waveform (B, N) at 16 kHz → log-mel (B, frames, mels) in dB.

    ``center=False`` (the streaming detector): frame ``i`` covers samples ``[160 i, 160 i + 512)`` of its input and
    nothing else, so a stream cut anywhere gives the same frames; ``center=True`` reflect-pads both ends.
    """

    def __init__(self, n_mels: int = N_MELS, center: bool = True) -> None:
        super().__init__()
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=N_FFT, win_length=N_FFT, hop_length=HOP, f_min=F_MIN, f_max=F_MAX,
            n_mels=n_mels, power=2.0, center=center, pad_mode="reflect", norm="slaney", mel_scale="slaney",
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        mel = self.mel(waveform)  # (B, mels, frames)
        return (10.0 * torch.log10(torch.clamp(mel, min=AMIN))).transpose(-1, -2)
