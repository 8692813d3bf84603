"""One live daemon per device id on a broker. Two with the same ``mqtt.device_id`` but different state folders (the
service and a manual ``crymonitor run`` with the same config, whose state folder defaults elsewhere) share one
client id, so the broker disconnects each one when the other connects: Home Assistant saw 76 online/offline pairs
in 82 s. The state folder's lock cannot see this; the broker can.

Each daemon publishes who it is, retained, on ``<topic>/instance`` (:func:`instance`): its host, state folder, PID
and start time. Its identity is the host and the state folder (the lock makes that pair unique, and a restart of
the same daemon is no twin of itself).

* At start, before connecting with the device's client id, :func:`refuse_if_live_twin` asks the broker under a
  client id of its own: a retained ``status`` of ``online`` or ``deaf`` with another identity's ``instance`` is a
  live twin, and the start is refused with a one-line error naming the device id. A broker that does not answer
  is no answer: the monitor starts anyway (it must work without a broker). One that accepts TCP and stays silent
  is logged at once as a failed attempt: the publisher would notice only a keepalive later.
* Running, a twin that started while the broker was away shows itself when its ``instance`` arrives live
  (:class:`Twins`): the one started later stops (:func:`started_later`) with the same error; the other publishes
  its own again and keeps the device.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from monitor.config import ConfigError, MqttConfig
from monitor.service.publish import MqttPublisher, make_client, no_connack

log = structlog.get_logger(__name__)

PROBE_SECONDS = 3.0  # the most a start waits for a broker's answer (a loopback broker answers in milliseconds)
LIVE = (b"online", b"deaf")


def instance(state_dir: Path, started: float) -> dict:
    """Who this daemon is, as published on ``<topic>/instance``."""
    return {"host": socket.gethostname(), "state_dir": str(state_dir.resolve()), "pid": os.getpid(),
            "started": started}


def _identity(who: dict) -> tuple[str, str]:
    return str(who.get("host")), str(who.get("state_dir"))


def other_instance(me: dict, payload: bytes) -> dict | None:
    """The daemon an ``instance`` payload names, if it is not this one (None for this one's, or for garbage)."""
    try:
        who = json.loads(payload)
    except ValueError:
        return None
    return who if isinstance(who, dict) and _identity(who) != _identity(me) else None


def started_later(me: dict, other: dict) -> bool:
    """Whether this daemon is the twin that stops: the one started later (ties: by identity, so exactly one)."""
    started = other.get("started")
    if isinstance(started, bool) or not isinstance(started, (int, float)) or not -1e12 < started < 1e12:
        return False  # no usable start time (garbage, or not this version's): this one keeps the device
    return (me["started"], _identity(me)) > (started, _identity(other))


def in_use(config: MqttConfig, other: dict) -> str:
    return (f"mqtt.device_id {config.device_id!r} is already used by the crymonitor on {other.get('host')} with PID "
            f"{other.get('pid')} and state folder {other.get('state_dir')}; give each monitor its own device_id")


def refuse_if_live_twin(config: MqttConfig, me: dict) -> str | None:
    """The one-line error if another daemon is live on this device id, else None (also when the broker does not
    answer within :data:`PROBE_SECONDS`)."""
    status, who, probe = f"{config.topic}/status", f"{config.topic}/instance", f"{config.topic}/probe/{os.getpid()}"
    seen: dict[str, bytes] = {}
    answered, connack = threading.Event(), threading.Event()

    def on_connect(client, userdata, flags, reason_code, properties) -> None:
        connack.set()
        if reason_code.is_failure:  # refused: no answer here, and the publisher will say why
            answered.set()
        else:
            client.subscribe([(status, 1), (who, 1), (probe, 1)])

    def on_message(client, userdata, message) -> None:
        if message.topic == probe:  # it went through the broker after our subscription: the retained ones came
            answered.set()
        else:
            seen[message.topic] = message.payload

    client = make_client(config, f"{config.client_id or 'crymonitor-' + config.device_id}-probe-{os.getpid()}")
    client.on_connect = on_connect
    client.on_subscribe = lambda c, u, mid, rcs, p: c.publish(probe, b"", qos=1)
    client.on_message = on_message
    client.connect_timeout = PROBE_SECONDS
    deadline = time.monotonic() + PROBE_SECONDS
    try:
        client.connect(config.host, config.port, keepalive=max(5, int(PROBE_SECONDS)))
        client.loop_start()
        answered.wait(max(0.0, deadline - time.monotonic()))
        client.disconnect()
        client.loop_stop()
    except (OSError, ValueError):  # unreachable: no answer, and the publisher will say why
        return None
    if not connack.is_set():
        log.error("mqtt_connect_failed", host=config.host, port=config.port, reason=no_connack(config, PROBE_SECONDS),
                  attempts=1)
    other = other_instance(me, seen.get(who, b""))
    return in_use(config, other) if seen.get(status) in LIVE and other is not None else None


class Twins:
    """A running daemon among the others on its device id. ``give_way``: stop (:attr:`error` says why)."""

    def __init__(self, me: dict, config: MqttConfig, give_way: Callable[[], None]) -> None:
        self.me, self.config, self.give_way = me, config, give_way
        self.topic = f"{config.topic}/instance"
        self.error: str | None = None  # why this daemon gave way: a twin on its device id that started earlier
        self.publisher: MqttPublisher | None = None  # where this daemon says who it is (set once it exists)
        self._broker_had_ours = False  # our instance came back from the broker

    def refuse_if_live(self) -> None:
        """At start: a live twin on the device id is a one-line error (:func:`refuse_if_live_twin`)."""
        refused = refuse_if_live_twin(self.config, self.me)
        if refused:
            raise ConfigError(refused)

    def announce(self, publisher: MqttPublisher) -> None:
        """Who uses the device: this daemon (retained)."""
        self.publisher = publisher
        publisher.set_retained(self.topic, json.dumps(self.me))

    def on_instance(self, payload: bytes, retained: bool) -> None:
        """Who the broker says uses this device id (on the event loop). Ours once, another's after that is a twin
        that published since we did: it is live (twins with one client id take turns on the broker, each getting
        the other's retained one at its connect). Another's before ours ever came back is the last daemon here,
        which the start's probe judged. Of two twins the later one stops (:func:`started_later`)."""
        other = other_instance(self.me, payload)
        if other is None:
            self._broker_had_ours = True
        elif retained and not self._broker_had_ours:
            return
        elif started_later(self.me, other):
            self.error = in_use(self.config, other)
            log.error("device_id_in_use", error=self.error)
            self.give_way()
        else:  # this one keeps the device, and says so again: the other stops when it sees it
            self.announce(self.publisher)
