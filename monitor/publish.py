"""MQTT publishing with paho-mqtt 2.x (callback API v2).

Topics under ``<base_topic>/<device_id>/``:

| topic    | payload                             | QoS | retained |
|----------|-------------------------------------|-----|----------|
| status   | ``online`` / ``offline`` (last will) | 1   | yes      |
| crying   | ``ON`` / ``OFF``                     | 1   | yes      |
| event    | one JSON object per event           | 1   | no       |
| level    | dBFS as a number, rate-limited      | 0   | no       |

The client connects asynchronously and reconnects with backoff (1 → 30 s) on its own network thread, so a
broker that is down at start or goes away later never blocks or crashes the daemon. QoS 1 messages published
while disconnected stay queued in the client (no limit) and go out after reconnection; :meth:`close` waits for
outstanding acknowledgements and logs how many were never acknowledged instead of dropping them silently.
"""

from __future__ import annotations

import json
import ssl
import threading
import time

import paho.mqtt.client as mqtt
import structlog

from monitor.config import MqttConfig

log = structlog.get_logger(__name__)


class MqttPublisher:
    def __init__(self, config: MqttConfig) -> None:
        self.config = config
        self.topic = f"{config.base_topic}/{config.device_id}"
        self._crying = False
        self._last_level = 0.0
        self._lock = threading.Lock()
        self._unacked: set[int] = set()
        self._acked_early: set[int] = set()  # PUBACKs that beat publish() back to us
        self.connected = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=config.client_id or f"crymonitor-{config.device_id}")
        if config.username:
            client.username_pw_set(config.username, config.password())
        if config.tls:
            client.tls_set(ca_certs=str(config.tls_ca_file) if config.tls_ca_file else None,
                           cert_reqs=ssl.CERT_REQUIRED)
        client.will_set(f"{self.topic}/status", "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self.client = client

    def start(self) -> None:
        log.info("mqtt_connecting", host=self.config.host, port=self.config.port, tls=self.config.tls,
                 username=self.config.username)
        self.client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_seconds)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("mqtt_connect_refused", reason=str(reason_code))
            return
        log.info("mqtt_connected", host=self.config.host, port=self.config.port)
        self._send("status", "online", qos=1, retain=True)
        self._send("crying", "ON" if self._crying else "OFF", qos=1, retain=True)
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if reason_code != 0:
            log.warning("mqtt_disconnected", reason=str(reason_code), queued=len(self._unacked))

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            if mid in self._unacked:
                self._unacked.remove(mid)
            else:
                self._acked_early.add(mid)

    def _send(self, leaf: str, payload: str, qos: int, retain: bool = False) -> None:
        info = self.client.publish(f"{self.topic}/{leaf}", payload, qos=qos, retain=retain)
        # For QoS 1, MQTT_ERR_NO_CONN still queues the message; it goes out after reconnection.
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            log.error("mqtt_publish_failed", topic=leaf, rc=mqtt.error_string(info.rc))
        if qos > 0 or info.rc == mqtt.MQTT_ERR_SUCCESS:  # a QoS 0 level sent while offline is simply skipped
            with self._lock:
                if info.mid in self._acked_early:
                    self._acked_early.remove(info.mid)
                else:
                    self._unacked.add(info.mid)

    def publish_event(self, event: dict) -> None:
        self._send("event", json.dumps(event, separators=(",", ":")), qos=1)
        if event["type"] in ("cry_start", "cry_end"):
            self._crying = event["type"] == "cry_start"
            self._send("crying", "ON" if self._crying else "OFF", qos=1, retain=True)

    def publish_level(self, level_dbfs: float) -> None:
        now = time.monotonic()
        if now - self._last_level >= self.config.level_interval_seconds:
            self._last_level = now
            self._send("level", f"{level_dbfs:.1f}", qos=0)

    def close(self, timeout: float = 1.0) -> int:
        """Publish ``offline``, wait up to ``timeout`` for acknowledgements, disconnect; returns unacked count."""
        self._send("status", "offline", qos=1, retain=True)
        deadline = time.monotonic() + timeout
        while self._unacked and self.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        unacked = len(self._unacked)
        if unacked:
            log.error("mqtt_unacked_at_exit", count=unacked,
                      detail="these QoS 1 messages never reached the broker before shutdown")
        self.client.disconnect()
        self.client.loop_stop()
        return unacked
