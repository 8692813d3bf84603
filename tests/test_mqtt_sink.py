"""The MQTT protocol of one device (monitor/service/mqtt_sink.py): what is retained for a restarted Home Assistant,
and ``replay --publish`` as a device of its own, beside a running daemon and with other replays."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from daemon_helpers import DaemonProcess, quiet_file, validate_ha_device_discovery, write_config
from monitor.service.homeassistant import REASON_STATES


def test_measurements_are_retained_for_a_restarted_home_assistant(broker, subscriber_factory, tmp_path):
    daemon = DaemonProcess(write_config(tmp_path / "c.yaml", broker.port, "keep"),  # diagnostics at 1 s, then 30 s
                           "--input", str(quiet_file(tmp_path / "q.wav", 60)))
    try:
        daemon.wait_log("daemon_started")
        time.sleep(3.0)
        late = subscriber_factory(broker.port, "crymonitor/keep/#", client_id="late-ha")  # subscribes after
        msgs = late.wait_for(lambda m: {"crymonitor/keep/level", "crymonitor/keep/diagnostics"}
                             <= {t for t, _, r in m if r}, timeout=10)
    finally:
        daemon.stop(signal.SIGTERM)
    retained = {t: p for t, p, r in msgs if r}
    assert float(retained["crymonitor/keep/level"]) < -40 and "problem" in json.loads(retained["crymonitor/keep/diagnostics"])


def test_replay_publish_is_its_own_device_beside_a_running_daemon(broker, subscriber_factory, cry_then_quiet,
                                                                  tmp_path, capsys):
    """A replay speaks the whole protocol as ``<device>-replay`` with its own client id: the live daemon on the
    same config keeps its session and its topics see nothing of the file (a real HA showed 36 forced
    disconnects when both used one client id)."""
    sub = subscriber_factory(broker.port, "#")
    config = write_config(tmp_path / "c.yaml", broker.port, "both")
    daemon = DaemonProcess(config, "--input", str(quiet_file(tmp_path / "q.wav", 60)))
    try:
        daemon.wait_log("mqtt_connected")
        replay = subprocess.run([sys.executable, "-m", "monitor", "replay", str(cry_then_quiet), "--publish",
                                 "--config", str(config)], capture_output=True, text=True, timeout=120)
        assert replay.returncode == 0, replay.stderr
        sub.wait_for(lambda m: ("crymonitor/both-replay/status", "offline", True) in m
                     or ("crymonitor/both-replay/status", "offline", False) in m)
        time.sleep(0.5)
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    assert code == 0
    assert not [r for r in daemon.logs() if r["event"] == "mqtt_disconnected"]
    on = {leaf: [p for t, p, _ in sub.messages if t == f"crymonitor/both-replay/{leaf}"]
          for leaf in ("event", "crying", "status", "reason", "stats")}
    kinds = [json.loads(p)["type"] for p in on["event"]]
    assert kinds[0] == "cry_start" and kinds[-1] == "cry_end" and "cry_reason" in kinds
    assert on["crying"] == ["OFF", "ON", "OFF"] and on["status"] == ["online", "offline"]
    assert on["reason"][-1] in REASON_STATES and json.loads(on["stats"][-1])["cries_today"] == 1
    device = json.loads(next(p for t, p, _ in sub.messages if t == "homeassistant/device/crymonitor_both-replay/config"))
    validate_ha_device_discovery(device)
    assert device["dev"]["name"].endswith("(replay)") and "enabled" not in device["cmps"]  # nothing to command
    assert "listening" not in device["cmps"] and "quiet_hours" not in device["cmps"]
    # a replay's count restarts at every replay: not a meter whose drop HA would read as a reset
    assert device["cmps"]["cries_today"]["name"] == "Cries in this replay"
    assert "state_class" not in device["cmps"]["cries_today"]
    live = [(t, p) for t, p, _ in sub.messages if t.startswith("crymonitor/both/")]
    assert not [p for t, p in live if t.endswith("/event")] and "offline" not in [p for t, p in live[:-1]
                                                                                    if t.endswith("/status")]

    from monitor.cli import main  # the service is stopped, as docs/home-assistant.md asks

    capsys.readouterr()
    assert main(["ha-remove", "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "removed device both (homeassistant/device/crymonitor_both/config)",
        "removed device both-replay (homeassistant/device/crymonitor_both-replay/config)"]
    sub.wait_for(lambda m: {(f"homeassistant/device/crymonitor_{d}/config", "") for d in ("both", "both-replay")}
                 <= {(t, p) for t, p, _ in m})


def test_replay_events_reach_a_subscriber_that_subscribes_300_ms_after_the_discovery(broker, cry_then_quiet,
                                                                                     tmp_path):
    """Issue 23: Home Assistant subscribes to a new device's topics about 0.1 s after its discovery, and a fast
    replay had sent its first events by then (HA got 5–6 of 8). A slower subscriber than HA misses none; a second
    replay, whose discovery HA has already seen, does not wait."""
    config = write_config(tmp_path / "c.yaml", broker.port, "late")
    events: list[dict] = []
    discovered = threading.Event()

    def on_message(client, userdata, message):
        if message.topic == "homeassistant/device/crymonitor_late-replay/config" and not discovered.is_set():
            discovered.set()
            threading.Timer(0.3, client.subscribe, ("crymonitor/late-replay/event",), {"qos": 1}).start()
        elif message.topic.endswith("/event"):
            events.append(json.loads(message.payload))

    slow_ha = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="slow-ha")
    slow_ha.on_message = on_message
    slow_ha.connect("127.0.0.1", broker.port)
    slow_ha.subscribe("homeassistant/device/+/config", qos=1)
    slow_ha.loop_start()
    try:
        runs = [subprocess.run([sys.executable, "-m", "monitor", "replay", str(cry_then_quiet), "--publish",
                                "--config", str(config)], capture_output=True, text=True, timeout=120)
                for _ in range(2)]
        time.sleep(0.5)
    finally:
        slow_ha.loop_stop()
        slow_ha.disconnect()
    assert [run.returncode for run in runs] == [0, 0], runs[0].stderr
    printed = [json.loads(line) for run in runs for line in run.stdout.splitlines()]
    assert len(printed) >= 6 and [(e["type"], e["id"]) for e in events] == [(e["type"], e["id"]) for e in printed]
    announced = [next(json.loads(line) for line in run.stderr.splitlines() if "discovery_published" in line)
                 for run in runs]
    assert [(a["new"], a["paused_s"]) for a in announced] == [(True, 2.0), (False, 0.0)]


@pytest.mark.slow  # seconds of real work: the full suite, not the fast lane
def test_replay_publish_to_a_broker_it_cannot_reach_is_a_one_line_error(cry_then_quiet, tmp_path, capsys):
    from conftest import free_port
    from monitor.cli import main

    port = free_port()
    config = write_config(tmp_path / "c.yaml", port, "nobroker")
    assert main(["replay", str(cry_then_quiet), "--publish", "--config", str(config)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err  # not a single event replayed into the void
    assert (f"crymonitor: error: cannot reach the broker at localhost:{port} (connection refused: nothing listens "
            f"on localhost:{port})") in err.splitlines()


def test_concurrent_replays_leave_their_device_online_until_the_last_one_ends(broker, subscriber_factory, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"mqtt:\n  port: {broker.port}\n  device_id: rp\nlogging:\n  format: json\n")
    sub = subscriber_factory(broker.port, "crymonitor/rp-replay/status")

    def replay(seconds: float) -> subprocess.Popen:
        audio = quiet_file(tmp_path / f"{seconds}.wav", seconds)
        return subprocess.Popen([sys.executable, "-m", "monitor", "replay", "--config", str(config), "--publish",
                                 "--realtime", "--events-out", os.devnull, str(audio)], stderr=subprocess.PIPE,
                                text=True)

    long, short = replay(8.0), replay(2.0)
    try:
        assert short.wait(timeout=60) == 0, short.stderr.read()
        time.sleep(1.0)  # an offline from the short one would be here by now
        assert long.poll() is None and sub.payloads("status")[-1] == "online"
        assert long.wait(timeout=60) == 0, long.stderr.read()
    finally:
        for run in (long, short):
            run.kill()
            run.wait()
    sub.wait_for(lambda m: sub.payloads("status")[-1:] == ["offline"])  # the last one out marks it offline
    assert sub.payloads("status").count("offline") == 1


# --- without a broker: the fast lane's share of this module ------------------------------------------------------

class Recorder:
    """A publisher that keeps what a sink hands it, in order (no broker)."""

    def __init__(self, topic: str) -> None:
        self.topic, self.sent = topic, []

    def set_retained(self, topic: str, payload) -> None:
        self.sent.append((topic, payload))

    def set_state(self, leaf: str, payload) -> None:
        self.sent.append((f"{self.topic}/{leaf}", payload))

    def publish_event(self, event: dict) -> None:
        self.sent.append((f"{self.topic}/event", event))


def test_the_device_protocol_in_order_without_a_broker():
    from monitor.config import Config, override
    from monitor.core.events import UNCERTAIN, CryEvent
    from monitor.driver import Emitted
    from monitor.service.mqtt_sink import MqttSink
    from monitor.service.running import RunningConfig

    config = override(Config(), "clips", picture=False)
    topic, device = config.mqtt.topic, config.mqtt.device_id
    publisher = Recorder(topic)
    sink = MqttSink(RunningConfig(config), publisher, live=True, reasons=True)
    (where, discovery), *states = publisher.sent
    assert where == f"homeassistant/device/crymonitor_{device}/config" and json.loads(discovery)["cmps"]["enabled"]
    assert "last_cry" not in json.loads(discovery)["cmps"]  # clips.picture off: no picture entity ...
    assert states == [(f"{topic}/crying", "OFF"), (f"{topic}/reason", UNCERTAIN), (f"{topic}/last_cry_picture", "")]
    publisher.sent.clear()  # ... and the one an earlier run left is deleted
    sink.cry_event(Emitted(CryEvent("cry_start", 1.0, "a", 0.95), 0.0))
    sink.cry_event(Emitted(CryEvent("cry_end", 9.0, "a", 0.99, duration_s=8.0, ended_by="quiet"), 0.0))
    assert [(t.rsplit("/", 1)[-1], p if isinstance(p, str) else p["type"]) for t, p in publisher.sent] == [
        ("event", "cry_start"), ("crying", "ON"), ("reason", UNCERTAIN), ("event", "cry_end"), ("crying", "OFF")]


def test_a_replay_is_a_device_of_its_own_with_nothing_to_command():
    from monitor.config import Config
    from monitor.service.mqtt_sink import MqttSink, replay_identity
    from monitor.service.running import RunningConfig

    live = Config()
    replay = replay_identity(live)
    assert replay.mqtt.device_id == f"{live.mqtt.device_id}-replay" and replay.mqtt.topic != live.mqtt.topic
    assert replay.homeassistant.name == f"{live.homeassistant.name} (replay)"
    assert replay.mqtt.client_id.startswith(f"crymonitor-{live.mqtt.device_id}-replay-")  # not the daemon's
    sink = MqttSink(RunningConfig(replay), Recorder(replay.mqtt.topic), live=False, reasons=True)
    components = json.loads(sink.discovery)["cmps"]
    assert "enabled" not in components and "listening" not in components and "last_cry_reason" not in components
