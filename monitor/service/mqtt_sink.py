"""The whole MQTT protocol of one monitor device, as a sink of events and states (README "MQTT topics").

One object per device over an :class:`~monitor.service.publish.MqttPublisher`: the Home Assistant discovery config, the
retained states (``crying``, ``reason``, ``state``, ``stats``, ``last_cry_reason``), the events and the measurements. The daemon
publishes the live nursery through it; ``crymonitor replay --publish`` publishes a file's events through another
one, as its own device (:func:`replay_identity`), so that a replay can never pretend to be the live nursery.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading

from monitor.config import Config, MqttConfig
from monitor.core.events import UNCERTAIN
from monitor.service.driver import Sink
from monitor.service.homeassistant import FEEDBACK_CONTROL, discovery_payload, discovery_topic
from monitor.service.publish import MqttPublisher


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
            self.publisher.set_availability("online")  # another run's will: this one is still running

    def last_one(self) -> bool:
        """Whether no other run still publishes as the device (then this one marks it offline)."""
        self._finishing = True
        if not self.publisher.connected.is_set():  # nobody to ask: as before, offline
            return True
        self.publisher.client.publish(f"{self.topic}/replay/roll_call", self.me)
        return not self._answered.wait(self.ROLL_CALL_SECONDS)


class MqttSink(Sink):
    """``controls``: the device obeys ``set/*`` commands (the live daemon), so its discovery offers the switch and
    the selects; a replay device has none. ``reasons``: a reason classifier runs, so ``reason`` is reset at each
    ``cry_start`` (and, with ``controls``, the "Last cry was" select is offered)."""

    def __init__(self, config: Config, publisher: MqttPublisher, controls: bool, reasons: bool) -> None:
        self.config, self.publisher, self.has_controls, self.reasons = config, publisher, controls, reasons
        self.publish_discovery()
        publisher.set_state("crying", "OFF")

    def publish_discovery(self) -> None:
        ha = self.config.homeassistant
        if ha.enabled:
            payload = discovery_payload(self.publisher.topic, self.config.mqtt.device_id, ha.name, self.has_controls,
                                        feedback=self.has_controls and self.reasons)
            self.publisher.set_retained(discovery_topic(ha.prefix, self.config.mqtt.device_id), json.dumps(payload))

    def cry_event(self, payload: dict) -> None:
        """A ``cry_start`` or ``cry_end`` payload: the event, and the *Crying* state it implies."""
        self.publisher.publish_event(payload)
        self.publisher.set_state("crying", "ON" if payload["type"] == "cry_start" else "OFF")
        if payload["type"] == "cry_start" and self.reasons:
            self.publisher.set_state("reason", UNCERTAIN)  # not the previous cry's reason

    def reason_event(self, payload: dict) -> None:
        self.publisher.publish_event(payload)
        self.publisher.set_state("reason", payload["reason"])

    def last_cry_reason(self, answer: str) -> None:
        """The "Last cry was" select's state: the parents' answer for the latest cry, ``"None"`` before one."""
        self.publisher.set_state(FEEDBACK_CONTROL, answer)

    def controls(self, payload: dict) -> None:
        self.publisher.set_state("state", json.dumps(payload))

    def stats(self, payload: dict) -> None:
        self.publisher.set_state("stats", json.dumps(payload))

    def diagnostics(self, payload: dict) -> None:
        self.publisher.publish_measurement("diagnostics", json.dumps(payload))

    def level(self, level_dbfs: float) -> None:
        self.publisher.publish_level(level_dbfs)

    def availability(self, availability: str) -> None:
        self.publisher.set_availability(availability)

    def republish(self) -> None:
        """Discovery, availability and every state again (Home Assistant restarted)."""
        self.publisher.republish()

    def start(self) -> None:
        self.publisher.start()

    def disconnect(self, timeout: float = 1.0, offline: bool = True) -> int:
        """``offline`` (unless another process still speaks for the device), then wait up to ``timeout`` for
        acknowledgements; returns how many never came. Its owner calls it (the daemon, replay), not the driver: the
        stats of an ended cry may still be due."""
        return self.publisher.close(timeout, offline)
