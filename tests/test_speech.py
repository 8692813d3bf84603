"""Synthetic speech (monitor/training/speech.py): espeak-ng's utterance as 16 kHz audio."""

import numpy as np

from conftest import need
from monitor.training.speech import espeak


def test_one_utterance_at_16_khz():
    need("espeak-ng")
    audio = espeak("the baby is asleep", "en", 160, 50)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 16000 // 2 < audio.size < 4 * 16000  # about a second and a half of speech at 16 kHz
    assert np.abs(audio).max() > 0.05 and np.abs(audio).max() <= 1.0
