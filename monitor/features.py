"""The one log-mel front end, shared by training and inference so the two can never disagree.

PANNs 16 kHz settings (../shared/docs/models.md §2.1): n_fft = win = 512, hop 160, 64 Slaney mels over
50–8000 Hz, power spectrum, ``10·log10(max(mel, 1e-10))`` with no top-dB clipping. One second of audio gives
``1 + 16000 // 160 = 101`` frames.

Example:
    >>> import torch
    >>> LogMel()(torch.zeros(2, 16000)).shape
    torch.Size([2, 101, 64])
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio
from torch import nn

from monitor import SAMPLE_RATE

N_FFT = 512
HOP = 160
N_MELS = 64
F_MIN = 50.0
F_MAX = 8000.0
AMIN = 1e-10


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


def frames_for(samples: int) -> int:
    """Number of log-mel frames for a window of ``samples`` samples (center=True)."""
    return 1 + samples // HOP


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level in dB relative to full scale (a full-scale sine is −3 dBFS); −120 for digital silence."""
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(-120.0, 20.0 * np.log10(rms + 1e-12))
