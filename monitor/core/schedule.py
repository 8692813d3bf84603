"""When a cry's audio is classified: pure rules over the state machine's events and the audio clock.

- A cry is classified ``at_seconds`` after its ``cry_start`` (default 2 s, then 6 s), each time on the audio
  from ``lookback_seconds`` before the start up to that moment, so a first answer comes quickly and a second,
  on more audio, refines it. A later ``cry_reason`` for the same id supersedes the earlier one. A cry that ends
  before its first time is classified at its end.

Example:
    >>> s = ReasonSchedule(at_seconds=(2.0,), lookback_seconds=1.5)
    >>> s.on_event("cry_start", "a", 10.0); s.on_time(12.0); s.take()
    [('a', 8.5, 12.0)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from monitor.config import Config


def reasons_enabled(config: Config) -> bool:
    """Reasons are classified for cries from the cry model; loudness mode fires on any sound, and a "reason" for a
    slammed door would be noise."""
    return config.classifier.enabled and config.detector.kind != "loudness"


@dataclass(frozen=True)
class ClassifyRequest:
    """Audio of an open (or just ended) cry to classify, taken from the ring buffer at audio time ``t``."""

    id: str
    t: float
    samples: np.ndarray


@dataclass
class ReasonSchedule:
    """Pure: when is which cry due for classification. Feed it the state machine's events and the audio clock."""

    at_seconds: Sequence[float]
    lookback_seconds: float
    _open: tuple[str, float] | None = None
    _done: int = 0
    _due: list[tuple[str, float, float]] = field(default_factory=list)

    def on_event(self, type_: str, cry_id: str, t: float) -> None:
        if type_ == "cry_start":
            self._open, self._done = (cry_id, t), 0
        elif type_ == "cry_end" and self._open is not None:
            if self._done == 0:  # a short cry still gets one answer
                self._due.append((cry_id, self._open[1] - self.lookback_seconds, t))
            self._open = None

    def on_time(self, t: float) -> None:
        if self._open is None or self._done >= len(self.at_seconds):
            return
        cry_id, start = self._open
        if t - start >= self.at_seconds[self._done]:
            self._due.append((cry_id, start - self.lookback_seconds, t))
            while self._done < len(self.at_seconds) and t - start >= self.at_seconds[self._done]:
                self._done += 1  # a late clock (a big chunk) makes one request, not several

    def take(self) -> list[tuple[str, float, float]]:
        """Due requests as (cry id, audio start, audio end) in seconds; each is returned once."""
        due, self._due = self._due, []
        return due
