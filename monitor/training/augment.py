"""The detector's examples and their augmentation: a cry (or not) mixed over a background at a random SNR, sometimes
starting inside the window, then coloured and levelled at random (:func:`make_example`), and the log-mel
batch's SpecAugment and mixup.
"""

from __future__ import annotations

import numpy as np
import torch

from monitor import SAMPLE_RATE
from monitor.training.material import WIN, Pool, rms
from monitor.training.negatives import Negatives, background


def colour(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random tilt EQ and, with p = 0.6, a random low-pass: bandwidth and mic colour must carry no label."""
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE)
    spectrum *= (np.maximum(freqs, 100.0) / 1000.0) ** rng.uniform(-0.4, 0.4)
    if rng.random() < 0.6:
        cutoff = rng.uniform(2500, 7500)
        spectrum *= 1.0 / (1.0 + (freqs / cutoff) ** 16)
    return np.fft.irfft(spectrum, x.size).astype(np.float32)


# (probability, shortest and longest delay in s) of a positive whose cry begins inside the example
DETECTOR_ONSETS = (0.3, 0.0, 0.6)  # the first windows of a cry, so they already score high


def make_example(rng: np.random.Generator, cries: Pool, negatives: Negatives, positive: bool,
                 hard: list[np.ndarray] | None = None, n: int = WIN,
                 onsets: tuple[float, float, float] = DETECTOR_ONSETS) -> np.ndarray:
    """One example of ``n`` samples: a background (a ``hard`` negative a quarter of the time, when given) and, if
    ``positive``, a cry over it at −5…30 dB SNR, starting inside the example as ``onsets`` says; then coloured
    (:func:`colour`) and set to a random level of −50…−12 dBFS."""
    if not positive and hard and rng.random() < 0.25:
        bg = hard[int(rng.integers(len(hard)))]
    else:
        bg = background(rng, negatives, n)
    if positive:
        cry = cries.crop(rng, n)
        p_onset, shortest, longest = onsets
        if rng.random() < p_onset:  # the cry begins inside the example, as it does at onset
            delay = int(rng.uniform(shortest, longest) * SAMPLE_RATE)
            cry = np.concatenate([np.zeros(delay, np.float32), cry[: n - delay]])
        snr = rng.uniform(-5, 30)
        bg = bg * (rms(cry) / (rms(bg) * 10 ** (snr / 20)))
        bg = cry + bg
    x = colour(bg, rng)
    x *= 10 ** (rng.uniform(-50, -12) / 20) / rms(x)
    return np.clip(x, -1, 1)


def make_batch(rng, cries, negatives, n, hard=None):
    labels = rng.random(n) < 0.5
    x = np.stack([make_example(rng, cries, negatives, bool(y), hard) for y in labels])
    return torch.from_numpy(x), torch.from_numpy(labels.astype(np.float32))


def spec_augment(x: torch.Tensor) -> torch.Tensor:
    """Zero 2 time stripes (≤ 10 frames) and 2 mel stripes (≤ 8 bins) per example; x is (B, 1, T, mels)."""
    b, _, t, m = x.shape
    mask = torch.ones(b, 1, t, m)
    for size, width, dim in ((t, 10, 2), (m, 8, 3)):
        for _ in range(2):
            w = torch.randint(0, width, (b,))
            s = (torch.rand(b) * (size - w)).long()
            idx = torch.arange(size)
            stripe = (idx[None] >= s[:, None]) & (idx[None] < (s + w)[:, None])  # (B, size)
            shape = (b, 1, size, 1) if dim == 2 else (b, 1, 1, size)
            mask = mask * (~stripe).float().view(shape)
    return x * mask


def mixup(logmel: torch.Tensor, y: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend each example with another of the batch (log-mel and target), λ ~ Beta(0.4, 0.4)."""
    lam = torch.from_numpy(rng.beta(0.4, 0.4, len(y)).astype(np.float32))
    perm = torch.from_numpy(rng.permutation(len(y)))
    mixed = lam.view(-1, 1, 1) * logmel + (1 - lam.view(-1, 1, 1)) * logmel[perm]
    return mixed, lam * y + (1 - lam) * y[perm]
