"""Microphone health: digital silence or a flat-lined stream for too long means the monitor is deaf.

A real room is never exactly silent: even a quiet nursery gives a microphone some noise. A stream whose samples
are all (nearly) identical for ``deaf_after_seconds`` comes from a muted, unplugged or broken device, and the
daemon reports a problem and reopens it. Pure: no I/O.

Example:
    >>> health = MicHealth(deaf_after_seconds=1.0)
    >>> health.update(np.zeros(16000, np.float32), t=1.0)
    'deaf'
    >>> health.update(np.random.default_rng(0).normal(0, 1e-3, 1600).astype(np.float32), t=1.1)
    'ok'
"""

from __future__ import annotations

import numpy as np

FLAT_PEAK_TO_PEAK = 1e-6  # below one 16-bit LSB (3e-5): no real microphone is this still


class MicHealth:
    def __init__(self, deaf_after_seconds: float) -> None:
        self.deaf_after_seconds = deaf_after_seconds
        self._flat_since: float | None = None
        self.state = "ok"

    def no_audio(self) -> str | None:
        """No chunk at all arrived for too long (device gone, stream hung): deaf; returns ``deaf`` on the change."""
        self._flat_since = None
        if self.state == "deaf":
            return None
        self.state = "deaf"
        return "deaf"

    def update(self, chunk: np.ndarray, t: float) -> str | None:
        """Feed a chunk ending at audio time ``t``; returns the new state (``ok``/``deaf``) when it changes."""
        flat = chunk.size > 0 and float(chunk.max() - chunk.min()) <= FLAT_PEAK_TO_PEAK
        if not flat:
            self._flat_since = None
            new = "ok"
        else:
            if self._flat_since is None:
                self._flat_since = t - chunk.size / 16000
            new = "deaf" if t - self._flat_since >= self.deaf_after_seconds else self.state
        if new != self.state:
            self.state = new
            return new
        return None
