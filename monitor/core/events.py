"""Hysteresis state machine: window scores → debounced ``cry_start`` / ``cry_end`` events. Pure: no I/O.

- **Start**: at least ``confirm_windows`` of the last ``of_windows`` scores ≥ ``start_threshold``, and the
  cool-down after the previous cry has passed.
- **End**: no score ≥ ``end_threshold`` (lower than the start threshold) for ``end_hold_seconds``.
- **Cool-down**: ``cooldown_seconds`` after an end before a new start, so one bout with a pause is one alarm.
- **Maximum**: a cry open for ``max_duration_seconds`` is ended (``ended_by: max_duration``) and, if the baby
  is still crying, restarts after a fresh confirmation with no cool-down: a state can never be stuck ON.

Times are the audio clock (seconds since the stream started); the caller maps them to wall-clock time. The
configuration must be resolved (:func:`monitor.core.presets.effective_events` fills in the model's operating point).

Example:
    >>> from monitor.config import EventsConfig
    >>> config = EventsConfig(start_threshold=0.85, confirm_windows=2, of_windows=2, end_hold_seconds=1.0)
    >>> sm = CryStateMachine(config)
    >>> [e.type for t in range(8) for e in sm.update(t * 0.5, 0.9 if t < 3 else 0.0)]
    ['cry_start', 'cry_end']
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

from monitor.config import EventsConfig


@dataclass(frozen=True)
class CryEvent:
    type: str  # "cry_start" | "cry_end"
    t: float  # audio time of the decision
    id: str  # shared by a cry's start and end
    confidence: float
    duration_s: float | None = None  # cry_end only
    ended_by: str | None = None  # cry_end only: "quiet" | "max_duration" | "shutdown" | "paused" | "input_error" | "restart"
    # cry_start only: the detector's embedding of the windows that confirmed it (monitor.core.home_sounds); kept
    # for a "not a cry" answer, never published
    embedding: tuple[float, ...] | None = field(default=None, repr=False, compare=False)
    # a cry_end ``restart`` (a cry a killed run left open): its cry_start's ``ts``, published after the end's own
    started_ts: str | None = None

    def to_dict(self) -> dict:
        out = {"type": self.type, "t": round(self.t, 3), "id": self.id, "confidence": round(self.confidence, 4)}
        if self.type == "cry_end":  # a restart cannot say how long the cry went on: null
            out["duration_s"] = None if self.duration_s is None else round(self.duration_s, 3)
            out["ended_by"] = self.ended_by
        return out

    @classmethod
    def restart(cls, cry_id: str, started_ts: str) -> CryEvent:
        """The ``cry_end`` of a cry a killed run (kill -9, power cut) left open, ended by this start."""
        return cls("cry_end", 0.0, cry_id, 0.0, duration_s=None, ended_by="restart", started_ts=started_ts)


# The reasons the population classifier knows (Donate-a-cry's cleaned labels), in its output order
REASONS = ("belly_pain", "burping", "discomfort", "hungry", "tired")
# The answers parents can give to "Last cry was …": every reason of the Donate-a-cry app, so a baby's own model
# (monitor.core.adaptation) can learn the three the population model never saw, and "don't know"
PARENT_REASONS = (*REASONS, "cold_hot", "lonely", "scared")
DONT_KNOW = "don't know"
UNCERTAIN = "uncertain"  # the published reason below classifier.min_confidence ("unknown" is HA's "no data")


@dataclass(frozen=True)
class Reason:
    reason: str  # one of the classes, or UNCERTAIN below the confidence threshold
    confidence: float  # calibrated probability of the most likely class
    probs: dict[str, float]
    embedding: tuple[float, ...] | None = field(default=None, repr=False, compare=False)  # what adaptation learns from


@dataclass(frozen=True)
class ReasonEvent:
    """A ``cry_reason`` event: the reason of cry ``id`` from the audio seen up to ``t``."""

    t: float
    id: str
    reason: Reason
    audio_s: float
    type: str = "cry_reason"

    def to_dict(self) -> dict:
        return {"type": self.type, "t": round(self.t, 3), "id": self.id, "reason": self.reason.reason,
                "confidence": round(self.reason.confidence, 4),
                "probs": {k: round(v, 4) for k, v in self.reason.probs.items()}, "audio_s": round(self.audio_s, 2)}


class Event(Protocol):
    """Anything published on the event topic: :class:`CryEvent` or :class:`monitor.core.events.ReasonEvent`."""

    t: float

    def to_dict(self) -> dict: ...


def iso_time(wall_time: float) -> str:
    """A wall-clock time as events publish it: ISO 8601, UTC, milliseconds."""
    return datetime.fromtimestamp(wall_time, timezone.utc).isoformat(timespec="milliseconds")


def event_payload(event: Event, wall_time: float) -> dict:
    """The event's JSON object: its fields plus ``ts``, the wall-clock time (:func:`iso_time`), and a restart's
    ``started_ts``."""
    payload = {**event.to_dict(), "ts": iso_time(wall_time)}
    if getattr(event, "started_ts", None) is not None:
        payload["started_ts"] = event.started_ts
    return payload


def _resolved(config: EventsConfig) -> EventsConfig:
    if None in (config.start_threshold, config.confirm_windows, config.of_windows):
        raise ValueError("events config without an operating point: resolve it with monitor.core.presets.effective_events")
    return config


class CryStateMachine:
    def __init__(self, config: EventsConfig, new_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self.config = _resolved(config)
        self._new_id = new_id
        self._recent: deque[float] = deque(maxlen=config.of_windows)
        self._cooldown_until = float("-inf")
        self._open: tuple[str, float] | None = None  # (id, start time)
        self._last_loud = 0.0
        self._peak = 0.0

    @property
    def crying(self) -> bool:
        return self._open is not None

    def reconfigure(self, config: EventsConfig) -> None:
        """New thresholds (sensitivity change, config reload); an open cry stays open."""
        self.config = _resolved(config)
        self._recent = deque(self._recent, maxlen=config.of_windows)

    def forget_cooldown(self) -> None:
        """No cool-down from the last end: that detection was never announced (held back as one of the home's
        "not a cry" sounds), so it must not delay the next start."""
        self._cooldown_until = float("-inf")

    def reset_confirmation(self) -> None:
        """Forget recent scores (after a pause, so old windows cannot confirm a new start)."""
        self._recent.clear()

    def update(self, t: float, score: float) -> list[CryEvent]:
        cfg = self.config
        self._recent.append(score)
        if self._open is None:
            confirming = [s for s in self._recent if s >= cfg.start_threshold]
            if len(confirming) >= cfg.confirm_windows and t >= self._cooldown_until:
                self._open = (self._new_id(), t)
                self._last_loud, self._peak = t, max(confirming)
                return [CryEvent("cry_start", t, self._open[0], sum(confirming) / len(confirming))]
            return []
        if score >= cfg.end_threshold:
            self._last_loud = t
            self._peak = max(self._peak, score)
        if t - self._open[1] >= cfg.max_duration_seconds:
            self._recent.clear()  # a restart needs fresh confirmation
            return [self._end(t, "max_duration", cooldown=0.0)]
        if t - self._last_loud >= cfg.end_hold_seconds:
            return [self._end(t, "quiet", cooldown=cfg.cooldown_seconds)]
        return []

    def close(self, t: float, ended_by: str = "shutdown") -> list[CryEvent]:
        """End an open cry now (shutdown, end of input, monitoring paused)."""
        return [self._end(t, ended_by, cooldown=0.0)] if self._open else []

    def _end(self, t: float, ended_by: str, cooldown: float) -> CryEvent:
        assert self._open is not None
        cry_id, start = self._open
        self._open = None
        self._cooldown_until = t + cooldown
        return CryEvent("cry_end", t, cry_id, self._peak, duration_s=t - start, ended_by=ended_by)
