"""One live daemon per device id (monitor/service/twin.py): a twin refused at start or giving way once the
broker is back, and garbage on the instance topic."""

import json
import signal
import socket
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt

from daemon_helpers import NASTY_JSON, DaemonProcess, quiet_file, write_config


def twin_config(folder: Path, port: int) -> Path:
    """The same device id as every other twin, a state folder of its own (beside the file)."""
    folder.mkdir()
    return write_config(folder / "c.yaml", port, "twin")


def test_a_twin_on_the_same_device_id_is_refused_at_start_naming_the_first(broker, subscriber_factory, tmp_path):
    sub = subscriber_factory(broker.port, "crymonitor/twin/status")
    audio = quiet_file(tmp_path / "q.wav", 60)
    first = DaemonProcess(twin_config(tmp_path / "service", broker.port), "--input", str(audio))
    try:
        first.wait_log("mqtt_connected", timeout=60)
        second = DaemonProcess(twin_config(tmp_path / "manual", broker.port), "--input", str(audio))
        assert second.proc.wait(timeout=60) == 2
        second.stop(signal.SIGTERM)
        time.sleep(1.0)  # long enough for a takeover and a reconnect to show on the status topic
        assert first.proc.poll() is None
    finally:
        first.stop(signal.SIGTERM)
    assert second.stderr == (f"crymonitor: error: mqtt.device_id 'twin' is already used by the crymonitor on "
                             f"{socket.gethostname()} with PID {first.proc.pid} and state folder "
                             f"{tmp_path / 'service' / 'state'}; give each monitor its own device_id\n")
    assert sub.payloads("status")[:-1] == ["online"]  # no takeover: the first never went offline until its stop


def test_twins_that_meet_once_the_broker_is_back_leave_one_on_the_device(broker, subscriber_factory, tmp_path):
    broker.stop()  # both start while the broker is away: neither can ask it
    audio = quiet_file(tmp_path / "q.wav", 60)
    first = DaemonProcess(twin_config(tmp_path / "service", broker.port), "--input", str(audio))
    first.wait_log("daemon_started", timeout=60)
    second = DaemonProcess(twin_config(tmp_path / "manual", broker.port), "--input", str(audio))
    try:
        second.wait_log("daemon_started", timeout=60)
        broker.start()
        assert second.proc.wait(timeout=30) == 2  # the later one gives way
        sub = subscriber_factory(broker.port, "crymonitor/twin/#")
        sub.wait_for(lambda m: any(json.loads(p)["pid"] == first.proc.pid for p in sub.payloads("instance")))
        time.sleep(1.0)  # long enough for another takeover to show
        assert first.proc.poll() is None and sub.payloads("status")[-1] == "online"
    finally:
        second.stop(signal.SIGTERM)
        first.stop(signal.SIGTERM)
    assert "already used by the crymonitor" in second.stderr.splitlines()[-1]
    assert "device_id_in_use" in {r["event"] for r in second.logs()}


def test_instance_fuzz_a_daemon_meets_no_twin_in_garbage(broker, subscriber_factory, tmp_path):
    sub = subscriber_factory(broker.port, "crymonitor/inst/instance")
    daemon = DaemonProcess(write_config(tmp_path / "c.yaml", broker.port, "inst"),
                           "--input", str(quiet_file(tmp_path / "q.wav", 60)))
    try:
        sub.wait_for(lambda m: sub.payloads("instance"), timeout=60)
        mine = sub.payloads("instance")[-1]
        me = json.loads(mine)
        rng = np.random.default_rng(24)
        later = [{"host": "h", "state_dir": f"/s{n}", "pid": 1, "started": value} for n, value in
                 enumerate([me["started"] + 1, 1e999, "soon", None, [], 10**400, float("nan"), True])]
        fuzz = [rng.integers(0, 256, int(rng.integers(0, 300)), dtype=np.uint8).tobytes() for _ in range(40)]
        fuzz += [raw.encode() for raw in NASTY_JSON] + [json.dumps(who).encode() for who in later]
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="instance-fuzzer")
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        for payload in fuzz:
            client.publish("crymonitor/inst/instance", payload, qos=1).wait_for_publish(5)
        client.disconnect()
        client.loop_stop()
        sub.wait_for(lambda m: sub.payloads("instance")[-1] == mine)  # it says again that the device is its
        assert daemon.proc.poll() is None  # none of it started before this daemon: no twin to give way to
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    assert code == 0 and "device_id_in_use" not in {r["event"] for r in daemon.logs()}
