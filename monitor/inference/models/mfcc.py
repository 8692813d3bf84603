"""13 MFCC from the shared log-mel front end, for the reason classifiers (../shared/docs/models.md §7.4).

MFCC = DCT-II (orthonormal) of the detector's 64-bin log-mel in dB, keeping the first 13 coefficients, so the
detector and the reason classifier share one front end definition (:class:`monitor.inference.models.logmel.LogMel`). The
classifier computes that log-mel once over a cry's audio (a few ms) rather than reusing the detector's
overlapping 1 s windows, and :class:`monitor.inference.models.reason.ReasonNet` calls :meth:`Mfcc.from_logmel` on it.
This is librosa's ``mfcc`` recipe (``dct(power_to_db(mel), type=2, norm="ortho")``) on our front end's mel
settings. Optional global per-coefficient mean/variance normalisation
(CMVN) uses statistics from the training set, stored as buffers so they travel with the model's state dict; until
they are set (``mean`` 0, ``std`` 1) the normalisation is the identity.

The output is channels-first (B, 13, T), the layout IETMA and ECAPA-TDNN take.

Example:
    >>> import torch
    >>> Mfcc()(torch.zeros(2, 16000)).shape
    torch.Size([2, 13, 101])
"""

from __future__ import annotations

import math

import torch
from torch import nn

from monitor.inference.features import N_MELS
from monitor.inference.models.logmel import LogMel

N_MFCC = 13


def dct_matrix(n_mfcc: int, n_mels: int) -> torch.Tensor:
    """Orthonormal DCT-II basis as an (n_mels, n_mfcc) matrix: ``mfcc = logmel @ dct_matrix(...)``.

    ``D[n, k] = sqrt(2/N)·cos(π/N·(n + ½)·k)``, with the k = 0 column scaled by ``1/√2`` (the "ortho" norm).
    """
    n = torch.arange(n_mels, dtype=torch.float64).unsqueeze(1)
    k = torch.arange(n_mfcc, dtype=torch.float64).unsqueeze(0)
    basis = math.sqrt(2.0 / n_mels) * torch.cos(math.pi / n_mels * (n + 0.5) * k)
    basis[:, 0] /= math.sqrt(2.0)
    return basis.float()


class Mfcc(nn.Module):
    """Waveform (B, N) at 16 kHz, or log-mel (B, T, mels), → MFCC (B, n_mfcc, T), optionally CMVN-normalised."""

    def __init__(self, n_mfcc: int = N_MFCC, n_mels: int = N_MELS) -> None:
        super().__init__()
        self.logmel = LogMel(n_mels)
        self.register_buffer("dct", dct_matrix(n_mfcc, n_mels))
        self.register_buffer("mean", torch.zeros(n_mfcc, 1))
        self.register_buffer("std", torch.ones(n_mfcc, 1))

    def set_statistics(self, mean: torch.Tensor, var: torch.Tensor, eps: float = 1e-8) -> None:
        """Load per-coefficient training-set mean and variance (each shape (n_mfcc,))."""
        self.mean.copy_(mean.reshape_as(self.mean))
        self.std.copy_(torch.sqrt(var.reshape_as(self.std) + eps))

    def from_logmel(self, logmel: torch.Tensor) -> torch.Tensor:
        """MFCC from log-mel frames (B, T, mels) already computed by :class:`monitor.inference.models.logmel.LogMel`."""
        return ((logmel @ self.dct).transpose(-1, -2) - self.mean) / self.std

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.from_logmel(self.logmel(waveform))
