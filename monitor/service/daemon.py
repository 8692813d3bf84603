"""The daemon: the one place that wires capture → pipeline → events → publish, on asyncio.

Audio arrives on the event loop from the capture callback thread; each chunk is scored on a single worker
thread (``run_in_executor``), so inference never blocks the loop. The reason classifier has its own worker
thread: each classification is a task of the loop awaiting that thread, so its ``cry_reason`` is published
whenever it is ready and the detector never waits for it; a stop waits for the ones under way. MQTT runs on
paho's own network thread and hands commands back to the loop. Signals: SIGTERM/SIGINT stop capture, end an open cry with ``cry_end``,
publish ``offline`` and return within about a second; SIGHUP reloads the config file (:meth:`Daemon.reload`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, datetime
from pathlib import Path

import numpy as np
import soundfile as sf
import structlog

from monitor import SAMPLE_RATE, __version__
from monitor.audio.capture import MicCapture, file_chunks
from monitor.config import SENSITIVITIES, Config, ConfigError, effective_events, load_config
from monitor.core.control import CommandError, ControlState, apply_command
from monitor.core.events import CryEvent, ReasonEvent, event_payload
from monitor.core.health import MicHealth
from monitor.core.levels import level_dbfs
from monitor.core.pipeline import FeedResult, Pipeline
from monitor.core.schedule import ClassifyRequest, reasons_enabled
from monitor.core.stats import CryStats
from monitor.inference.classify import ReasonClassifier
from monitor.inference.detect import make_detector
from monitor.service.clips import ClipRecorder
from monitor.service.mqtt_sink import MqttSink
from monitor.service.notify import Notifier
from monitor.service.outbox import Outbox
from monitor.service.publish import MqttPublisher

log = structlog.get_logger(__name__)
OUTBOX_RETRY_SECONDS = 5.0  # how often an outbox that could not be written is tried again


def lock_state_dir(folder: Path) -> int:
    """One daemon per state folder: two would share an outbox and a client id and take over each other's MQTT
    session in a loop. An advisory lock on the folder itself (so a full or read-only disk cannot prevent it), held
    until the process exits (the kernel drops it even after kill -9); returns its descriptor. A second daemon
    gets a one-line error naming the first one's PID, which the holder writes to ``daemon.lock`` if it can."""
    pid_file = folder / "daemon.lock"
    try:
        if not folder.is_dir():
            folder.mkdir(parents=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise ConfigError(f"state.dir {folder}: cannot use it ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        try:
            holder = pid_file.read_text().strip() or "?"
        except OSError:
            holder = "?"
        raise ConfigError(f"state.dir {folder}: already used by the crymonitor with PID {holder}; one daemon per "
                          "state folder (give each room its own: crymonitor@<room>)") from None
    try:
        pid_file.write_text(f"{os.getpid()}\n")
    except OSError as exc:  # full or read-only: the lock holds anyway, only the message loses the PID
        log.warning("pid_file_unwritable", path=str(pid_file), error=exc.strerror)
    return fd


class Daemon:
    def __init__(self, config: Config, input_path: str | None = None, config_path: Path | None = None) -> None:
        self.config = config
        self.config_path = config_path
        self.input_path = input_path
        self.state_dir = config.state.path()
        self._lock = lock_state_dir(self.state_dir)
        self.detector = make_detector(config.detector)
        self.classifier = ReasonClassifier(config.classifier) if reasons_enabled(config) else None
        self.pipeline = Pipeline(config, self.detector)
        self.controls, self.stats, self._open_cry = self._load_state()
        self.pipeline.events.reconfigure(effective_events(config.events, self.controls.sensitivity, config.detector,
                                                          self.detector.presets))
        self.health = MicHealth(config.audio.deaf_after_seconds)
        self.clips = ClipRecorder(config.clips, self.state_dir / "clips") if config.clips.enabled else None
        self.notifier = Notifier()
        self.mqtt = self._make_mqtt() if config.mqtt.enabled else None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._classify_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="classifier")
        self._capture: MicCapture | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = time.monotonic()
        self._diag = {"level_dbfs": None, "last_score": None, "inference_ms": None}
        self._clip_name: str | None = None
        self._monitoring = True
        self._reopen_at, self._reopen_backoff = 0.0, 1.0
        self._last_chunk = time.monotonic()
        self._inflight: Future | None = None  # the chunk being scored, if any
        self._reasons: set[asyncio.Task] = set()  # classifications under way
        self._broker_problem = False
        self._outbox_retry_at = 0.0

    # --- wiring -------------------------------------------------------------------------------------------
    def _make_mqtt(self) -> MqttSink:
        cfg = self.config
        topic = f"{cfg.mqtt.base_topic}/{cfg.mqtt.device_id}"
        subscriptions = (f"{topic}/set/+",) if cfg.mqtt.accept_commands else ()
        if cfg.homeassistant.enabled:
            subscriptions += (f"{cfg.homeassistant.prefix}/status",)
        # a full or read-only disk leaves the outbox unavailable, never the monitor down: see Outbox, _watch
        outbox = Outbox(self.state_dir / "outbox.sqlite", cfg.state.outbox_max_events, cfg.state.stale_after_seconds)
        publisher = MqttPublisher(cfg.mqtt, outbox, on_message=self._on_mqtt_thread, subscriptions=subscriptions,
                                  call_soon=self._call_soon)
        sink = MqttSink(cfg, publisher, controls=cfg.mqtt.accept_commands, reasons=self.classifier is not None)
        sink.controls(self.controls.to_payload(datetime.now()))
        sink.stats(self.stats.to_payload())
        return sink

    def _source(self) -> AsyncIterator[np.ndarray]:
        if self.input_path is not None:
            return file_chunks(self.input_path, self.config.audio.block_seconds, realtime=True)
        self._capture = MicCapture(self.config.audio)
        return self._capture.chunks()

    # --- persisted controls and statistics -----------------------------------------------------------------
    def _config_controls(self, config: Config) -> dict:
        """The controls a config file sets, in :meth:`ControlState.to_payload` form."""
        return {"sensitivity": config.events.sensitivity, "quiet_hours": config.events.quiet_hours or "OFF"}

    def _load_state(self) -> tuple[ControlState, CryStats, dict | None]:
        """Controls set over MQTT survive restarts, but a control whose value in the config file changed since
        they were saved follows the file: an edit to the file must never be silently overridden. Also the cry
        that was open when the last run died, if it did (:meth:`_end_crashed_cry`)."""
        from_config = self._config_controls(self.config)
        controls = ControlState.from_payload(from_config)
        stats = CryStats()
        open_cry = None
        path = self.state_dir / "state.json"
        if path.exists():
            try:
                saved = json.loads(path.read_text())
                remembered = saved.get("controls", {})
                file_then = saved.get("from_config", {})
                merged = {k: (remembered.get(k, v) if file_then.get(k) == v else v) for k, v in from_config.items()}
                controls = ControlState.from_payload({**remembered, **merged})
                stats = CryStats.from_payload(saved.get("stats", {}))
                open_cry = saved.get("open_cry")
                if open_cry is not None:
                    open_cry = {"id": str(open_cry["id"]), "started_ts": str(open_cry["started_ts"])}
            except (OSError, ValueError, TypeError, AttributeError, KeyError, OverflowError) as exc:  # 1e999 → inf
                log.error("state_file_ignored", path=str(path), error=str(exc))
        return controls, stats, open_cry

    def _save_state(self) -> None:
        path = self.state_dir / "state.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"controls": self.controls.to_payload(), "stats": self.stats.to_payload(),
                                       "from_config": self._config_controls(self.config),
                                       "open_cry": self._open_cry}))
            tmp.replace(path)
        except OSError as exc:
            log.error("state_file_unwritable", path=str(path), error=str(exc))

    def _end_crashed_cry(self) -> None:
        """A cry still open in the state file means the last run died during it (kill -9, power cut): end it
        now with ``ended_by: restart`` and count it, so *Crying* and *Cries today* do not stay wrong. Its
        duration is unknown (``null``): the dead run cannot say when the crying stopped."""
        if self._open_cry is None:
            return
        payload = {**event_payload(CryEvent("cry_end", 0.0, self._open_cry["id"], 0.0), time.time()),
                   "duration_s": None, "ended_by": "restart", "started_ts": self._open_cry["started_ts"]}
        log.warning("cry_end", **payload)
        if self.mqtt:
            self.mqtt.cry_event(payload)
        self._open_cry = None
        self.stats.cry_ended(None, "restart", datetime.now())
        self._save_state()
        self._publish_stats()

    # --- MQTT commands (arrive on paho's thread; handled on the loop) ----------------------------------------
    def _on_mqtt_thread(self, topic: str, payload: bytes, retained: bool) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_mqtt, topic, payload, retained)

    def _call_soon(self, fn) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(fn)
        else:
            fn()

    def _on_mqtt(self, topic: str, payload: bytes, retained: bool = False) -> None:
        if topic == f"{self.config.homeassistant.prefix}/status":
            if payload == b"online" and self.mqtt:
                log.info("homeassistant_online", detail="re-publishing discovery and states")
                self.mqtt.republish()
            return
        control = topic.rsplit("/", 1)[-1]
        if retained:  # a stale retained command would be re-applied at every reconnect, undoing later ones
            log.warning("command_ignored", topic=topic, reason="retained message; publish commands unretained")
            return
        try:
            new = apply_command(self.controls, control, payload)
        except CommandError as exc:
            log.warning("command_rejected", topic=topic, error=str(exc), payload_bytes=len(payload))
            self._publish_controls()  # echo the unchanged state so a UI that guessed reverts
            return
        log.info("command_applied", control=control, state=new.to_payload())
        self._set_controls(new)

    def _set_controls(self, new: ControlState) -> None:
        self.controls = new
        self.pipeline.events.reconfigure(effective_events(self.config.events, new.sensitivity, self.config.detector,
                                                          self.detector.presets))
        self._save_state()
        self._publish_controls()

    def _publish_controls(self) -> None:
        if self.mqtt:
            self.mqtt.controls(self.controls.to_payload(datetime.now()))

    # --- SIGHUP ---------------------------------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read the config file: thresholds, sensitivity, quiet hours and names apply now; an invalid file is
        rejected and the running config kept. Other changes (device, broker, model) need a restart."""
        if self.config_path is None:
            log.warning("reload_ignored", detail="started without --config; nothing to reload")
            return
        try:
            new = load_config(self.config_path)
            for sensitivity in SENSITIVITIES:  # the new events section must combine with the model's presets
                effective_events(new.events, sensitivity, new.detector, self.detector.presets)
        except ConfigError as exc:
            log.error("reload_rejected", error=str(exc), detail="keeping the running config")
            return
        except Exception as exc:  # a loader bug must not take the monitor down at 3 a.m.: the old config stays
            log.error("reload_rejected", error=repr(exc), detail="unexpected; keeping the running config")
            return
        changed_controls = {k: v for k, v in self._config_controls(new).items()
                            if self._config_controls(self.config)[k] != v}  # MQTT-set values stay unless edited
        live = ("events", "homeassistant")
        needs_restart = [f.name for f in dataclasses.fields(new)
                         if f.name not in live + ("logging",) and getattr(new, f.name) != getattr(self.config, f.name)]
        self.config = dataclasses.replace(self.config, events=new.events, homeassistant=new.homeassistant)
        if self.mqtt:
            self.mqtt.config = self.config  # the new Home Assistant name
            self.mqtt.publish_discovery()
        self._set_controls(ControlState.from_payload({**self.controls.to_payload(), **changed_controls}))
        log.info("config_reloaded", path=str(self.config_path), restart_needed_for=needs_restart)

    # --- audio path -----------------------------------------------------------------------------------------
    def _handle(self, result: FeedResult) -> None:
        self._emit(result.events)
        for request in result.requests:
            self._classify(request)

    def _classify(self, request: ClassifyRequest) -> None:
        """Classify on the classifier's own thread as a task of the loop, so the detector never waits for it."""
        task = asyncio.get_running_loop().create_task(self._reason(request))
        self._reasons.add(task)
        task.add_done_callback(self._reasons.discard)

    async def _reason(self, request: ClassifyRequest) -> None:
        assert self.classifier is not None
        started = time.perf_counter()
        try:
            reason = await asyncio.get_running_loop().run_in_executor(self._classify_executor,
                                                                      self.classifier.classify, request.samples)
        except Exception as exc:  # a reason is a hint: log it, keep detecting
            log.error("classify_failed", cry_id=request.id, error=repr(exc))
            return
        self._diag["classify_ms"] = round(1000 * (time.perf_counter() - started), 1)
        event = ReasonEvent(request.t, request.id, reason, request.samples.size / SAMPLE_RATE)
        payload = event_payload(event, time.time() - (self.pipeline.t - event.t))
        log.info(event.type, **payload)
        if self.mqtt:
            self.mqtt.reason_event(payload)

    def _emit(self, events: list[CryEvent]) -> None:
        """Publish first; clips, statistics and the state file come after and may fail without losing the event."""
        now = time.time()
        for event in events:
            payload = event_payload(event, now - (self.pipeline.t - event.t))
            if self.clips is not None:
                payload["clip"] = self._clip(event, now)
            log.info(event.type, **payload)
            if self.mqtt:
                self.mqtt.cry_event(payload)
            self.notifier.status("crying" if event.type == "cry_start" else "listening")
            self._open_cry = {"id": event.id, "started_ts": payload["ts"]} if event.type == "cry_start" else None
            if event.type == "cry_end" and self.stats.cry_ended(event.duration_s, event.ended_by, datetime.now()):
                self._publish_stats()
            self._save_state()  # the open cry too: a crash must not leave it open forever

    def _clip(self, event: CryEvent, now: float) -> str | None:
        try:
            if event.type == "cry_start":
                self._clip_name = self.clips.start(event.id, self.pipeline.buffer, now)
            elif event.type == "cry_end":
                self.clips.stop()
        except (OSError, RuntimeError, sf.LibsndfileError) as exc:  # disk full: the alarm matters more
            log.error("clip_failed", error=str(exc), cry_id=event.id)
            self._clip_name = None
        return self._clip_name

    def _publish_stats(self) -> None:
        if self.mqtt:
            self.mqtt.stats(self.stats.to_payload())

    async def _process(self, chunk: np.ndarray) -> None:
        loop = asyncio.get_running_loop()
        monitoring = self.controls.monitoring(datetime.now())
        if monitoring != self._monitoring:
            self._monitoring = monitoring
            log.info("monitoring_" + ("resumed" if monitoring else "paused"), state=self.controls.to_payload())
            self.notifier.status("listening" if monitoring else "paused")
            self._publish_controls()
            if not monitoring:
                self._handle(self.pipeline.close(ended_by="paused"))
        if monitoring:
            started = time.perf_counter()
            # shielded: if SIGTERM cancels us mid-inference, run() still emits what this chunk decided
            self._inflight = self._executor.submit(self.pipeline.feed, chunk)
            result: FeedResult = await asyncio.shield(asyncio.wrap_future(self._inflight))
            self._inflight = None
            if result.scores:
                self._diag["inference_ms"] = round(1000 * (time.perf_counter() - started) / len(result.scores), 1)
                self._diag["last_score"] = round(result.scores[-1].score, 4)
            self._handle(result)
        else:
            await loop.run_in_executor(self._executor, self.pipeline.skip, chunk)
        if self.clips is not None and self.clips.recording:
            try:
                self.clips.append(self.pipeline.buffer)
            except (OSError, RuntimeError, sf.LibsndfileError) as exc:
                log.error("clip_failed", error=str(exc))
                self.clips.abandon()
        level = level_dbfs(chunk)
        self._diag["level_dbfs"] = round(level, 1)
        if self.mqtt:
            self.mqtt.level(level)
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
        if change and self.mqtt:
            self.mqtt.availability("deaf" if change == "deaf" else "online")
            self._publish_diagnostics()

    def _publish_diagnostics(self) -> None:
        diagnostics = {
            **self._diag, "problem": self.health.state == "deaf",
            "dropped_frames": self._capture.overflows if self._capture else 0,
            "backlog_s": round(self._capture.backlog_seconds, 2) if self._capture else 0.0,
            "models": {"detector": self.detector.model_id,
                       "classifier": self.classifier.model_id if self.classifier else None}, "version": __version__,
            "uptime_s": round(time.monotonic() - self._started), "monitoring": self._monitoring,
        }
        if self.mqtt:
            publisher = self.mqtt.publisher
            diagnostics.update(
                outbox_pending=len(publisher.outbox), outbox_dropped=publisher.outbox.dropped,
                outbox_available=publisher.outbox.available, broker_unreachable_s=round(publisher.unreachable_s),
                broker_problem=publisher.unreachable_s > self.config.mqtt.unreachable_problem_seconds,
                last_broker_outage_s=publisher.last_outage_s)
        if self.mqtt:
            self.mqtt.diagnostics(diagnostics)

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
        hung) is a microphone problem; diagnostics go out on time; the daily count rolls over at midnight."""
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
                self._publish_stats()
            if self.mqtt:
                self._check_broker(now)

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
            self._outbox_retry_at = now + OUTBOX_RETRY_SECONDS
            publisher.retry_outbox()

    async def run(self, early_reloads: list | None = None) -> int:
        """Until SIGTERM/SIGINT or the end of a file input; ``early_reloads``: SIGHUPs that came while starting
        (read once the loop's own handler is installed, so none is lost)."""
        self._loop = loop = asyncio.get_running_loop()
        if self.mqtt:
            self.mqtt.start()
        self._end_crashed_cry()
        consumer = asyncio.ensure_future(self._consume())
        watcher = asyncio.ensure_future(self._watch())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, consumer.cancel)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        log.info("daemon_started", model=self.detector.model_id,
                 classifier=self.classifier.model_id if self.classifier else None, input=self.input_path or "microphone",
                 state_dir=str(self.state_dir), controls=self.controls.to_payload())
        if early_reloads:
            log.info("reload_requested_while_starting")
            self.reload()
        try:
            await consumer
        except asyncio.CancelledError:
            log.info("daemon_stopping", reason="signal")
        finally:
            stopping = time.monotonic()
            watcher.cancel()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self.notifier.stopping()
            if self._capture:
                self._capture.stop()
            # let an in-flight inference finish before touching the pipeline from this thread
            await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
            if self._inflight is not None and not self._inflight.cancelled() and self._inflight.exception() is None:
                self._handle(self._inflight.result())
            # a reason being computed is published; one that is only due now (a cry cut short by the stop) is not
            self._emit(self.pipeline.close().events)
            await asyncio.gather(*self._reasons, return_exceptions=True)
            self._classify_executor.shutdown(wait=False)
            if self.clips is not None:
                self.clips.stop()
            if self.mqtt:
                await asyncio.to_thread(self.mqtt.close, 1.0)
            log.info("daemon_stopped", shutdown_s=round(time.monotonic() - stopping, 3))
        return 0
