"""What changes a running daemon's controls and config: MQTT commands (``<topic>/set/<control>``, Home
Assistant's status) and SIGHUP reloads of the config file. A change is applied to the state machine (on the
driver's inference thread: :meth:`~monitor.driver.Driver.configure`), saved in ``state.json`` and echoed on
``<topic>/state``. A reload replaces the running config in its one holder (:class:`RunningConfig`), which the
state file and the MQTT sink read. ``set/last_cry_reason`` is the parents' answer, for
:mod:`monitor.service.feedback`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import structlog

from monitor.config import SENSITIVITIES, Config, ConfigError, load_config
from monitor.core.presets import OperatingPoint, effective_events
from monitor.core.control import CommandError, ControlState, apply_command
from monitor.driver import Driver
from monitor.service.feedback import Feedback
from monitor.service.homeassistant import FEEDBACK_CONTROL, FORGET_CONTROL
from monitor.service.mqtt_sink import MqttSink
from monitor.service.notify import Notifier
from monitor.service.running import RunningConfig
from monitor.service.state import DaemonState, config_controls

log = structlog.get_logger(__name__)


class Controller:
    def __init__(self, running: RunningConfig, config_path: Path | None, state: DaemonState, driver: Driver,
                 presets: Mapping[str, OperatingPoint], mqtt: MqttSink | None, feedback: Feedback | None,
                 notifier: Notifier) -> None:
        self.running, self.config_path, self.state, self.driver = running, config_path, state, driver
        self.presets, self.mqtt, self.feedback, self.notifier = presets, mqtt, feedback, notifier
        self.driver.configure(events=self._events_config(self.config, state.controls))
        self.listening = True  # as the driver's gate last said (monitoring)
        self._reloading: asyncio.Task | None = None
        self._reload_again = False

    @property
    def config(self) -> Config:
        return self.running.current

    def _events_config(self, config: Config, controls: ControlState):
        return effective_events(config.events, controls.sensitivity, config.detector, self.presets)

    def monitoring(self) -> bool:
        """The driver's gate, asked before each chunk: listen unless switched off or in quiet hours. A change is
        logged, shown in ``systemctl status`` and echoed on ``<topic>/state``."""
        listening = self.state.controls.monitoring(datetime.now())
        if listening != self.listening:
            self.listening = listening
            log.info("monitoring_" + ("resumed" if listening else "paused"), state=self.state.controls.to_payload())
            self.notifier.status(self.status())
            self.publish()
        return listening

    def status(self) -> str:
        return "listening" if self.listening else "paused"

    def on_message(self, topic: str, payload: bytes, retained: bool = False) -> None:
        """A message on a subscribed topic (on the event loop)."""
        if topic == f"{self.config.homeassistant.prefix}/status":
            if payload == b"online" and self.mqtt:
                log.info("homeassistant_online", detail="re-publishing discovery and states")
                self.mqtt.republish()
            return
        control = topic.rsplit("/", 1)[-1]
        if retained:  # a stale retained command would be re-applied at every reconnect, undoing later ones
            log.warning("command_ignored", topic=topic, reason="retained message; publish commands unretained")
            return
        if control in (FEEDBACK_CONTROL, FORGET_CONTROL):
            if self.feedback is None:
                log.warning("feedback_rejected", error="the reason classifier and not-a-cry marks are off; "
                                                       "there is nothing to teach")
            elif control == FEEDBACK_CONTROL:
                self.feedback.answer(payload)
            else:
                self.feedback.forget_home_sounds(payload)
            return
        try:
            new = apply_command(self.state.controls, control, payload)
        except CommandError as exc:
            log.warning("command_rejected", topic=topic, error=str(exc), payload_bytes=len(payload))
            self.publish()  # echo the unchanged state so a UI that guessed reverts
            return
        log.info("command_applied", control=control, state=new.to_payload())
        self.set(new)

    def set(self, new: ControlState) -> None:
        self.state.controls = new
        self.driver.configure(events=self._events_config(self.config, new))
        self.state.save()
        self.publish()

    def publish(self) -> None:
        if self.mqtt:
            self.mqtt.controls(self.state.controls.to_payload(datetime.now()))

    def reload(self) -> None:
        """SIGHUP (on the event loop): re-read the config file. Thresholds, sensitivity, quiet hours and names apply
        now; an invalid file is rejected and the running config kept. Other changes (device, broker, model) need a
        restart. The file is read and parsed on a thread, so neither a slow file nor the parse stalls the audio or a
        SIGTERM; a SIGHUP during a reload is one more reload after it."""
        if self.config_path is None:
            log.warning("reload_ignored", detail="started without --config; nothing to reload")
            return
        if self._reloading is not None:
            self._reload_again = True
            return
        self._reloading = asyncio.get_running_loop().create_task(self._reload())

    async def _reload(self) -> None:
        try:
            await self._reload_once()
            while self._reload_again:
                self._reload_again = False
                await self._reload_once()
        finally:
            self._reloading = None

    async def _reload_once(self) -> None:
        try:
            new = await asyncio.to_thread(load_config, self.config_path)
            for sensitivity in SENSITIVITIES:  # the new events section must combine with the model's presets
                effective_events(new.events, sensitivity, new.detector, self.presets)
        except ConfigError as exc:
            log.error("reload_rejected", error=str(exc), detail="keeping the running config")
        except Exception as exc:  # a loader bug must not take the monitor down at 3 a.m.: the old config stays
            log.error("reload_rejected", error=repr(exc), detail="unexpected; keeping the running config")
        else:
            self._apply(new)

    def _apply(self, new: Config) -> None:
        changed_controls = {k: v for k, v in config_controls(new).items()
                            if config_controls(self.config)[k] != v}  # MQTT-set values stay unless edited
        live = ("events", "homeassistant")
        needs_restart = [f.name for f in dataclasses.fields(new)
                         if f.name not in live + ("logging",) and getattr(new, f.name) != getattr(self.config, f.name)]
        self.running.current = dataclasses.replace(self.config, events=new.events, homeassistant=new.homeassistant)
        if self.mqtt:
            self.mqtt.publish_discovery()  # the new Home Assistant name
        self.set(ControlState.from_payload({**self.state.controls.to_payload(), **changed_controls}))
        log.info("config_reloaded", path=str(self.config_path), restart_needed_for=needs_restart)
