"""The daemon's sinks besides MQTT (:class:`~monitor.service.mqtt_sink.MqttSink`): each a small object that turns
events into one kind of output. The driver (:mod:`monitor.driver`) hands them every payload in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

import numpy as np
import soundfile as sf
import structlog

from monitor.core.buffer import RingBuffer
from monitor.core.stats import CryStats
from monitor.driver import Sink
from monitor.service.clips import ClipRecorder
from monitor.service.notify import Notifier

log = structlog.get_logger(__name__)


class LogSink(Sink):
    """Every event as one log record named by its type (JSON lines under systemd)."""

    def cry_event(self, payload: dict) -> None:
        log.info(payload["type"], **payload)

    def reason_event(self, payload: dict) -> None:
        log.info(payload["type"], **payload)


class NotifySink(Sink):
    """systemd's ``STATUS=``: crying while a cry is open, listening otherwise."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def cry_event(self, payload: dict) -> None:
        self.notifier.status("crying" if payload["type"] == "cry_start" else "listening")


class StatsSink(Sink):
    """Counts each ended cry (:meth:`CryStats.cry_ended`) and hands the new statistics to ``on_change``."""

    def __init__(self, stats: CryStats, on_change: Callable[[dict], None]) -> None:
        self.stats, self.on_change = stats, on_change

    def cry_event(self, payload: dict) -> None:
        if payload["type"] == "cry_end" and self.stats.cry_ended(payload["duration_s"], payload["ended_by"],
                                                                 datetime.now()):
            self.on_change(self.stats.to_payload())


class ClipSink(Sink):
    """Each cry saved as a clip (:class:`ClipRecorder`); adds its file name to the payload as ``clip``. Placed
    before the sinks that publish. A clip that cannot be written is logged and given up: the alarm matters more."""

    def __init__(self, recorder: ClipRecorder, buffer: RingBuffer) -> None:
        self.recorder, self.buffer = recorder, buffer
        self._name: str | None = None

    def cry_event(self, payload: dict) -> None:
        try:
            if payload["type"] == "cry_start":
                self._name = self.recorder.start(payload["id"], self.buffer, time.time())
            else:
                self.recorder.stop()
        except (OSError, RuntimeError, sf.LibsndfileError) as exc:  # disk full
            log.error("clip_failed", error=str(exc), cry_id=payload["id"])
            self._name = None
        payload["clip"] = self._name

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
