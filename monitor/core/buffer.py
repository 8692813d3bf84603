"""Fixed-capacity ring buffer of recent 16 kHz audio, addressed by absolute sample index.

Writes copy into a preallocated array (no allocation per frame in steady state). Readers ask for a span by
absolute index (the audio clock: ``index / 16000`` seconds since the stream started), so the detector windows,
and later the reason classifier and clip saving, all read the same samples without extra copies of the stream.

Example:
    >>> buf = RingBuffer(capacity=8)
    >>> buf.write(np.arange(10, dtype=np.float32))
    >>> buf.total, buf.read(6, 4).tolist()
    (10, [6.0, 7.0, 8.0, 9.0])
"""

from __future__ import annotations

import numpy as np


class RingBuffer:
    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._data = np.zeros(capacity, dtype=np.float32)
        self.total = 0  # samples ever written; the next sample's absolute index

    @property
    def oldest(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(0, self.total - self.capacity)

    def write(self, samples: np.ndarray) -> None:
        if samples.size > self.capacity:  # only the newest `capacity` samples can survive anyway
            self.total += samples.size - self.capacity
            samples = samples[-self.capacity :]
        n = samples.size
        start = self.total % self.capacity
        first = min(n, self.capacity - start)
        self._data[start : start + first] = samples[:first]
        self._data[: n - first] = samples[first:]
        self.total += n

    def read(self, start: int, length: int, out: np.ndarray | None = None) -> np.ndarray:
        """Samples ``[start, start + length)``; raises ``IndexError`` if they are not (or no longer) held."""
        if start < self.oldest or start + length > self.total or length > self.capacity:
            raise IndexError(f"samples [{start}, {start + length}) not in buffer [{self.oldest}, {self.total})")
        out = np.empty(length, dtype=np.float32) if out is None else out
        begin = start % self.capacity
        first = min(length, self.capacity - begin)
        out[:first] = self._data[begin : begin + first]
        out[first:] = self._data[: length - first]
        return out
