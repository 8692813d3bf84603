"""The level meter: what the loudness gate, the health check and the ``level`` topic read. numpy only."""

from __future__ import annotations

import numpy as np


def level_dbfs(samples: np.ndarray) -> float:
    """RMS level in dB relative to full scale (a full-scale sine is −3 dBFS); −120 for digital silence."""
    if samples.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(-120.0, 20.0 * np.log10(rms + 1e-12))


def frame_db(samples: np.ndarray, frame: int) -> np.ndarray:
    """Power in dB of each whole ``frame`` of samples (a trailing part frame is dropped); about −120 for silence.

    Example:
        >>> frame_db(np.ones(5, np.float32), 2).round(3).tolist()
        [0.0, 0.0]
    """
    frames = samples[: samples.size // frame * frame].reshape(-1, frame).astype(np.float64)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
