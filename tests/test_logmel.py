"""The torch log-mel front end inside every model (monitor/inference/models/logmel.py)."""

import numpy as np
import torch

from monitor.inference.features import HOP, frames_for
from monitor.inference.models.logmel import LogMel


def test_logmel_frames_and_panns_settings():
    assert frames_for(16000) == 101 and HOP == 160
    logmel = LogMel()(torch.zeros(1, 16000))
    assert logmel.shape == (1, 101, 64)
    assert torch.all(logmel == -100.0)  # 10·log10(1e-10): silence hits the amin floor, no top-dB clipping


def test_logmel_puts_a_tone_in_the_right_mel_band():
    t = torch.arange(16000) / 16000
    for freq in (300.0, 1000.0, 3000.0, 6000.0):
        logmel = LogMel()(torch.sin(2 * np.pi * freq * t)[None])[0].mean(0)
        fb = LogMel().mel.mel_scale.fb  # (freqs, mels): the Slaney filterbank over 50–8000 Hz
        bin_hz = torch.linspace(0, 8000, fb.shape[0])
        centre = float(bin_hz[fb[:, int(torch.argmax(logmel))].argmax()])
        assert abs(centre - freq) / freq < 0.15
