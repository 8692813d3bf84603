"""The level meter: what the loudness gate, the health check and the ``level`` topic read. numpy only."""

from __future__ import annotations

import numpy as np


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level in dB relative to full scale (a full-scale sine is −3 dBFS); −120 for digital silence."""
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(-120.0, 20.0 * np.log10(rms + 1e-12))
