"""The daemon: the wiring around the one driver (:mod:`monitor.driver`), and the signals.

Audio from the microphone (or a file paced like it) goes through :meth:`Driver.run`, gated by the controls
(:meth:`Controller.monitoring`), to the sinks: the clips (asked first), the state file (the open cry saved before its
alarm goes out), the parents' answers, log, MQTT, systemd status, the *Last cry* picture, then the watch's
(:mod:`~monitor.service.watch`). Commands come on paho's thread and are applied on the loop (:class:`Controller`).
A twin on the device id is refused or gives way (:mod:`~monitor.service.twin`). SIGTERM/SIGINT stop capture, end an
open cry, publish ``offline`` and return within about a second; SIGHUP reloads the config file.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import numpy as np
import structlog

from monitor.audio.capture import MicCapture, file_chunks
from monitor.config import Config, ConfigError
from monitor.core.pipeline import Pipeline
from monitor.driver import Driver, WallClock
from monitor.inference.classify import make_classifier
from monitor.inference.detect import make_detector
from monitor.service.clips import ClipRecorder
from monitor.service.commands import Controller
from monitor.service.feedback import Feedback
from monitor.service.mqtt_sink import MqttSink, daemon_device
from monitor.service.notify import Notifier
from monitor.service.picture import CryPictureSink
from monitor.service.running import RunningConfig
from monitor.service.sinks import ClipSink, LogSink, NotifySink
from monitor.service.state import DaemonState, StateDirLock
from monitor.service.twin import Twins, instance
from monitor.service.watch import Watch

log = structlog.get_logger(__name__)


class Daemon:
    def __init__(self, config: Config, input_path: str | None = None, config_path: Path | None = None,
                 source: AsyncIterator[np.ndarray] | None = None) -> None:
        """Audio from ``source`` if given (``tools/soak.py``), else the file ``input_path`` paced in real time,
        else the microphone."""
        self.input_path, self.running, self.state_dir = input_path, RunningConfig(config), config.state.path()
        self._lock = StateDirLock(self.state_dir)
        self.twins = Twins(instance(self.state_dir, time.time()), config.mqtt, give_way=lambda: self._stop("twin"))
        # run()'s: the loop (MQTT messages before it have nothing to apply), the driver's run, when it stopped
        self._loop, self._listening, self._stopping_at = None, None, None
        self.detector = make_detector(config.detector)
        self.classifier = make_classifier(config)
        self.pipeline = Pipeline(config, self.detector, reasons=self.classifier is not None)
        self.state, self.notifier = DaemonState(self.state_dir, self.running), Notifier()
        self.mqtt = self._make_mqtt() if config.mqtt.enabled else None
        clips = ClipSink(ClipRecorder(config.clips, self.state_dir / "clips"), self.pipeline.buffer)
        self.driver = Driver(self.pipeline, [], WallClock(), self.classifier,
                             clips=clips if config.clips.enabled else None, stats=self.state.stats)
        self.feedback = Feedback(
            self.state_dir, self.classifier, config.classifier.feedback_window_hours,
            self.mqtt.last_cry_reason if self.mqtt and config.mqtt.accept_commands else None,
            detector_space=self.detector.embedding_space, hold_rules=self.detector.hold_rules,
            on_home=lambda home: self.driver.configure(home=home), publish_home=self.mqtt and self.mqtt.home_sounds,
        ) if self.classifier or self.detector.hold_rules else None
        self.control = Controller(self.running, config_path, self.state, self.driver, self.detector.presets,
                                  self.mqtt, self.feedback, self.notifier)
        self.capture = MicCapture(config.audio) if source is None and input_path is None else None
        self.watch = Watch(self.running, self.driver, self.control, self.notifier, self.state, self._lock,
                           self.feedback, self.mqtt, self.capture)
        picture = self.mqtt and config.clips.picture
        self.driver.sinks += [self.state, *([self.feedback] if self.feedback else []), LogSink(),
                              *([self.mqtt] if self.mqtt else []), NotifySink(self.notifier),
                              *([CryPictureSink(config.classifier.lookback_seconds, self.mqtt.last_cry_picture)]
                                if picture else []), *self.watch.sinks]
        self.driver.statistics()
        self._source = source or (self.capture.chunks() if self.capture else
                                  file_chunks(input_path, config.audio.block_seconds, realtime=True))

    def _make_mqtt(self) -> MqttSink:
        self.twins.refuse_if_live()
        sink = daemon_device(self.running, self.state_dir, self.classifier is not None,  # it connects in run()
                             self.detector.hold_rules is not None, self._on_mqtt_thread,
                             call_soon=lambda fn: self._loop.call_soon_threadsafe(fn))
        sink.controls(self.state.controls.to_payload(datetime.now()))
        if self.classifier is not None:
            sink.reason(self.state.last_reason)
        self.twins.announce(sink.publisher)
        return sink

    def _on_mqtt_thread(self, topic: str, payload: bytes, retained: bool) -> None:
        if self._loop is not None:
            if topic == self.twins.topic:
                self._loop.call_soon_threadsafe(self.twins.on_instance, payload, retained)
            else:
                self._loop.call_soon_threadsafe(self.control.on_message, topic, payload, retained)

    async def run(self, early_reloads: list | None = None) -> int:
        """Until SIGTERM/SIGINT or the end of a file input; ``early_reloads``: SIGHUPs that came while starting
        (read once the loop's own handler is installed, so none is lost)."""
        self._loop = loop = asyncio.get_running_loop()
        if self.mqtt:
            self.mqtt.start()
        crashed = self.state.crashed_cry()
        if crashed:  # out like any other event: counted, saved, published
            self.driver.emit(crashed, time.time())
        listening = self._listening = asyncio.ensure_future(self.driver.run(self._source, self.control.monitoring))
        watching = asyncio.ensure_future(self.watch.run())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop, "signal")
        loop.add_signal_handler(signal.SIGHUP, self.control.reload)
        log.info("daemon_started", model=self.detector.model_id,
                 classifier=self.classifier.model_id if self.classifier else None, input=self.input_path or "microphone",
                 state_dir=str(self.state_dir), controls=self.state.controls.to_payload())
        if early_reloads:
            log.info("reload_requested_while_starting")
            self.control.reload()
        try:
            await listening  # the driver ends an open cry and closes the sinks as it stops
            log.info("input_ended", audio_seconds=round(self.pipeline.t, 2))
        except asyncio.CancelledError:
            pass
        finally:
            self._stop()
            watching.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self.driver.stop()  # stopped already, unless it was cancelled before it began
            if self.mqtt:  # a twin that gives way leaves the device to the other: no "offline" for it
                await asyncio.to_thread(self.mqtt.disconnect, 1.0, self.twins.error is None)
            log.info("daemon_stopped", shutdown_s=round(time.monotonic() - self._stopping_at, 3))
        if self.twins.error:
            raise ConfigError(self.twins.error)
        return 0

    def _stop(self, reason: str | None = None) -> None:
        """Stop listening: capture first, then the driver's run, which ends an open cry and closes the sinks."""
        if self._stopping_at is None:
            self._stopping_at = time.monotonic()
            if reason:
                log.info("daemon_stopping", reason=reason)
            self.notifier.stopping()
            if self.capture:
                self.capture.stop()
        if self._listening is not None:
            self._listening.cancel()
