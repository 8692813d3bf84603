"""The daemon's sinks besides MQTT (:class:`~monitor.service.mqtt_sink.MqttSink`): each a small object that turns
events into one kind of output, and the clips, which the driver (:mod:`monitor.driver`) asks first.
"""

from __future__ import annotations

import time

import numpy as np
import soundfile as sf
import structlog

from monitor.core.buffer import RingBuffer
from monitor.core.events import CryEvent
from monitor.driver import Clip, Emitted, Sink
from monitor.service.clips import ClipRecorder
from monitor.service.notify import Notifier

log = structlog.get_logger(__name__)


class LogSink(Sink):
    """Every event as one log record named by its type (JSON lines under systemd); the end of a cry a killed run
    left open is a warning."""

    def cry_event(self, emitted: Emitted) -> None:
        event = emitted.event
        (log.warning if event.ended_by == "restart" else log.info)(event.type, **emitted.payload())

    def reason_event(self, emitted: Emitted) -> None:
        log.info(emitted.event.type, **emitted.payload())


class NotifySink(Sink):
    """systemd's ``STATUS=``: crying while a cry is open, listening otherwise."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def cry_event(self, emitted: Emitted) -> None:
        self.notifier.status("crying" if emitted.event.type == "cry_start" else "listening")


class ClipSink(Sink):
    """Each cry saved as a clip (:class:`ClipRecorder`): the driver's :class:`~monitor.driver.Clips`, so every sink
    sees the clip's name with the cry's start and end. A clip that cannot be written is logged and given up (its
    name is None): the alarm matters more. The end of a cry it never saw start (one a killed run left open) has
    no clip."""

    def __init__(self, recorder: ClipRecorder, buffer: RingBuffer) -> None:
        self.recorder, self.buffer = recorder, buffer
        self._cry: str | None = None  # the cry whose clip this is
        self._name: str | None = None

    def clip(self, event: CryEvent) -> Clip | None:
        if event.type == "cry_end" and event.id != self._cry:
            return None
        try:
            if event.type == "cry_start":
                self._cry, self._name = event.id, None
                self._name = self.recorder.start(event.id, self.buffer, time.time())
            else:
                self.recorder.stop()
        except (OSError, RuntimeError, sf.LibsndfileError) as exc:  # disk full
            log.error("clip_failed", error=str(exc), cry_id=event.id)
            self._name = None
        return Clip(self._name)

    def audio(self, chunk: np.ndarray) -> None:
        if not self.recorder.recording:
            return
        try:
            self.recorder.append(self.buffer)
        except (OSError, RuntimeError, sf.LibsndfileError) as exc:
            log.error("clip_failed", error=str(exc))
            self.recorder.abandon()

    def close(self) -> None:
        self.recorder.stop()
