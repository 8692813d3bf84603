"""The whole MQTT protocol of one monitor device, as a sink of events and states (docs/mqtt.md).

One object per device over an :class:`~monitor.service.publish.MqttPublisher`: the Home Assistant discovery config, the
retained states (``crying``, ``reason``, ``state``, ``stats``, ``last_cry_reason``, the *Last cry* picture), the events
and the measurements. The daemon publishes the live nursery through it (:func:`daemon_device`); ``crymonitor replay
--publish`` publishes a file's events through another one, as its own device (:func:`replay_identity`), so that a
replay can never pretend to be the live nursery.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from monitor.config import Config, ConfigError, MqttConfig
from monitor.core.events import UNCERTAIN
from monitor.core.stats import CryStats
from monitor.driver import Emitted, Sink
from monitor.service.homeassistant import (FEEDBACK_CONTROL, HOME_SOUNDS, PICTURE, discovery_payload, discovery_topic,
                                           feedback_options)
from monitor.service.outbox import Outbox
from monitor.service.publish import MqttPublisher, RetainedProbe, connection_problem
from monitor.service.running import RunningConfig

log = structlog.get_logger(__name__)
NEW_DEVICE_PAUSE_SECONDS = 2.0  # HA subscribes to a new device's topics ~0.1 s after its discovery; 20 times that
CONNECT_TIMEOUT_SECONDS = 5.0  # paho retries every 1–2 s: three attempts


def replay_identity(config: Config) -> Config:
    """The config of the device a replay publishes as: ``<device_id>-replay``, named "… (replay)", with its own
    client id (the live daemon's would make the broker disconnect one of the two at every connect)."""
    mqtt: MqttConfig = config.mqtt
    client_id = f"{mqtt.client_id or 'crymonitor-' + mqtt.device_id}-replay-{os.getpid()}"
    return dataclasses.replace(
        config, mqtt=dataclasses.replace(mqtt, device_id=f"{mqtt.device_id}-replay", client_id=client_id),
        homeassistant=dataclasses.replace(config.homeassistant, name=f"{config.homeassistant.name} (replay)"))


class ReplayRollCall:
    """Concurrent ``replay --publish`` runs share one device, ``<device_id>-replay``: the first to finish must not
    mark it offline while another still publishes. At its end a run asks who else is still running (its id on
    ``<topic>/replay/roll_call``) and every run not yet finishing answers on ``<topic>/replay/here``; the device
    goes offline only if nobody answers within :data:`ROLL_CALL_SECONDS` (:meth:`last_one`). Runs finishing
    together both stop answering before they ask, so the last of them sees nobody and the device ends offline. A
    run killed outright leaves its will, ``offline``: a run still going sets the device online again.

    ``publisher`` is set once the publisher exists (it takes :meth:`on_message` and :attr:`subscriptions`)."""

    ROLL_CALL_SECONDS = 0.5  # a broker answers in milliseconds on a LAN

    def __init__(self, topic: str) -> None:
        self.topic, self.me = topic, f"{os.getpid()}-{os.urandom(4).hex()}"
        self.subscriptions = (f"{topic}/replay/roll_call", f"{topic}/replay/here", f"{topic}/status")
        self.publisher: MqttPublisher | None = None
        self._finishing = False
        self._answered = threading.Event()

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        """On paho's thread."""
        if retained or payload == self.me.encode():
            return
        if topic == f"{self.topic}/replay/roll_call" and not self._finishing:
            self.publisher.client.publish(f"{self.topic}/replay/here", self.me)  # QoS 0: an answer now or never
        elif topic == f"{self.topic}/replay/here":
            self._answered.set()
        elif topic == f"{self.topic}/status" and payload == b"offline" and not self._finishing:
            self.publisher.announce_online()  # another run's will: this one is still running

    def last_one(self) -> bool:
        """Whether no other run still publishes as the device (then this one marks it offline)."""
        self._finishing = True
        if not self.publisher.connected.is_set():  # nobody to ask: as before, offline
            return True
        self.publisher.client.publish(f"{self.topic}/replay/roll_call", self.me)
        return not self._answered.wait(self.ROLL_CALL_SECONDS)


class MqttSink(Sink):
    """``live``: the daemon, which publishes its controls' ``state`` and, with ``mqtt.accept_commands``, obeys
    ``set/*`` commands, so its discovery offers the switch, selects and text; a replay device has none.
    ``reasons``: a reason classifier runs, so ``reason`` is ``uncertain`` from the start and at each
    ``cry_start`` (and, with the controls, the "Last cry was" select is offered). The *Last cry* picture is
    offered unless ``clips.picture`` is off, which also deletes one published before."""

    def __init__(self, running: RunningConfig, publisher: MqttPublisher, live: bool, reasons: bool,
                 not_a_cry: bool = False) -> None:
        self.running, self.publisher, self.live, self.reasons = running, publisher, live, reasons
        self.not_a_cry = not_a_cry  # the detector's "not a cry" marks are on (the select offers the answer)
        self.has_controls = live and self.config.mqtt.accept_commands
        self.discovery: str | None = None  # the discovery config published last
        self.publish_discovery()
        publisher.set_state("crying", "OFF")
        if reasons:  # HA shows "unknown" (no data) until a first value; the daemon then sets the last cry's
            self.reason(UNCERTAIN)
        if not self.config.clips.picture:
            publisher.set_state(PICTURE, "")  # an empty retained message deletes the retained one

    @property
    def config(self) -> Config:
        """The running config (a reload changes the Home Assistant name)."""
        return self.running.current

    def publish_discovery(self) -> None:
        ha = self.config.homeassistant
        if ha.enabled:
            self.discovery = json.dumps(discovery_payload(
                self.publisher.topic, self.config.mqtt.device_id, ha.name, self.live, self.has_controls,
                feedback=feedback_options(self.reasons, self.not_a_cry) if self.has_controls else (),
                picture=self.config.clips.picture))
            self.publisher.set_retained(discovery_topic(ha.prefix, self.config.mqtt.device_id), self.discovery)

    def wait_until_discovered(self, probe: RetainedProbe) -> None:
        """Block until the broker has our discovery config (``probe`` watches its topic) and, if it is new or
        changed, :data:`NEW_DEVICE_PAUSE_SECONDS` more: long enough for Home Assistant to subscribe to the
        device's topics before the first event, which it would otherwise miss (retained states it gets anyway).
        A fixed pause, not HA's birth message: HA sends that when it starts, not when it has subscribed to a new
        device. An unchanged config needs none: HA subscribed when it first saw it. A broker that cannot be
        reached is a one-line error."""
        if not probe.echoed.wait(CONNECT_TIMEOUT_SECONDS):
            self.disconnect(timeout=0.0)
            mqtt = self.config.mqtt
            raise ConfigError(f"cannot reach the broker at {mqtt.host}:{mqtt.port} ({connection_problem(mqtt)})")
        new = probe.before != self.discovery.encode()
        log.info("discovery_published", topic=probe.topic, new=new, paused_s=NEW_DEVICE_PAUSE_SECONDS if new else 0.0)
        if new:
            time.sleep(NEW_DEVICE_PAUSE_SECONDS)

    def cry_event(self, emitted: Emitted) -> None:
        """A ``cry_start`` or ``cry_end``: the event, and the *Crying* state it implies."""
        start = emitted.event.type == "cry_start"
        self.publisher.publish_event(emitted.payload())
        self.publisher.set_state("crying", "ON" if start else "OFF")
        if start and self.reasons:
            self.reason(UNCERTAIN)  # not the previous cry's reason

    def reason_event(self, emitted: Emitted) -> None:
        self.publisher.publish_event(emitted.payload())
        self.reason(emitted.event.reason.reason)

    def statistics(self, stats: CryStats) -> None:
        """Cries today and the last one's length."""
        self.publisher.set_state("stats", json.dumps(stats.to_payload()))

    def reason(self, reason: str) -> None:
        """The *Cry reason* state: the current or last cry's reason."""
        self.publisher.set_state("reason", reason)

    def last_cry_picture(self, png: bytes) -> None:
        """The *Last cry* image (:mod:`monitor.service.picture`), retained until the next cry's."""
        self.publisher.set_state(PICTURE, png)

    def last_cry_reason(self, answer: str) -> None:
        """The "Last cry was" select's state: the parents' answer for the latest cry, ``"None"`` before one."""
        self.publisher.set_state(FEEDBACK_CONTROL, answer)

    def home_sounds(self, payload: dict) -> None:
        """How many "not a cry" sounds are kept and how many detections they suppressed today."""
        self.publisher.set_state(HOME_SOUNDS, json.dumps(payload))

    def controls(self, payload: dict) -> None:
        self.publisher.set_state("state", json.dumps(payload))

    def diagnostics(self, payload: dict) -> None:
        self.publisher.publish_measurement("diagnostics", json.dumps(payload))

    def level(self, level_dbfs: float) -> None:
        self.publisher.publish_level(level_dbfs)

    def republish(self) -> None:
        """Discovery and every state again, then ``online`` (Home Assistant restarted)."""
        self.publisher.republish()

    def start(self) -> None:
        self.publisher.start()

    def disconnect(self, timeout: float = 1.0, offline: bool = True) -> int:
        """``offline`` (unless another process still speaks for the device), then wait up to ``timeout`` for
        acknowledgements; returns how many never came. Its owner calls it (the daemon, replay), not the driver: the
        stats of an ended cry may still be due."""
        return self.publisher.close(timeout, offline)


def daemon_device(running: RunningConfig, state_dir: Path, reasons: bool, not_a_cry: bool,
                  on_message: Callable[[str, bytes, bool], None], call_soon: Callable) -> MqttSink:
    """The live nursery's device: its publisher subscribed to its commands (with ``mqtt.accept_commands``), its
    ``instance`` topic (:mod:`monitor.service.twin`) and Home Assistant's status, with the outbox in the state
    folder (a full or read-only disk leaves it unavailable, never the monitor down: the watch retries it)."""
    config = running.current
    subscriptions = (f"{config.mqtt.topic}/set/+",) if config.mqtt.accept_commands else ()
    subscriptions += (f"{config.mqtt.topic}/instance",)
    if config.homeassistant.enabled:
        subscriptions += (f"{config.homeassistant.prefix}/status",)
    outbox = Outbox(state_dir / "outbox.sqlite", config.state.outbox_max_events, config.state.stale_after_seconds)
    publisher = MqttPublisher(config.mqtt, outbox, on_message=on_message, subscriptions=subscriptions,
                              call_soon=call_soon)
    return MqttSink(running, publisher, live=True, reasons=reasons, not_a_cry=not_a_cry)
