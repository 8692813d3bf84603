"""What changes a running daemon (monitor/service/commands.py): MQTT commands, fuzzed, and SIGHUP reloads, good,
bad and hostile, against the real daemon and a real broker."""

import json
import os
import re
import signal
import time

import jinja2
import numpy as np
import paho.mqtt.client as mqtt
import pytest

from daemon_helpers import DaemonProcess, publish, quiet_file, write_config


@pytest.mark.parametrize("kind", ["fifo", "huge"])
def test_a_reload_of_a_fifo_or_a_huge_file_is_refused_and_never_stalls_the_daemon(broker, tmp_path, kind):
    config = write_config(tmp_path / "c.yaml", broker.port, f"reload-{kind}")
    daemon = DaemonProcess(config, "--input", str(quiet_file(tmp_path / "q.wav", 60)))
    try:
        daemon.wait_log("daemon_started", timeout=60)
        text = config.read_text()
        config.unlink()
        if kind == "fifo":
            os.mkfifo(config)  # nothing ever writes to it: opening it for reading used to wait forever
        else:
            config.write_text(text + "# padding\n" * 2_000_000)  # 20 MB: its parse stalled the loop for 11 s
        daemon.proc.send_signal(signal.SIGHUP)
        rejected = daemon.wait_log("reload_rejected")
    finally:
        code, seconds = daemon.stop(signal.SIGTERM)
    assert code == 0 and seconds < 2, (code, seconds)  # the loop was free to handle SIGTERM at once
    assert ("not a regular file" if kind == "fifo" else "larger than") in rejected["error"], rejected


def ha_state(component: dict, payload: str) -> str:
    """What Home Assistant makes of a state ``payload`` for a discovered ``component``: its value_template
    rendered (HA's templates are Jinja2)."""
    return jinja2.Template(component["value_template"]).render(value_json=json.loads(payload))


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
