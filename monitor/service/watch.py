"""What the daemon watches besides the cries. Sinks of the audio: the level meter (:class:`LevelMeter`), the
microphone's health (:class:`MicWatch`: deaf, reopened with backoff) and systemd's readiness and watchdog
(:class:`Heartbeat`). Once a second, whether or not audio flows (:class:`Watch`): no audio for too long, the
diagnostics, the day's turn, the broker, the state folder and the answers the disk refused.

The diagnostics are each part's own report (a ``diagnostics()`` method: the level meter, the driver, the
microphone, the capture, the publisher and its outbox), put together by :meth:`Watch.diagnostics`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import date

import numpy as np
import structlog

from monitor import SAMPLE_RATE, __version__
from monitor.audio.capture import MicCapture
from monitor.config import AudioConfig
from monitor.core.health import MicHealth
from monitor.core.levels import level_dbfs
from monitor.driver import Driver, Sink
from monitor.service.commands import Controller
from monitor.service.feedback import Feedback
from monitor.service.mqtt_sink import MqttSink
from monitor.service.notify import Notifier
from monitor.service.running import RunningConfig
from monitor.service.state import DaemonState, StateDirLock

log = structlog.get_logger(__name__)
WRITE_RETRY_SECONDS = 5.0  # how often an outbox or answers that could not be written are tried again


class LevelMeter(Sink):
    """Each chunk's level, for the *Sound level* sensor (``publish``: the publisher keeps to its interval)."""

    def __init__(self, publish: Callable[[float], None] | None) -> None:
        self.publish, self.level = publish, None

    def audio(self, chunk: np.ndarray) -> None:
        self.level = level_dbfs(chunk)
        if self.publish:
            self.publish(self.level)

    def diagnostics(self) -> dict:
        return {"level_dbfs": None if self.level is None else round(self.level, 1)}


class MicWatch(Sink):
    """A flat-lined chunk stream (:class:`~monitor.core.health.MicHealth`), or no audio at all for
    ``deaf_after_seconds`` (:meth:`no_audio`), makes the monitor deaf: logged, in ``systemctl status``, on the
    problem sensor at once (``on_change``), and the microphone (:attr:`capture`) reopened with backoff."""

    def __init__(self, config: AudioConfig, notifier: Notifier, on_change: Callable[[], None],
                 capture: MicCapture | None) -> None:
        self.config, self.notifier, self.on_change, self.capture = config, notifier, on_change, capture
        self.health = MicHealth(config.deaf_after_seconds)
        self.last_chunk = time.monotonic()
        self._samples = 0  # the audio clock: every chunk comes here, scored or not
        self._reopen_at, self._reopen_backoff = 0.0, 1.0

    def audio(self, chunk: np.ndarray) -> None:
        self._samples += chunk.size
        self.last_chunk = time.monotonic()
        self._changed(self.health.update(chunk, self._samples / SAMPLE_RATE))
        now = time.monotonic()
        if self.health.state == "deaf" and self.capture and now >= self._reopen_at:
            self.capture.reopen()
            self._reopen_at = now + self._reopen_backoff
            self._reopen_backoff = min(2 * self._reopen_backoff, self.config.reopen_backoff_max_seconds)

    def no_audio(self) -> None:
        self._changed(self.health.no_audio())

    def _changed(self, change: str | None) -> None:
        if change == "deaf":
            log.error("microphone_deaf", seconds=self.config.deaf_after_seconds,
                      detail="digital silence or a flat line; reopening the device with backoff")
            self.notifier.status("microphone problem: no signal")
            self._reopen_at, self._reopen_backoff = time.monotonic(), 1.0
        elif change == "ok":
            log.info("microphone_ok")
            self.notifier.status("listening")
        if change:  # on the problem sensor at once; status stays online: it says the daemon is there
            self.on_change()

    def diagnostics(self) -> dict:
        return {"problem": self.health.state == "deaf"}


class Heartbeat(Sink):
    """systemd: ready at the first chunk (the model loaded and audio flowing), then the watchdog's pings, only
    from the audio path: a hung stream stops them. ``status``: what ready says (listening or paused)."""

    def __init__(self, notifier: Notifier, status: Callable[[], str]) -> None:
        self.notifier, self.status = notifier, status
        self._ready, self._last_ping = False, 0.0

    def audio(self, chunk: np.ndarray) -> None:
        now = time.monotonic()
        if not self._ready:
            self._ready = True
            self.notifier.ready(self.status())
        if self.notifier.watchdog_interval and now - self._last_ping >= self.notifier.watchdog_interval:
            self.notifier.watchdog()
            self._last_ping = now


class Watch:
    """The daemon's once-a-second loop (:meth:`run`), its diagnostics, and the sinks that watch the audio
    (:attr:`sinks`: the level meter, the microphone, the heartbeat), which the driver is given last."""

    def __init__(self, running: RunningConfig, driver: Driver, control: Controller, notifier: Notifier,
                 state: DaemonState, lock: StateDirLock, feedback: Feedback | None, mqtt: MqttSink | None,
                 capture: MicCapture | None) -> None:
        self.running, self.driver, self.control, self.notifier = running, driver, control, notifier
        self.state, self.lock, self.feedback, self.mqtt = state, lock, feedback, mqtt
        self.level = LevelMeter(mqtt.level if mqtt else None)
        self.mic = MicWatch(running.current.audio, notifier, self.publish_diagnostics, capture)
        self.sinks = [self.level, self.mic, Heartbeat(notifier, control.status)]
        self.started = time.monotonic()
        self._broker_problem = False
        self._outbox_retry_at = self._answers_retry_at = 0.0

    async def run(self) -> None:
        """Once a second, whether or not audio flows: no audio for ``deaf_after_seconds`` (device gone, stream
        hung) is a microphone problem; diagnostics go out on time; the daily count rolls over at midnight; answers
        that could not be written are tried again; a state folder deleted under us is made again."""
        self._last_diag, self._day = 0.0, date.today()
        while True:
            await asyncio.sleep(1.0)
            try:
                self._tick()
            except Exception as exc:  # one failing part must not end the watch: it is what notices a dead microphone
                log.error("watch_failed", error=repr(exc)[:300], detail="the watch goes on")

    def _tick(self) -> None:
        """One turn of the watch (each due thing marked done before it runs, so a failing one is not retried every
        second)."""
        now, config = time.monotonic(), self.running.current
        if now - self.mic.last_chunk > config.audio.deaf_after_seconds:
            self.mic.no_audio()
        if now - self._last_diag >= config.mqtt.diagnostics_interval_seconds:
            self._last_diag = now
            self.publish_diagnostics()
        if date.today() != self._day:
            self._day = date.today()
            self.driver.statistics()
            if self.feedback:
                self.feedback.day_changed()
        if self.mqtt:
            self._check_broker(now)
        if self.lock.recreate_if_gone():
            self._write_state_dir_again()
        if self.feedback and self.feedback.unwritten and now >= self._answers_retry_at:
            self._answers_retry_at = now + WRITE_RETRY_SECONDS
            self.feedback.write_unwritten()

    def diagnostics(self) -> dict:
        capture = self.mic.capture.diagnostics() if self.mic.capture else {"dropped_frames": 0, "backlog_s": 0.0}
        return {**self.level.diagnostics(), **self.driver.diagnostics(), **self.mic.diagnostics(), **capture,
                "models": self.driver.models, "version": __version__,
                "uptime_s": round(time.monotonic() - self.started), "monitoring": self.control.listening,
                **(self.mqtt.publisher.diagnostics() if self.mqtt else {})}

    def publish_diagnostics(self) -> None:
        if self.mqtt:
            self.mqtt.diagnostics(self.diagnostics())

    def _check_broker(self, now: float) -> None:
        """A broker unreachable for ``mqtt.unreachable_problem_seconds`` is a problem: logged, in ``systemctl
        status``, and in diagnostics (which Home Assistant sees once it is back, with the outage's length). An
        outbox that could not be written is retried."""
        publisher = self.mqtt.publisher
        unreachable = publisher.unreachable_s > self.running.current.mqtt.unreachable_problem_seconds
        if unreachable != self._broker_problem:
            self._broker_problem = unreachable
            if unreachable:
                log.error("mqtt_unreachable", seconds=round(publisher.unreachable_s),
                          detail="alarms are kept in the outbox and sent when the broker is back")
                self.notifier.status("MQTT broker unreachable")
            else:
                self.notifier.status(self.control.status())
        if not publisher.outbox.available and now >= self._outbox_retry_at:
            self._outbox_retry_at = now + WRITE_RETRY_SECONDS
            publisher.retry_outbox()

    def _write_state_dir_again(self) -> None:
        """Everything the state folder held is in memory: written again, so a restart after someone deleted the
        folder still finds the open cry, the answers and the undelivered events."""
        self.state.save()
        if self.feedback:
            self.feedback.write_all()
        if self.mqtt:
            self.mqtt.publisher.outbox.reopen()
