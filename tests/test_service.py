"""Issue 5 behaviour of the real daemon process: Home Assistant discovery, control, durability, signals, health."""

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import jinja2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
import soundfile as sf
from PIL import Image

from daemon_helpers import DaemonProcess, quiet_file, write_config
from monitor.service.homeassistant import EVENT_TYPES, REASON_STATES

HA_PLATFORMS = {"binary_sensor", "event", "sensor", "switch", "select", "number", "button", "text", "image"}
BINARY_SENSOR_CLASSES = {"sound", "problem", "connectivity", "running"}
SENSOR_CLASSES = {"enum", "sound_pressure", "duration", "timestamp", None}


def validate_ha_device_discovery(config: dict) -> None:
    """The checks Home Assistant's MQTT device discovery applies to a device-based config."""
    device = config.get("dev") or config.get("device")
    assert device and (device.get("ids") or device.get("identifiers")), "required key not provided: device ids"
    assert config.get("o", {}).get("name"), "origin name required"
    components = config.get("cmps") or config.get("components")
    assert components
    unique_ids = [c["unique_id"] for c in components.values()]
    assert len(set(unique_ids)) == len(unique_ids)
    for key, comp in components.items():
        platform = comp.get("p") or comp.get("platform")
        assert platform in HA_PLATFORMS, (key, platform)
        assert comp.get("unique_id"), key
        for field, value in comp.items():
            if field.endswith("_topic"):
                assert value and "#" not in value and "+" not in value, (key, field)
        if platform == "binary_sensor":
            assert comp.get("device_class") in BINARY_SENSOR_CLASSES and comp["state_topic"]
        if platform == "sensor":
            assert comp.get("device_class") in SENSOR_CLASSES
            if comp.get("device_class") == "enum":
                assert comp["options"] and all(isinstance(o, str) for o in comp["options"])
            if comp.get("device_class") == "sound_pressure":
                assert comp["unit_of_measurement"] == "dB"
        if platform == "event":
            assert comp["event_types"] and comp["state_topic"]
        if platform in ("switch", "select"):
            assert comp["command_topic"]
        if platform == "select":
            assert comp["options"]
        if platform == "text":
            assert comp["command_topic"] and re.compile(comp.get("pattern", ""))
        if platform == "image":
            assert comp["image_topic"] and comp["content_type"].startswith("image/")


def ha_state(component: dict, payload: str) -> str:
    """What Home Assistant makes of a state ``payload`` for a discovered ``component``: its value_template
    rendered (HA's templates are Jinja2)."""
    return jinja2.Template(component["value_template"]).render(value_json=json.loads(payload))


def publish(port: int, topic: str, payload: bytes, retain: bool = False) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"cmd-{time.monotonic_ns()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_home_assistant_discovery_and_rediscovery(broker, subscriber_factory, tmp_path, capsys):
    sub = subscriber_factory(broker.port, "#")
    daemon = DaemonProcess(write_config(tmp_path / "c.yaml", broker.port, "ha1"),
                           "--input", str(quiet_file(tmp_path / "q.wav", 60)))
    try:
        msgs = sub.wait_for(lambda m: any(t == "homeassistant/device/crymonitor_ha1/config" for t, _, _ in m))
        config = json.loads([p for t, p, _ in msgs if t.endswith("/config")][0])
        validate_ha_device_discovery(config)
        assert config["cmps"]["crying"]["device_class"] == "sound"
        assert config["cmps"]["cry"]["event_types"] == list(EVENT_TYPES)
        assert config["avty"] == [{"t": "crymonitor/ha1/status", "pl_avail": "online", "pl_not_avail": "offline"}]
        assert config["cmps"]["last_cry"]["image_topic"] == "crymonitor/ha1/last_cry_picture"  # clips.picture on
        assert "qos" not in config and all(c["qos"] == 1 for c in config["cmps"].values())  # HA reads it here
        assert config["cmps"]["cries_today"]["state_class"] == "total_increasing"  # midnight reset is no drop
        publish(broker.port, "homeassistant/status", b"online")  # Home Assistant restarted
        sub.wait_for(lambda m: sum(t.endswith("crymonitor_ha1/config") for t, _, _ in m) >= 2)
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    assert code == 0
    assert json.loads(sub.payloads("config")[-1]) == config
    # no cry yet: "uncertain", not HA's "unknown" (no data), and before the device is available
    first_online = [(t, p) for t, p, _ in sub.messages].index(("crymonitor/ha1/status", "online"))
    assert ("crymonitor/ha1/reason", "uncertain") in [(t, p) for t, p, _ in sub.messages[:first_online]]

    removed = subscriber_factory(broker.port, "homeassistant/device/crymonitor_ha1/config", client_id="rm")
    from monitor.cli import main

    capsys.readouterr()
    assert main(["ha-remove", "--config", str(tmp_path / "c.yaml")]) == 0
    removed.wait_for(lambda m: any(p == "" for _, p, _ in m))
    assert capsys.readouterr().out.splitlines() == [
        "removed device ha1 (homeassistant/device/crymonitor_ha1/config)",
        "no device ha1-replay to remove (homeassistant/device/crymonitor_ha1-replay/config was empty)"]


def test_controls_apply_echo_persist_and_survive_fuzzing(broker, subscriber_factory, tmp_path):
    sub = subscriber_factory(broker.port, "#")
    config = write_config(tmp_path / "c.yaml", broker.port, "ctl")
    daemon = DaemonProcess(config, "--input", str(quiet_file(tmp_path / "q.wav", 120)))
    try:
        sub.wait_for(lambda m: "online" in sub.payloads("status"), timeout=60)
        components = json.loads(sub.payloads("config")[-1])["cmps"]
        quiet_hours, listening, switch = components["quiet_hours"], components["listening"], components["enabled"]
        publish(broker.port, "crymonitor/ctl/set/sensitivity", b"high")
        sub.wait_for(lambda m: any(json.loads(p)["sensitivity"] == "high" for p in sub.payloads("state")))
        assert re.match(quiet_hours["pattern"], "00:00-23:59") and not re.match(quiet_hours["pattern"], "24:00-1")
        publish(broker.port, quiet_hours["command_topic"], b"00:00-23:59")  # as HA's text entity sends it
        sub.wait_for(lambda m: any(json.loads(p)["monitoring"] == "OFF" for p in sub.payloads("state")))
        paused = sub.payloads("state")[-1]  # paused by the quiet hours while the switch stays on
        assert (ha_state(quiet_hours, paused), ha_state(listening, paused), ha_state(switch, paused)) == (
            "00:00-23:59", "OFF", "ON")
        publish(broker.port, quiet_hours["command_topic"], b"OFF")
        sub.wait_for(lambda m: json.loads(sub.payloads("state")[-1])["quiet_hours"] == "OFF")
        settled = json.loads(sub.payloads("state")[-1])
        assert ha_state(listening, sub.payloads("state")[-1]) == "ON"

        rng = np.random.default_rng(7)
        fuzz = [rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8).tobytes() for _ in range(280)]
        fuzz += [b"", b" ", b"\n", b"{}", b"[]", b"null", b"12", b"\"high", b"x" * 200_000, b"ON\x00", b'""',
                 b"25:00-01:00", b"\xff\xfe", json.dumps({"a": 1}).encode(), b"22:00-06:00" * 10, b"OFF OFF"]
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="fuzzer")
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        for n, payload in enumerate(fuzz):  # every control gets each kind, and the empty retained-clear case
            topic = f"crymonitor/ctl/set/{['enabled', 'sensitivity', 'quiet_hours', 'bogus'][n % 4]}"
            client.publish(topic, payload, qos=1).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()
        time.sleep(1.0)
        assert daemon.proc.poll() is None  # still running
        assert json.loads(sub.payloads("state")[-1]) == settled  # and nothing changed
        rejected = [r for r in daemon.logs() if r["event"] == "command_rejected"]
        assert len(fuzz) >= 290 and len(rejected) >= len(fuzz) - 5  # a random payload may be valid by chance
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    assert code == 0
    saved = json.loads((tmp_path / "state" / "state.json").read_text())["controls"]
    assert saved["sensitivity"] == settled["sensitivity"]


def test_sighup_applies_a_good_config_and_rejects_a_bad_one(broker, subscriber_factory, tmp_path):
    sub = subscriber_factory(broker.port, "#")
    config = write_config(tmp_path / "c.yaml", broker.port, "hup")
    daemon = DaemonProcess(config, "--input", str(quiet_file(tmp_path / "q.wav", 120)))
    try:
        sub.wait_for(lambda m: "online" in sub.payloads("status"), timeout=60)
        write_config(config, broker.port, "hup", "events:\n  sensitivity: low\nhomeassistant:\n  name: Attic\n")
        daemon.proc.send_signal(signal.SIGHUP)
        daemon.wait_log("config_reloaded")
        sub.wait_for(lambda m: any(json.loads(p)["sensitivity"] == "low" for p in sub.payloads("state")))
        sub.wait_for(lambda m: any(json.loads(p)["dev"]["name"] == "Attic" for p in sub.payloads("config") if p))
        config.write_text(config.read_text().replace("events:\n", "events:\n  bogus: 1\n"))
        daemon.proc.send_signal(signal.SIGHUP)
        assert "bogus" in daemon.wait_log("reload_rejected")["error"]
        time.sleep(0.5)
        assert daemon.proc.poll() is None and json.loads(sub.payloads("state")[-1])["sensitivity"] == "low"
    finally:
        code, seconds = daemon.stop(signal.SIGTERM)
    assert code == 0 and seconds < 2.0
    sub.wait_for(lambda m: sub.payloads("status")[-1] == "offline")


def test_broker_restart_mid_cry_loses_no_event(broker, subscriber_factory, cry_then_quiet, tmp_path):
    sub = subscriber_factory(broker.port, "crymonitor/brk/#")
    # 40 s more of a quiet room, so the daemon is still running when it reconnects after the outage
    audio, rate = sf.read(cry_then_quiet, dtype="float32")
    longer = tmp_path / "cry_then_long_quiet.wav"
    sf.write(longer, np.concatenate([audio, np.resize(audio[-rate:], 40 * rate)]), rate)
    daemon = DaemonProcess(write_config(tmp_path / "c.yaml", broker.port, "brk"), "--input", str(longer))
    try:
        sub.wait_for(lambda m: any(json.loads(p)["type"] == "cry_start" for p in sub.payloads("event")), timeout=60)
        time.sleep(1.2)  # the broker autosaves the subscriber's session every second
        broker.proc.kill()
        broker.proc.wait()
        daemon.wait_log("cry_end", timeout=30)  # the cry ends while the broker is down
        broker.start()
        # paho's reconnect backoff reaches its 30 s cap after a long outage (issue 12, item 10)
        sub.wait_for(lambda m: any(json.loads(p)["type"] == "cry_end" for p in sub.payloads("event")), timeout=60)
    finally:
        daemon.stop(signal.SIGTERM)
    # (type, id, t): a cry's two reasons share type and id
    logged = [(r["event"], r["id"], r["t"]) for r in daemon.logs() if r["event"] in EVENT_TYPES]
    received = [(e["type"], e["id"], e["t"]) for e in map(json.loads, sub.payloads("event"))]
    assert logged and set(logged) <= set(received)
    assert sorted(set(received), key=received.index) == logged  # first deliveries in order


def test_daemon_sigkill_mid_cry_is_made_good_by_the_outbox(broker, subscriber_factory, cry_then_quiet, tmp_path):
    sub = subscriber_factory(broker.port, "crymonitor/kill/#")
    # min_confidence 0: the cry gets a real reason, which "uncertain" (at each start and cry_start) cannot pass for
    config = write_config(tmp_path / "c.yaml", broker.port, "kill", "classifier:\n  min_confidence: 0.0\n")
    first = DaemonProcess(config, "--input", str(cry_then_quiet))
    try:
        sub.wait_for(lambda m: any(json.loads(p)["type"] == "cry_start" for p in sub.payloads("event")), timeout=60)
        time.sleep(1.2)
        broker.stop()
        first.wait_log("cry_end", timeout=30)  # published into the outbox only
    finally:
        first.stop(signal.SIGKILL)
    lost = [(r["event"], r["id"], r["t"]) for r in first.logs() if r["event"] in EVENT_TYPES]  # 2 reasons: same id
    broker.start()
    second = DaemonProcess(config, "--input", str(quiet_file(tmp_path / "q.wav", 60)))
    try:
        sub.wait_for(lambda m: ("cry_end", lost[-1][1]) in
                     [(e["type"], e["id"]) for e in map(json.loads, sub.payloads("event"))], timeout=60)
    finally:
        second.stop(signal.SIGTERM)
    received = [(e["type"], e["id"], e["t"]) for e in map(json.loads, sub.payloads("event"))]
    assert sorted(set(received), key=received.index) == lost
    # the last cry's reason survives the restart (state.json), though the broker never heard it from the first run
    reason = [r["reason"] for r in first.logs() if r["event"] == "cry_reason"][-1]
    assert reason != "uncertain" and sub.payloads("reason")[-1] == reason


def test_a_cry_left_open_by_sigkill_is_ended_and_counted_at_the_next_start(broker, subscriber_factory,
                                                                          cry_then_quiet, tmp_path):
    sub = subscriber_factory(broker.port, "crymonitor/crash/#")
    config = write_config(tmp_path / "c.yaml", broker.port, "crash")
    first = DaemonProcess(config, "--input", str(cry_then_quiet))
    try:
        sub.wait_for(lambda m: any(json.loads(p)["type"] == "cry_start" for p in sub.payloads("event")), timeout=60)
    finally:
        first.stop(signal.SIGKILL)  # mid-cry: no cry_end, Crying left ON
    start = next(e for e in map(json.loads, sub.payloads("event")) if e["type"] == "cry_start")
    second = DaemonProcess(config, "--input", str(quiet_file(tmp_path / "q.wav", 60)))
    try:
        sub.wait_for(lambda m: any(e["type"] == "cry_end" for e in map(json.loads, sub.payloads("event"))), timeout=30)
        sub.wait_for(lambda m: json.loads(sub.payloads("stats")[-1])["cries_today"] == 1, timeout=10)
        # ``online`` follows the acknowledged states by a few ms: stopping before it would leave nothing to check
        sub.wait_for(lambda m: [(t.rsplit("/", 1)[-1], p) for t, p, retained in m if not retained].count(
            ("status", "online")) == 2, timeout=10)
    finally:
        second.stop(signal.SIGTERM)
    end = next(e for e in map(json.loads, sub.payloads("event")) if e["type"] == "cry_end")
    assert (end["id"], end["ended_by"], end["duration_s"], end["started_ts"]) == (start["id"], "restart", None,
                                                                                 start["ts"])
    assert sub.payloads("crying")[-1] == "OFF"
    # Issue 23: from the will on, Home Assistant must never see the device available with the dead run's Crying ON
    # (an automation "Crying turns on → notify" rang again at each restart)
    live = [(t.rsplit("/", 1)[-1], p) for t, p, retained in sub.messages if not retained]
    crying = "ON"
    for leaf, payload in live[live.index(("status", "offline")):]:
        crying = payload if leaf == "crying" else crying
        assert (leaf, payload, crying) != ("status", "online", "ON")
    assert live.count(("status", "online")) == 2  # the restart was checked
    third = DaemonProcess(config, "--input", str(quiet_file(tmp_path / "q.wav", 60)))  # ended once, not again
    try:
        third.wait_log("daemon_started")
        time.sleep(1.0)
    finally:
        third.stop(signal.SIGTERM)
    assert [e["type"] for e in map(json.loads, sub.payloads("event"))].count("cry_end") == 1


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


def test_digital_silence_is_reported_as_deaf_on_the_problem_sensor_only(broker, subscriber_factory, tmp_path):
    """Issue 23: ``status: deaf`` is neither of Home Assistant's availability payloads, so a HA restarted while the
    microphone was deaf showed every entity unavailable, *Microphone problem* too. ``status`` says the daemon is
    there; the deafness is the problem sensor's."""
    sub = subscriber_factory(broker.port, "crymonitor/deaf/#")
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000 * 30, np.float32), 16000)
    config = write_config(tmp_path / "c.yaml", broker.port, "deaf", "audio:\n  deaf_after_seconds: 2\n")
    daemon = DaemonProcess(config, "--input", str(silent))
    try:
        sub.wait_for(lambda m: any(json.loads(p)["problem"] for p in sub.payloads("diagnostics")), timeout=60)
        restarted_ha = subscriber_factory(broker.port, "#", client_id="restarted-ha")
        seen = restarted_ha.wait_for(lambda m: {"crymonitor/deaf/status", "crymonitor/deaf/diagnostics",
                                                "homeassistant/device/crymonitor_deaf/config"} <= {t for t, _, _ in m})
    finally:
        daemon.stop(signal.SIGTERM)
    retained = {t: p for t, p, _ in seen}
    availability = json.loads(retained["homeassistant/device/crymonitor_deaf/config"])["avty"][0]
    assert retained["crymonitor/deaf/status"] == availability["pl_avail"]
    assert json.loads(retained["crymonitor/deaf/diagnostics"])["problem"] is True
    sub.wait_for(lambda m: sub.payloads("status")[-1] == "offline")
    assert set(sub.payloads("status")) == {availability["pl_avail"], availability["pl_not_avail"]}
    diagnostics = json.loads([p for p in sub.payloads("diagnostics") if json.loads(p)["problem"]][-1])
    assert {"level_dbfs", "last_score", "inference_ms", "dropped_frames", "models", "uptime_s"} <= diagnostics.keys()
    assert diagnostics["level_dbfs"] == -120.0


def test_systemd_notify_ready_status_and_watchdog(broker, tmp_path):
    address = f"@crymonitor-notify-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + address[1:])
        server.settimeout(30)
        env = {**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"}
        daemon = DaemonProcess(write_config(tmp_path / "c.yaml", broker.port, "sd"),
                               "--input", str(quiet_file(tmp_path / "q.wav", 60)), env=env)
        try:
            received = []
            while sum(m == "WATCHDOG=1" for m in received) < 3:
                received += server.recv(4096).decode().split("\n")
            assert received.index("READY=1") < received.index("WATCHDOG=1")
            assert any(m.startswith("STATUS=") for m in received)
        finally:
            code, _ = daemon.stop(signal.SIGTERM)
        assert code == 0
        assert "STOPPING=1" in server.recv(4096).decode()


def test_cry_clip_saved_with_pre_roll_and_the_cry_published_as_a_picture(broker, subscriber_factory, cry_then_quiet,
                                                                         tmp_path):
    sub = subscriber_factory(broker.port, "crymonitor/clip/#")
    config = write_config(tmp_path / "c.yaml", broker.port, "clip", "clips:\n  enabled: true\n  pre_roll_seconds: 3\n")
    daemon = DaemonProcess(config, "--input", str(cry_then_quiet))
    picture = "crymonitor/clip/last_cry_picture"
    try:
        sub.wait_for(lambda m: any(json.loads(p)["type"] == "cry_end" for p in sub.payloads("event")), timeout=60)
        sub.wait_for(lambda m: picture in sub.raw, timeout=10)
        late_ha = subscriber_factory(broker.port, picture, client_id="late-ha")
        late_ha.wait_for(lambda m: m and m[0][2], timeout=10)  # retained
    finally:
        daemon.stop(signal.SIGTERM)
    topics = [t for t, _, _ in sub.messages]
    cry_end = next(n for n, (t, p, _) in enumerate(sub.messages) if t.endswith("/event") and '"cry_end"' in p)
    assert topics.count(picture) == 1 and topics.index(picture) > cry_end  # drawn once the cry is over
    image = Image.open(io.BytesIO(sub.raw[picture]))
    image.load()
    assert image.size == (320, 146) and late_ha.raw[picture] == sub.raw[picture]
    received = [json.loads(p) for p in sub.payloads("event")]
    start, end = (next(e for e in received if e["type"] == kind) for kind in ("cry_start", "cry_end"))
    assert start["clip"] == end["clip"] and start["clip"].endswith(".flac")
    clip = tmp_path / "state" / "clips" / start["clip"]
    seconds = sf.info(clip).duration
    expected = min(3.0, start["t"]) + end["t"] - start["t"]
    assert seconds == pytest.approx(expected, abs=0.3)


def test_with_clips_picture_off_nothing_drawn_from_the_audio_is_published(broker, subscriber_factory,
                                                                        cry_then_quiet, tmp_path):
    """``clips.picture: false``: no *Last cry* entity, no picture at cry_end, and the one an earlier run published
    is deleted from the broker."""
    publish(broker.port, "crymonitor/private/last_cry_picture", b"\x89PNG from an earlier run", retain=True)
    sub = subscriber_factory(broker.port, "#")
    config = write_config(tmp_path / "c.yaml", broker.port, "private", "clips:\n  picture: false\n")
    daemon = DaemonProcess(config, "--input", str(cry_then_quiet))
    try:
        sub.wait_for(lambda m: any(json.loads(p)["type"] == "cry_end" for p in sub.payloads("event")), timeout=60)
        time.sleep(1.0)  # a picture would follow the cry_end at once
    finally:
        daemon.stop(signal.SIGTERM)
    assert sub.payloads("last_cry_picture") == ["\ufffdPNG from an earlier run", ""]  # retained, then deleted
    assert "last_cry" not in json.loads(sub.payloads("config")[-1])["cmps"]


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


def test_three_rooms_on_one_broker_are_three_devices_with_nothing_crossed(broker, subscriber_factory, cry_then_quiet,
                                                                          tmp_path):
    """What ``crymonitor@<room>.service`` runs: one config per room without a device_id, the room name from the
    unit's CRYMONITOR_INSTANCE; a cry in one room is heard in that room's topics only."""
    sub = subscriber_factory(broker.port, "#")
    rooms = ("nursery", "kids", "guest")
    daemons = []
    for room in rooms:
        folder = tmp_path / room
        folder.mkdir()
        config = folder / f"{room}.yaml"
        config.write_text(f"mqtt:\n  port: {broker.port}\n  keepalive_seconds: 5\nstate:\n  dir: {folder / 'state'}\n"
                          "logging:\n  format: json\n")
        audio = cry_then_quiet if room == "kids" else quiet_file(folder / "q.wav", 60)
        daemons.append(DaemonProcess(config, "--input", str(audio), env={**os.environ, "CRYMONITOR_INSTANCE": room}))
    try:
        sub.wait_for(lambda m: any(t == "crymonitor/kids/event" and json.loads(p)["type"] == "cry_end"
                                   for t, p, _ in m), timeout=90)
    finally:
        codes = [daemon.stop(signal.SIGTERM)[0] for daemon in daemons]
    assert codes == [0, 0, 0]
    discovered = {t: json.loads(p) for t, p, _ in sub.messages if t.startswith("homeassistant/device/") and p}
    assert set(discovered) == {f"homeassistant/device/crymonitor_{room}/config" for room in rooms}
    unique_ids = [c["unique_id"] for config in discovered.values() for c in config["cmps"].values()]
    assert len(unique_ids) == len(set(unique_ids))
    events = {room: [json.loads(p)["type"] for t, p, _ in sub.messages if t == f"crymonitor/{room}/event"]
              for room in rooms}
    assert events["nursery"] == events["guest"] == [] and events["kids"][0] == "cry_start"
    assert all(not [r for r in d.logs() if r["event"] == "mqtt_disconnected"] for d in daemons)  # no id collision
