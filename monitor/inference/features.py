"""The log-mel front end's settings and its numpy form: numpy only.

PANNs 16 kHz settings (../shared/docs/models.md §2.1): n_fft = win = 512, hop 160, 64 Slaney mels over
50–8000 Hz, power spectrum, ``10·log10(max(mel, 1e-10))`` with no top-dB clipping. One second of audio gives
``1 + 16000 // 160 = 101`` frames.

Two implementations of it exist on purpose, one per runtime: :class:`monitor.inference.models.logmel.LogMel` (torch, inside
every model, used in training) and :func:`logmel` here (numpy, for the reason classifier's ONNX path, which must
not import torch). ``tests/test_features.py`` holds :func:`mel_filterbank` equal to torchaudio's to 1e-6 and the
two log-mels equal to 0.01 dB on a real cry (torch's float32 STFT is the noisier one).

Example:
    >>> logmel(np.zeros(16000, np.float32)).shape
    (101, 64)
"""

from __future__ import annotations

import numpy as np

from monitor import SAMPLE_RATE

N_FFT = 512
HOP = 160
N_MELS = 64
F_MIN = 50.0
F_MAX = 8000.0
AMIN = 1e-10


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (3 mels per 200 Hz) below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3)
    return np.where(hz >= 1000.0, 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / (np.log(6.4) / 27), linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27) * (mel - 15.0)), mel * (200.0 / 3))


def mel_filterbank(n_mels: int = N_MELS) -> np.ndarray:
    """(N_FFT // 2 + 1, n_mels) triangles equally spaced on the Slaney mel scale, each normalised to unit area
    (``norm="slaney"``): the matrix ``torchaudio.functional.melscale_fbanks`` builds for these settings."""
    freqs = np.linspace(0, SAMPLE_RATE // 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(F_MIN), _hz_to_mel(F_MAX), n_mels + 2))
    rising = (freqs[:, None] - edges[None, :-2]) / np.diff(edges)[None, :-1]
    falling = (edges[None, 2:] - freqs[:, None]) / np.diff(edges)[None, 1:]
    triangles = np.maximum(0.0, np.minimum(rising, falling))
    return (triangles * (2.0 / (edges[2:] - edges[:-2]))[None, :]).astype(np.float32)


_FILTERBANK = mel_filterbank()
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)  # periodic Hann


def logmel(samples: np.ndarray) -> np.ndarray:
    """16 kHz mono samples (N,) → log-mel (frames, 64) in dB, frames centred (``center=True``: the signal is
    reflect-padded by half a window at both ends), as :class:`monitor.inference.models.logmel.LogMel` computes it."""
    padded = np.pad(np.asarray(samples, dtype=np.float32), N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP] * _WINDOW
    power = np.square(np.abs(np.fft.rfft(frames, axis=-1))).astype(np.float32)
    return 10.0 * np.log10(np.maximum(power @ _FILTERBANK, AMIN))


def frames_for(samples: int) -> int:
    """Number of log-mel frames for a window of ``samples`` samples (center=True)."""
    return 1 + samples // HOP
