"""MQTT publishing with paho-mqtt 2.x (callback API v2).

Topics under ``<base_topic>/<device_id>/`` (docs/mqtt.md lists them with payloads):

| topic                  | payload                                   | QoS | retained |
|------------------------|-------------------------------------------|-----|----------|
| status                 | ``online`` / ``offline`` (will): the daemon is there | 1 | yes |
| crying, reason, state, stats | current states                        | 1   | yes      |
| event                  | one JSON object per event (via the outbox) | 1   | no       |
| level, diagnostics     | measurements (the latest kept for a restarted Home Assistant) | 0 | yes |

The client connects asynchronously and retries every 1–2 s on its own network thread, so a broker that is down
at start or goes away later never blocks the daemon, and an alarm raised during an outage goes out within about
2 s of the broker's return (paho's default backoff grows to 30 s). A failed attempt is logged with its reason
(:func:`connection_problem`): at once, then at most every :data:`FAILURE_LOG_SECONDS` with the count. On every
(re)connect it subscribes again, publishes every retained state (the discovery config among them) and, once the
broker has acknowledged them all, ``online``: a subscriber never sees the device available with a state left by a
run that died (a cry still ``ON`` after kill -9 would ring the parents' phone again). Events go through the
:class:`~monitor.service.outbox.Outbox` when one is given: rows left by an earlier run are queued first, each row is
deleted when its PUBACK arrives, and :meth:`close` reports what was never acknowledged.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
import structlog

from monitor.config import MqttConfig
from monitor.service.outbox import Outbox

log = structlog.get_logger(__name__)
FAILURE_LOG_SECONDS = 30.0
PROBE_TIMEOUT_SECONDS = 3.0
ONLINE, OFFLINE = "online", "offline"  # the only payloads of ``status``: Home Assistant's default availability
KEEPALIVE_TIMEOUT = 141  # paho's disconnect reason when nothing came from the broker for a keepalive


def connection_problem(config: MqttConfig) -> str:
    """Why a connection to the broker fails, in words: paho reports a failed attempt without its cause, so the
    attempt is repeated here step by step (name, TCP, TLS)."""
    address = f"{config.host}:{config.port}"
    try:
        sock = socket.create_connection((config.host, config.port), timeout=PROBE_TIMEOUT_SECONDS)
    except socket.gaierror as exc:
        return f"cannot resolve the host name {config.host!r} ({exc.strerror})"
    except ConnectionRefusedError:
        return f"connection refused: nothing listens on {address}"
    except TimeoutError:
        return f"no answer from {address} within {PROBE_TIMEOUT_SECONDS:g} s"
    except OSError as exc:
        return f"{address}: {exc.strerror or exc!r}"
    with sock:
        if not config.tls:
            return "the broker closed the connection (it accepts TCP now: a transient fault, or see its log)"
        try:
            context = ssl.create_default_context(cafile=str(config.tls_ca_file) if config.tls_ca_file else None)
            context.wrap_socket(sock, server_hostname=config.host).close()
        except ssl.SSLCertVerificationError as exc:
            if exc.verify_code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH, _IP_ADDRESS_MISMATCH: OpenSSL checks
                # the name only once the chain is trusted, so here a CA file cannot help, the name can
                return (f"TLS: the broker's certificate is not valid for the host name {config.host!r} (its CA is "
                        "trusted); set mqtt.host to a name the certificate lists")
            return f"TLS: the broker's certificate is not trusted ({exc.verify_message}); set mqtt.tls_ca_file"
        except (ssl.SSLError, OSError) as exc:
            return (f"TLS handshake failed ({getattr(exc, 'reason', None) or exc.strerror or exc!r}): is {address} "
                    "a TLS listener?")
    return "the broker closed the connection (it accepts TCP and TLS now: a transient fault, or see its log)"


def no_connack(config: MqttConfig, seconds: float) -> str:
    """Why a connection failed that TCP accepted and MQTT never answered."""
    return (f"no MQTT answer (CONNACK) from {config.host}:{config.port} within {seconds:g} s: it accepts TCP but "
            "does not speak MQTT there (another service? a TLS listener without mqtt.tls? a hung broker?)")


def make_client(config: MqttConfig, client_id: str) -> mqtt.Client:
    """A paho 2 client with the configured credentials and TLS (the password is read here, never logged)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    if config.username:
        client.username_pw_set(config.username, config.password())
    if config.tls:
        client.tls_set(ca_certs=str(config.tls_ca_file) if config.tls_ca_file else None, cert_reqs=ssl.CERT_REQUIRED)
    return client


class MqttPublisher:
    def __init__(self, config: MqttConfig, outbox: Outbox | None = None,
                 on_message: Callable[[str, bytes, bool], None] | None = None, subscriptions: tuple[str, ...] = (),
                 call_soon: Callable[[Callable[[], None]], None] | None = None) -> None:
        """``on_message(topic, payload, retained)`` runs on paho's thread. ``call_soon`` runs a function on the
        thread that sets states (the daemon's event loop), so a reconnect's re-publish cannot interleave with a
        state change and leave an older value retained on the broker."""
        self.config = config
        self.topic = config.topic
        self.outbox = outbox
        self._retained: dict[str, str | bytes] = {}  # full topic → payload, re-sent on every connect
        self._on_message = on_message
        self._subscriptions = subscriptions
        self._call_soon = call_soon or (lambda fn: fn())
        self._last_level = 0.0
        self._lock = threading.Lock()
        self._unacked: dict[int, int | None] = {}  # mid → outbox row (None: not an outbox message)
        self._acked_early: set[int] = set()  # PUBACKs that beat publish() back to us
        self._before_online: set[int] = set()  # retained states of this connect not yet acknowledged
        self._online_due = False  # ``online`` goes out once _before_online empties
        self.connected = threading.Event()
        self._unreachable_since: float | None = time.monotonic()  # not connected since then (None: connected)
        self.last_outage_s: float | None = None  # how long the broker was unreachable before the last connect
        client = make_client(config, config.client_id or f"crymonitor-{config.device_id}")
        client.will_set(f"{self.topic}/status", OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        self._failures, self._failure_logged = 0, float("-inf")
        self._connack = False  # the broker answered this attempt's CONNECT (accepted or refused)
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_paho_message
        client.suppress_exceptions = True  # a failing callback must not end the network thread (no reconnects)
        self.client = client

    def start(self) -> None:
        log.info("mqtt_connecting", host=self.config.host, port=self.config.port, tls=self.config.tls,
                 username=self.config.username)
        if self.outbox is not None:  # an earlier run's undelivered events go first, in order
            self._publish_pending()
        self.client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_seconds)
        self.client.loop_start()

    def _on_connect_fail(self, client, userdata) -> None:
        self._log_failure("mqtt_connect_failed", lambda: connection_problem(self.config))

    def _log_failure(self, event: str, reason: Callable[[], str]) -> None:
        """At once, then at most every FAILURE_LOG_SECONDS with the count of attempts: never silent, never a flood
        (a broker refusing our login answers every 1–2 s)."""
        self._failures += 1
        now = time.monotonic()
        if now - self._failure_logged >= FAILURE_LOG_SECONDS:
            self._failure_logged = now
            log.error(event, host=self.config.host, port=self.config.port, reason=reason(), attempts=self._failures)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connack = True
        if reason_code.is_failure:
            hint = ""
            if self.config.username and self.config.password() is None:
                hint = " (mqtt.username is set but no password: mqtt.password_file or CRYMONITOR_MQTT_PASSWORD)"
            elif reason_code.value in (134, 135):  # "Bad user name or password", "Not authorized" (MQTT 3.1.1 and 5)
                hint = (f": the broker refused the credentials of user {self.config.username!r} (check mqtt.username "
                        "and the password in mqtt.password_file or CRYMONITOR_MQTT_PASSWORD)" if self.config.username
                        else ": the broker admits no anonymous clients (set mqtt.username and mqtt.password_file)")
            self._log_failure("mqtt_connect_refused", lambda: str(reason_code) + hint)
            return
        self._failures, self._failure_logged = 0, float("-inf")
        since, self._unreachable_since = self._unreachable_since, None
        self.last_outage_s = round(time.monotonic() - since, 1) if since is not None else None
        log.info("mqtt_connected", host=self.config.host, port=self.config.port, unreachable_s=self.last_outage_s)
        # subscribed before anything is published: a RetainedProbe on our own topics relies on that order
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        self.connected.set()  # before republishing, so a state set meanwhile is sent rather than missed
        self._call_soon(self.republish)

    def republish(self) -> None:
        """Every retained state again, then ``online`` once the broker has acknowledged them all (on connect, and
        when Home Assistant restarts)."""
        if not self.connected.is_set():  # queued in paho, these values could arrive after newer ones at the
            return  # reconnect, which republishes anyway
        with self._lock:
            retained = list(self._retained.items())
            self._online_due = False  # not while the states are still being handed to paho
            self._before_online = set()  # a previous connect's states are re-sent here anyway
        for topic, payload in retained:
            self._publish(topic, payload, qos=1, retain=True, before_online=True)
        with self._lock:
            self._online_due = True
        self._online_when_acknowledged()

    def _online_when_acknowledged(self) -> None:
        """``online``, once, when the states of this connect are all acknowledged (on paho's thread when the
        last PUBACK arrives, or at once if they all came back before republish() finished)."""
        with self._lock:
            ready = self._online_due and not self._before_online
            if ready:
                self._online_due = False
        if ready:
            self._publish(f"{self.topic}/status", ONLINE, qos=1, retain=True)

    @property
    def unreachable_s(self) -> float:
        """Seconds since the broker was last connected (or since the start, if never); 0 while connected."""
        since = self._unreachable_since
        return 0.0 if since is None else time.monotonic() - since

    def diagnostics(self) -> dict:
        """The outbox and the broker, for the diagnostics: a broker unreachable for ``unreachable_problem_seconds``
        is a problem."""
        box = self.outbox
        return {"outbox_pending": 0 if box is None else len(box), "outbox_dropped": 0 if box is None else box.dropped,
                "outbox_available": box is not None and box.available,
                "broker_unreachable_s": round(self.unreachable_s),
                "broker_problem": self.unreachable_s > self.config.unreachable_problem_seconds,
                "last_broker_outage_s": self.last_outage_s}

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._unreachable_since is None:
            self._unreachable_since = time.monotonic()
        was_connected = self.connected.is_set()  # not after a refused login: that was logged as such
        self.connected.clear()
        with self._lock:
            self._online_due = False  # the next connect's states must be acknowledged first
        if reason_code != 0 and was_connected:
            log.warning("mqtt_disconnected", reason=str(reason_code), unacked=len(self._unacked))
        elif reason_code == KEEPALIVE_TIMEOUT and not self._connack:  # TCP accepted, then silence until paho
            self._log_failure("mqtt_connect_failed",  # gave up waiting, a keepalive later
                              lambda: no_connack(self.config, self.config.keepalive_seconds))
        self._connack = False

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            if mid not in self._unacked:
                if len(self._acked_early) > 10_000:  # QoS 0 completions land here too; keep it bounded
                    self._acked_early.clear()
                self._acked_early.add(mid)
                return
            row = self._unacked.pop(mid)
            self._before_online.discard(mid)
        if row is not None and self.outbox is not None:
            self.outbox.remove(row)
        self._online_when_acknowledged()

    def _on_paho_message(self, client, userdata, message) -> None:
        if self._on_message is not None:
            self._on_message(message.topic, message.payload, bool(message.retain))

    def _publish(self, topic: str, payload: str | bytes, qos: int, retain: bool = False, row: int | None = None,
                 before_online: bool = False) -> None:
        """``row``: the outbox row its PUBACK deletes; ``before_online``: ``online`` waits for its PUBACK."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        # For QoS 1, MQTT_ERR_NO_CONN still queues the message; it goes out after reconnection.
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.error("mqtt_publish_failed", topic=topic, rc=mqtt.error_string(info.rc))
        if qos > 0:  # QoS 0 measurements are fire-and-forget: nothing to wait for
            with self._lock:
                acked = info.mid in self._acked_early
                if acked:
                    self._acked_early.remove(info.mid)
                else:
                    self._unacked[info.mid] = row
                    if before_online:
                        self._before_online.add(info.mid)
            if acked and row is not None and self.outbox is not None:
                self.outbox.remove(row)

    def set_state(self, leaf: str, payload: str | bytes) -> None:
        """Publish a retained state under the device topic and remember it for reconnects."""
        self.set_retained(f"{self.topic}/{leaf}", payload)

    def set_retained(self, topic: str, payload: str | bytes) -> None:
        """Only the latest value of a state matters: while offline it is just remembered for the reconnect."""
        with self._lock:
            self._retained[topic] = payload
        if self.connected.is_set():
            self._publish(topic, payload, qos=1, retain=True)

    def _publish_pending(self) -> None:
        for seq, topic, payload in self.outbox.pending(now=time.time()):
            self._publish(topic, payload, qos=1, row=seq)

    def retry_outbox(self) -> None:
        """An outbox that could not be written (disk full, read-only) is tried again; once it opens, the events
        it kept from an earlier run go out."""
        if self.outbox is not None and self.outbox.retry():
            self._publish_pending()

    def publish_event(self, event: dict) -> None:
        topic = f"{self.topic}/event"
        row = None
        if self.outbox is not None:
            self.retry_outbox()
            try:
                row = self.outbox.add(topic, event)
            except sqlite3.Error as exc:  # disk full or failing: still publish, only durability is lost
                log.error("outbox_write_failed", error=str(exc), event_id=event.get("id"),
                          detail="published without the outbox: lost if the broker is down and we restart")
        self._publish(topic, json.dumps(event, separators=(",", ":")), qos=1, row=row)

    def publish_measurement(self, leaf: str, payload: str) -> None:
        """Retained, so Home Assistant shows the latest value at once after its restart (not "unknown" until the
        next one); QoS 0, since the next value replaces it anyway."""
        self._publish(f"{self.topic}/{leaf}", payload, qos=0, retain=True)

    def publish_level(self, level_dbfs: float) -> None:
        now = time.monotonic()
        if now - self._last_level >= self.config.level_interval_seconds:
            self._last_level = now
            self.publish_measurement("level", f"{level_dbfs:.1f}")

    def announce_online(self) -> None:
        """``online`` again at once: another process's will said ``offline`` while this one's states were out."""
        self._publish(f"{self.topic}/status", ONLINE, qos=1, retain=True)

    def close(self, timeout: float = 1.0, offline: bool = True) -> int:
        """Publish ``offline`` (unless another process still speaks for the device: ``offline=False``), wait up to
        ``timeout`` for acknowledgements, disconnect; returns unacked count."""
        with self._lock:
            self._online_due = False  # a late PUBACK must not announce us after this
        if offline:
            self._publish(f"{self.topic}/status", OFFLINE, qos=1, retain=True)
        deadline = time.monotonic() + timeout
        while self._unacked and self.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        unacked = len(self._unacked)
        if unacked:
            kept = f"; {len(self.outbox)} events stay in the outbox for the next start" if self.outbox else ""
            log.error("mqtt_unacked_at_exit", count=unacked, detail=f"never acknowledged by a broker{kept}")
        self.client.disconnect()
        self.client.loop_stop()
        return unacked


class RetainedProbe:
    """What the broker held retained on ``topic`` before a publish of ours to it. Subscribed to the topic before
    publishing on the same connection, we receive the broker's retained copy, if it has one, before our own
    message comes back (a broker handles one connection's packets in order, and sends what matches a new
    subscription at once). ``on_message`` has :class:`MqttPublisher`'s signature."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.before: bytes | None = None  # the retained payload the broker had; None: none
        self.echoed = threading.Event()  # our own publish came back: ``before`` is final

    def on_message(self, topic: str, payload: bytes, retained: bool) -> None:
        if topic != self.topic or self.echoed.is_set():
            return
        if retained:  # sent because we subscribed; a live message has the flag cleared (MQTT 3.1.1, 3.3.1.3)
            self.before = payload
        else:
            self.echoed.set()
