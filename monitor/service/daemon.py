"""The daemon: wiring and the asyncio loops around the one driver (:mod:`monitor.driver`).

Audio arrives on the event loop from the capture callback thread (or a file paced like it) and goes through the
driver, which scores it on its inference thread and classifies on its own (a reason is an awaited task), to the
sinks: clips, the state file with the statistics (so the open cry is saved before its alarm is published; at a
``cry_end`` the new statistics go out just before the event), the parents' answers (:mod:`monitor.service.feedback`:
which cries can be labelled), log, MQTT, systemd status and the *Last cry* picture, in that order. MQTT runs on paho's
network thread and hands commands back to the loop, where :class:`~monitor.service.commands.Controller`
applies them (and SIGHUP's reloads). A watch loop, once a second, notices a microphone that
stopped delivering, publishes diagnostics, rolls the daily count over, watches the broker and the state folder. At
start a twin on the device id is refused, and one met later gives way (:mod:`monitor.service.twin`). Signals:
SIGTERM/SIGINT stop capture, end an open cry with ``cry_end``, publish ``offline`` and return within about a
second; SIGHUP reloads the config file (:meth:`Daemon.reload`).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from datetime import date, datetime
from pathlib import Path

import numpy as np
import structlog

from monitor import __version__
from monitor.audio.capture import MicCapture, file_chunks
from monitor.config import Config, ConfigError
from monitor.core.health import MicHealth
from monitor.core.levels import level_dbfs
from monitor.core.pipeline import Pipeline
from monitor.driver import Driver, WallClock
from monitor.inference.classify import make_classifier
from monitor.inference.detect import make_detector
from monitor.service.clips import ClipRecorder
from monitor.service.commands import Controller
from monitor.service.feedback import Feedback
from monitor.service.mqtt_sink import MqttSink
from monitor.service.notify import Notifier
from monitor.service.outbox import Outbox
from monitor.service.picture import CryPictureSink
from monitor.service.publish import MqttPublisher
from monitor.service.running import RunningConfig
from monitor.service.sinks import ClipSink, LogSink, NotifySink
from monitor.service.state import DaemonState, StateDirLock
from monitor.service.twin import in_use, instance, other_instance, refuse_if_live_twin, started_later

log = structlog.get_logger(__name__)
WRITE_RETRY_SECONDS = 5.0  # how often an outbox or answers that could not be written are tried again


class Daemon:
    def __init__(self, config: Config, input_path: str | None = None, config_path: Path | None = None,
                 source: AsyncIterator[np.ndarray] | None = None) -> None:
        """Audio from ``source`` if given (``tools/soak.py``), else the file ``input_path`` paced in real time,
        else the microphone."""
        self.input_path, self._given_source = input_path, source
        self.state_dir = config.state.path()
        self._lock = StateDirLock(self.state_dir)
        self.instance = instance(self.state_dir, time.time())  # who this daemon is, for its twins (twin.py)
        self._twin: str | None = None  # why this daemon stops: a twin on its device id that started earlier
        self._broker_had_ours = False  # our instance came back from the broker (twin.py)
        self._consumer: asyncio.Future | None = None  # the audio loop (run() makes it before any MQTT callback runs)
        self.detector = make_detector(config.detector)
        self.classifier = make_classifier(config)
        self.pipeline = Pipeline(config, self.detector, reasons=self.classifier is not None)
        self.running = RunningConfig(config)
        self.state = DaemonState(self.state_dir, self.running)
        self.health = MicHealth(config.audio.deaf_after_seconds)
        self.notifier = Notifier()
        self.mqtt = self._make_mqtt(config) if config.mqtt.enabled else None
        clips = ClipSink(ClipRecorder(config.clips, self.state_dir / "clips"), self.pipeline.buffer
                         ) if config.clips.enabled else None
        self.driver = Driver(self.pipeline, [], WallClock(), self.classifier, clips=clips, stats=self.state.stats)
        answers = self.mqtt is not None and config.mqtt.accept_commands
        self.feedback = Feedback(
            self.state_dir, self.classifier, config.classifier.feedback_window_hours,
            self.mqtt.last_cry_reason if answers else None, detector_space=self.detector.embedding_space,
            hold_rules=self.detector.hold_rules, on_home=lambda home: self.driver.configure(home=home),
            publish_home=self.mqtt.home_sounds if self.mqtt else None,
        ) if self.classifier or self.detector.hold_rules else None
        self.control = Controller(self.running, config_path, self.state, self.driver, self.detector.presets,
                                  self.mqtt, self.feedback)
        self.driver.sinks += [self.state, *([self.feedback] if self.feedback else []), LogSink(),
                              *([self.mqtt] if self.mqtt else []), NotifySink(self.notifier)]
        if self.mqtt and config.clips.picture:
            self.driver.sinks.append(CryPictureSink(config.classifier.lookback_seconds, self.mqtt.last_cry_picture))
        self.driver.statistics()
        self._capture: MicCapture | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = time.monotonic()
        self._level: float | None = None
        self._monitoring = True
        self._reopen_at, self._reopen_backoff = 0.0, 1.0
        self._last_chunk = time.monotonic()
        self._broker_problem = False
        self._outbox_retry_at = self._answers_retry_at = 0.0

    @property
    def config(self) -> Config:
        """The running config: as started, with what a reload changed (:meth:`Controller.reload`)."""
        return self.running.current

    def _make_mqtt(self, cfg: Config) -> MqttSink:
        twin = refuse_if_live_twin(cfg.mqtt, self.instance)
        if twin:
            raise ConfigError(twin)
        subscriptions = (f"{cfg.mqtt.topic}/set/+",) if cfg.mqtt.accept_commands else ()
        subscriptions += (f"{cfg.mqtt.topic}/instance",)
        if cfg.homeassistant.enabled:
            subscriptions += (f"{cfg.homeassistant.prefix}/status",)
        # a full or read-only disk leaves the outbox unavailable, never the monitor down: see Outbox, _watch
        outbox = Outbox(self.state_dir / "outbox.sqlite", cfg.state.outbox_max_events, cfg.state.stale_after_seconds)
        publisher = MqttPublisher(cfg.mqtt, outbox, on_message=self._on_mqtt_thread, subscriptions=subscriptions,
                                  call_soon=self._call_soon)
        sink = MqttSink(self.running, publisher, live=True, reasons=self.classifier is not None,
                        not_a_cry=self.detector.hold_rules is not None)
        sink.controls(self.state.controls.to_payload(datetime.now()))
        if self.classifier is not None:
            sink.reason(self.state.last_reason)
        publisher.set_retained(f"{cfg.mqtt.topic}/instance", json.dumps(self.instance))
        return sink

    def _source(self) -> AsyncIterator[np.ndarray]:
        if self._given_source is not None:
            return self._given_source
        if self.input_path is not None:
            return file_chunks(self.input_path, self.config.audio.block_seconds, realtime=True)
        self._capture = MicCapture(self.config.audio)
        return self._capture.chunks()

    # --- MQTT arrives on paho's thread; commands are handled on the loop --------------------------------------
    def _on_mqtt_thread(self, topic: str, payload: bytes, retained: bool) -> None:
        if self._loop is None:
            return
        if topic == f"{self.config.mqtt.topic}/instance":
            self._loop.call_soon_threadsafe(self._on_instance, payload, retained)
        else:
            self._loop.call_soon_threadsafe(self.control.on_message, topic, payload, retained)

    def _on_instance(self, payload: bytes, retained: bool) -> None:
        """Who the broker says uses this device id. Ours once, another's after that is a twin that published since
        we did: it is live (twins with one client id take turns on the broker, each getting the other's retained
        one at its connect). Another's before ours ever came back is the last daemon here, which the start's probe
        judged. Of two twins the later one stops (twin.py)."""
        other = other_instance(self.instance, payload)
        if other is None:
            self._broker_had_ours = True
            return
        if retained and not self._broker_had_ours:
            return
        if started_later(self.instance, other):
            self._twin = in_use(self.config.mqtt, other)
            log.error("device_id_in_use", error=self._twin)
            self._consumer.cancel()
        else:  # this one keeps the device, and says so again: the other stops when it sees it
            self.mqtt.publisher.set_retained(f"{self.config.mqtt.topic}/instance", json.dumps(self.instance))

    def _call_soon(self, fn) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(fn)
        else:
            fn()

    # --- audio path -----------------------------------------------------------------------------------------
    async def _process(self, chunk: np.ndarray) -> None:
        monitoring = self.state.controls.monitoring(datetime.now())
        if monitoring != self._monitoring:
            self._monitoring = monitoring
            log.info("monitoring_" + ("resumed" if monitoring else "paused"), state=self.state.controls.to_payload())
            self.notifier.status("listening" if monitoring else "paused")
            self.control.publish()
            if not monitoring:
                await self.driver.close_cry("paused")
        if monitoring:
            await self.driver.feed(chunk)
        else:
            await self.driver.skip(chunk)
        self._level = level_dbfs(chunk)
        if self.mqtt:
            self.mqtt.level(self._level)
        self._last_chunk = time.monotonic()
        self._check_health(chunk)

    def _check_health(self, chunk: np.ndarray | None) -> None:
        """A flat-lined chunk stream, or (``chunk`` None) no audio at all for too long, makes the monitor deaf."""
        change = self.health.update(chunk, self.pipeline.t) if chunk is not None else self.health.no_audio()
        now = time.monotonic()
        if change == "deaf":
            log.error("microphone_deaf", seconds=self.config.audio.deaf_after_seconds,
                      detail="digital silence or a flat line; reopening the device with backoff")
            self.notifier.status("microphone problem: no signal")
            self._reopen_at, self._reopen_backoff = now, 1.0
        elif change == "ok":
            log.info("microphone_ok")
            self.notifier.status("listening")
        if chunk is not None and self.health.state == "deaf" and self._capture and now >= self._reopen_at:
            self._capture.reopen()
            self._reopen_at = now + self._reopen_backoff
            self._reopen_backoff = min(2 * self._reopen_backoff, self.config.audio.reopen_backoff_max_seconds)
        if change:  # on the problem sensor at once; status stays online: it says the daemon is there
            self._publish_diagnostics()

    def _publish_diagnostics(self) -> None:
        if not self.mqtt:
            return
        publisher = self.mqtt.publisher
        self.mqtt.diagnostics({
            "level_dbfs": None if self._level is None else round(self._level, 1),
            "last_score": self.driver.last_score,
            "inference_ms": self.driver.inference_ms, "classify_ms": self.driver.classify_ms,
            "problem": self.health.state == "deaf",
            "dropped_frames": self._capture.overflows if self._capture else 0,
            "backlog_s": round(self._capture.backlog_seconds, 2) if self._capture else 0.0,
            "models": {"detector": self.detector.model_id,
                       "classifier": self.classifier.model_id if self.classifier else None}, "version": __version__,
            "uptime_s": round(time.monotonic() - self._started), "monitoring": self._monitoring,
            "outbox_pending": len(publisher.outbox), "outbox_dropped": publisher.outbox.dropped,
            "outbox_available": publisher.outbox.available, "broker_unreachable_s": round(publisher.unreachable_s),
            "broker_problem": publisher.unreachable_s > self.config.mqtt.unreachable_problem_seconds,
            "last_broker_outage_s": publisher.last_outage_s})

    def _check_broker(self, now: float) -> None:
        """A broker unreachable for ``mqtt.unreachable_problem_seconds`` is a problem: logged, in ``systemctl
        status``, and in diagnostics (which Home Assistant sees once it is back, with the outage's length). An
        outbox that could not be written is retried."""
        publisher = self.mqtt.publisher
        unreachable = publisher.unreachable_s > self.config.mqtt.unreachable_problem_seconds
        if unreachable != self._broker_problem:
            self._broker_problem = unreachable
            if unreachable:
                log.error("mqtt_unreachable", seconds=round(publisher.unreachable_s),
                          detail="alarms are kept in the outbox and sent when the broker is back")
                self.notifier.status("MQTT broker unreachable")
            else:
                self.notifier.status("listening" if self._monitoring else "paused")
        if not publisher.outbox.available and now >= self._outbox_retry_at:
            self._outbox_retry_at = now + WRITE_RETRY_SECONDS
            publisher.retry_outbox()

    # --- loops ----------------------------------------------------------------------------------------------
    async def _consume(self) -> None:
        ready = False
        last_ping = 0.0
        async for chunk in self._source():
            await self._process(chunk)
            now = time.monotonic()
            if not ready:  # model loaded and audio flowing
                ready = True
                self.notifier.ready("listening" if self._monitoring else "paused")
            if self.notifier.watchdog_interval and now - last_ping >= self.notifier.watchdog_interval:
                self.notifier.watchdog()  # only from the audio path: a hung stream stops the pings
                last_ping = now
        log.info("input_ended", audio_seconds=round(self.pipeline.t, 2))

    async def _watch(self) -> None:
        """Once a second, whether or not audio flows: no audio for ``deaf_after_seconds`` (device gone, stream
        hung) is a microphone problem; diagnostics go out on time; the daily count rolls over at midnight; answers
        that could not be written are tried again; a state folder deleted under us is made again."""
        last_diag, day = 0.0, date.today()
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            if now - self._last_chunk > self.config.audio.deaf_after_seconds:
                self._check_health(None)
            if now - last_diag >= self.config.mqtt.diagnostics_interval_seconds:
                self._publish_diagnostics()
                last_diag = now
            if date.today() != day:
                day = date.today()
                self.driver.statistics()
                if self.feedback:
                    self.feedback.day_changed()
            if self.mqtt:
                self._check_broker(now)
            if self._lock.recreate_if_gone():
                self._write_state_dir_again()
            if self.feedback and self.feedback.unwritten and now >= self._answers_retry_at:
                self._answers_retry_at = now + WRITE_RETRY_SECONDS
                self.feedback.write_unwritten()

    def _write_state_dir_again(self) -> None:
        """Everything the state folder held is in memory: written again, so a restart after someone deleted the
        folder still finds the open cry, the answers and the undelivered events."""
        self.state.save()
        if self.feedback:
            self.feedback.write_all()
        if self.mqtt:
            self.mqtt.publisher.outbox.reopen()

    async def run(self, early_reloads: list | None = None) -> int:
        """Until SIGTERM/SIGINT or the end of a file input; ``early_reloads``: SIGHUPs that came while starting
        (read once the loop's own handler is installed, so none is lost)."""
        self._loop = loop = asyncio.get_running_loop()
        if self.mqtt:
            self.mqtt.start()
        crashed = self.state.crashed_cry()
        if crashed:
            self.driver.emit(crashed, time.time())
        consumer = self._consumer = asyncio.ensure_future(self._consume())
        watcher = asyncio.ensure_future(self._watch())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, consumer.cancel)
        loop.add_signal_handler(signal.SIGHUP, self.control.reload)
        log.info("daemon_started", model=self.detector.model_id,
                 classifier=self.classifier.model_id if self.classifier else None, input=self.input_path or "microphone",
                 state_dir=str(self.state_dir), controls=self.state.controls.to_payload())
        if early_reloads:
            log.info("reload_requested_while_starting")
            self.control.reload()
        ended_by = "shutdown"
        try:
            await consumer
        except asyncio.CancelledError:
            log.info("daemon_stopping", reason="signal")
        except Exception:
            ended_by = "input_error"
            raise
        finally:
            stopping = time.monotonic()
            watcher.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self.notifier.stopping()
            if self._capture:
                self._capture.stop()
            await self.driver.stop(ended_by)
            if self.mqtt:
                # a twin that gives way leaves the device to the other: no "offline" for it
                await asyncio.to_thread(self.mqtt.disconnect, 1.0, self._twin is None)
            log.info("daemon_stopped", shutdown_s=round(time.monotonic() - stopping, 3))
        if self._twin:
            raise ConfigError(self._twin)
        return 0
