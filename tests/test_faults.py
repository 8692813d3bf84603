"""Issue 24: what a user or a fault did that still broke the daemon, each reproduced with real parts (the daemon
in a subprocess, a real broker, real files)."""

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import soundfile as sf

from conftest import ROOT, cry_then_long_quiet, fill
from daemon_helpers import DaemonProcess, quiet_file, write_config
from monitor.service.feedback import FEEDBACK_FILE, FLOOD_LIMIT, RECENT_FILE


def strict_json(text: str):
    """What Home Assistant can parse: NaN and Infinity are not JSON."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} published"))


def outbox(path: Path, create: str, rows: list[tuple]) -> None:
    """An outbox file as another program (or a damaged disk) might leave it."""
    db = sqlite3.connect(path)
    db.execute(create)
    db.executemany(f"INSERT INTO outbox VALUES ({', '.join('?' * len(rows[0]))})", rows)
    db.commit()
    db.close()


OUTBOX_TABLE = "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, " \
               "payload TEXT NOT NULL, created REAL NOT NULL)"
EVENT = json.dumps({"type": "cry_start", "id": "kept-1", "t": 1.0})
DEEP = "[" * 1000 + "]" * 1000
LABEL = {"id": "a", "reason": "tired", "model": "m", "at": 1.0}


def embeddings_of_unequal_length(state: Path) -> None:
    labels = [{**LABEL, "embedding": [0.1, 0.2]}, {**LABEL, "id": "b", "embedding": [0.1, 0.2, 0.3]}]
    (state / FEEDBACK_FILE).write_text(json.dumps({"labels": labels}))


def four_hundred_digits(state: Path) -> None:
    (state / FEEDBACK_FILE).write_text(json.dumps({"labels": [{**LABEL, "embedding": [int("1" * 400)]}]}))
    (state / RECENT_FILE).write_text(json.dumps({"recent": [{"id": "a", "model": "m", "ended_at": int("9" * 400)}]}))
    (state / "state.json").write_text(json.dumps({"stats": {"cries_today": int("9" * 400)}}))


def nested_1000_deep(state: Path) -> None:
    for name in (FEEDBACK_FILE, RECENT_FILE, "state.json"):
        (state / name).write_text(DEEP)


def nan_duration(state: Path) -> None:
    (state / "state.json").write_text('{"stats": {"day": "2026-01-01", "last_cry_duration_s": NaN}}')


def negative_count(state: Path) -> None:
    (state / "state.json").write_text(json.dumps({
        "controls": {"sensitivity": "high"}, "from_config": {"sensitivity": "medium"},
        "stats": {"day": "2026-01-01", "cries_today": -3, "last_cry_duration_s": 4.0}}))


def another_outbox_schema(state: Path) -> None:
    outbox(state / "outbox.sqlite", "CREATE TABLE outbox (id INTEGER PRIMARY KEY, data BLOB)", [(1, b"x")])


def text_created(state: Path) -> None:
    outbox(state / "outbox.sqlite", OUTBOX_TABLE, [(1, "crymonitor/sf/event", EVENT, "yesterday")])


def payload_not_an_object(state: Path) -> None:
    outbox(state / "outbox.sqlite", OUTBOX_TABLE, [(1, "crymonitor/sf/event", "NaN", 1.0),
                                                   (2, "crymonitor/sf/event", "[1, 2]", 1.0),
                                                   (3, "crymonitor/sf/event", DEEP, 1.0),
                                                   (4, "crymonitor/sf/event", EVENT, 1e12)])


@pytest.mark.parametrize("damage, warned, salvaged", [
    (embeddings_of_unequal_length, {"feedback_store_corrupt"}, []),
    (four_hundred_digits, {"feedback_store_corrupt", "state_file_corrupt"}, []),
    (nested_1000_deep, {"feedback_store_corrupt", "state_file_corrupt"}, []),
    (nan_duration, {"state_file_corrupt"}, []),
    (negative_count, {"state_file_corrupt"}, []),
    (another_outbox_schema, {"outbox_corrupt"}, []),
    (text_created, {"outbox_corrupt"}, ["kept-1"]),
    (payload_not_an_object, {"outbox_corrupt"}, ["kept-1"]),
])
def test_a_malformed_state_file_is_set_aside_with_a_warning_and_the_daemon_runs(
        broker, subscriber_factory, tmp_path, damage, warned, salvaged):
    state = tmp_path / "state"
    state.mkdir()
    damage(state)
    damaged = {p.name for p in state.iterdir()}
    sub = subscriber_factory(broker.port, "crymonitor/sf/#")
    config = write_config(tmp_path / "c.yaml", broker.port, "sf", "classifier:\n  adaptation: on\n")
    daemon = DaemonProcess(config, "--input", str(quiet_file(tmp_path / "q.wav", 60)))
    try:
        daemon.wait_log("daemon_started", timeout=60)
        sub.wait_for(lambda m: sub.payloads("stats") and set(salvaged) <= {
            json.loads(p)["id"] for p in sub.payloads("event")})
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    assert code == 0 and "Traceback" not in daemon.stderr, daemon.stderr
    events = {r["event"]: r for r in daemon.logs()}
    assert warned <= set(events), daemon.stderr
    assert all(events[name]["moved_to"] for name in warned)  # set aside for a human, out of the way
    assert {p.name.split(".corrupt-")[0] for p in state.glob("*.corrupt-*")} == damaged
    stats = strict_json(sub.payloads("stats")[-1])
    assert stats["cries_today"] >= 0 and stats["last_cry_duration_s"] is None
    stale = [strict_json(p) for p in sub.payloads("event")]
    assert all(isinstance(e, dict) for e in stale)  # no row went out verbatim
    if damage is text_created:  # its age is unknown: it goes out marked stale
        assert stale[0]["stale"] is True
    if damage is negative_count:  # the sound sections of the file are kept
        assert events["state_file_corrupt"]["kept"] == ["controls", "open_cry", "last_reason"]
        assert json.loads(sub.payloads("state")[-1])["sensitivity"] == "high"


@pytest.mark.parametrize("key, model, message", [
    ("classifier", "detector-int8.onnx", "classifier.model: detector-int8.onnx is a cry detector"),
    ("detector", "classifier.pt", "detector.model: classifier.pt is a reason classifier"),
])
def test_check_config_refuses_a_model_of_the_wrong_kind(tmp_path, key, model, message):
    config = tmp_path / "c.yaml"
    config.write_text(f"logging:\n  level: info\n{key}:\n  model: {ROOT / 'models' / model}\n")
    out = subprocess.run([sys.executable, "-m", "monitor", "check-config", str(config)], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.startswith(f"crymonitor: error: {config}:4: {message}")
    assert out.stderr.count("\n") == 1, out.stderr


def test_a_sighup_a_tenth_of_a_second_after_start_is_a_reload_not_a_death(broker, tmp_path):
    # From 0.05 s: before about 0.03 s (here) the interpreter itself is starting and no Python code has run, so
    # the kernel's default action is all there is; the handler used to come only after 0.2-0.4 s of imports.
    daemons = []
    for delay in (0.05, 0.1, 0.15):
        folder = tmp_path / str(delay)
        folder.mkdir()
        config = write_config(folder / "c.yaml", broker.port, f"early{len(daemons)}")
        audio = quiet_file(folder / "q.wav", 60)
        started = time.monotonic()
        daemons.append(DaemonProcess(config, "--input", str(audio)))
        time.sleep(max(0.0, started + delay - time.monotonic()))
        daemons[-1].proc.send_signal(signal.SIGHUP)
    try:
        for daemon in daemons:
            daemon.wait_log("reload_requested_while_starting", timeout=60)
            daemon.wait_log("config_reloaded")
    finally:
        codes = [daemon.stop(signal.SIGTERM)[0] for daemon in daemons]
    assert codes == [0, 0, 0], [d.stderr[-500:] for d in daemons]


@pytest.mark.slow  # seconds of real work: the full suite, not the fast lane
def test_a_broker_that_accepts_tcp_but_never_answers_is_logged_with_a_reason_promptly(tmp_path):
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (the kernel does) and never says a word
    port = silent.getsockname()[1]
    config = write_config(tmp_path / "c.yaml", port, "mute")  # keepalive_seconds: 5
    audio = quiet_file(tmp_path / "q.wav", 60)
    launched = datetime.now(timezone.utc)
    daemon = DaemonProcess(config, "--input", str(audio))
    try:
        first = daemon.wait_log("mqtt_connect_failed", timeout=20)  # the start's own question to the broker
        started = daemon.wait_log("daemon_started")
        deadline = time.monotonic() + 15
        while sum(r["event"] == "mqtt_connect_failed" for r in daemon.logs()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        daemon.stop(signal.SIGTERM)
        silent.close()
    failures = [r for r in daemon.logs() if r["event"] == "mqtt_connect_failed"]
    assert [r["reason"].split(" within ")[0] for r in failures] == [f"no MQTT answer (CONNACK) from localhost:{port}"] * 2
    assert "3 s" in failures[0]["reason"] and "5 s" in failures[1]["reason"]  # the probe's wait, then a keepalive
    assert (datetime.fromisoformat(first["timestamp"]) - launched).total_seconds() < 10  # not the minute it took
    assert datetime.fromisoformat(first["timestamp"]) < datetime.fromisoformat(started["timestamp"])


def publish_many(port: int, topic: str, payloads: list[bytes]) -> None:
    """Each payload in order, from one client (a busy automation)."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"many-{time.monotonic_ns()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    for payload in payloads:
        client.publish(topic, payload, qos=1).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def test_garbage_on_the_answer_topic_does_not_lock_the_parents_out(broker, subscriber_factory, cry_then_quiet,
                                                                   tmp_path):
    sub = subscriber_factory(broker.port, "crymonitor/budget/#")
    topic = "crymonitor/budget/set/last_cry_reason"
    daemon = DaemonProcess(write_config(tmp_path / "c.yaml", broker.port, "budget"), "--input", str(cry_then_quiet))
    try:
        sub.wait_for(lambda m: any(json.loads(p)["type"] == "cry_reason" for p in sub.payloads("event")), timeout=60)
        publish_many(broker.port, topic, [b'{"reason": 5}'] * (2 * FLOOD_LIMIT))  # a broken automation
        publish_many(broker.port, topic, [b"tired"] + [b"hungry"] * (FLOOD_LIMIT - 1) + [b"burping"])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not any("flood" in r.get("error", "") for r in daemon.logs()):
            time.sleep(0.05)
        sub.wait_for(lambda m: sub.payloads("last_cry_reason")[-2:] == ["hungry", "hungry"])
    finally:
        daemon.stop(signal.SIGTERM)
    rejected = [r for r in daemon.logs() if r["event"] == "feedback_rejected"]
    assert len(rejected) == 2 and "expected a reason" in rejected[0]["error"]  # the garbage: logged once
    assert "flood" in rejected[1]["error"]  # the one answer past the budget: said, not silently dropped
    assert sum(r["event"] == "feedback_accepted" for r in daemon.logs()) == FLOOD_LIMIT
    labels = json.loads((tmp_path / "state" / FEEDBACK_FILE).read_text())["labels"]
    assert [label["reason"] for label in labels] == ["hungry"]  # and the select shows it, again, after the refusal


def test_an_answer_taken_while_the_disk_is_full_is_written_once_it_has_room(broker, subscriber_factory, small_disk,
                                                                           cry_then_quiet, tmp_path):
    from test_service import publish

    state = small_disk / "state"
    config = tmp_path / "c.yaml"
    config.write_text(f"mqtt:\n  port: {broker.port}\n  device_id: full\nstate:\n  dir: {state}\n"
                      "logging:\n  format: json\n")
    filler = fill(small_disk)
    sub = subscriber_factory(broker.port, "crymonitor/full/#")
    daemon = DaemonProcess(config, "--input", str(cry_then_long_quiet(tmp_path, cry_then_quiet)))
    try:
        sub.wait_for(lambda m: any(json.loads(p)["type"] == "cry_reason" for p in sub.payloads("event")), timeout=60)
        publish(broker.port, "crymonitor/full/set/last_cry_reason", b"tired")
        daemon.wait_log("feedback_accepted")  # Home Assistant shows it as taken ...
        unwritable = daemon.wait_log("feedback_store_unwritable")
        assert not (state / FEEDBACK_FILE).exists()  # ... but the disk did not take it
        filler.unlink()
        written = daemon.wait_log("feedback_store_written", timeout=15)  # without a restart
        labels = json.loads((state / FEEDBACK_FILE).read_text())["labels"]
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    assert code == 0 and unwritable["level"] == "error" and written["path"] == str(state / FEEDBACK_FILE)
    assert [label["reason"] for label in labels] == ["tired"]


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


def test_classify_on_float_samples_near_1e30_prints_valid_json(tmp_path):
    samples = (np.random.default_rng(3).standard_normal(4 * 16000) * 1e30).astype(np.float32)  # finite, absurd
    path = tmp_path / "huge.wav"
    sf.write(path, samples, 16000, subtype="FLOAT")
    out = subprocess.run([sys.executable, "-m", "monitor", "classify", str(path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    answer = strict_json(out.stdout)
    assert 0.0 <= answer["confidence"] <= 1.0 and "audio_out_of_range" in out.stderr


def test_deleting_the_state_folder_under_a_daemon_frees_no_lock_and_the_folder_comes_back(broker, tmp_path):
    config = write_config(tmp_path / "c.yaml", broker.port, "gone")
    audio = quiet_file(tmp_path / "q.wav", 60)
    first = DaemonProcess(config, "--input", str(audio))
    try:
        first.wait_log("daemon_started", timeout=60)
        shutil.rmtree(tmp_path / "state")
        second = DaemonProcess(config, "--input", str(audio))  # a fresh folder at the path is a fresh inode
        assert second.proc.wait(timeout=60) == 2
        second.stop(signal.SIGTERM)
        first.wait_log("state_dir_recreated", timeout=5)
        saved = json.loads((tmp_path / "state" / "state.json").read_text())
    finally:
        code, _ = first.stop(signal.SIGTERM)
    assert f"already used by the crymonitor with PID {first.proc.pid}" in second.stderr
    assert second.stderr.count("\n") == 1 and code == 0
    assert saved["controls"]["sensitivity"] == "medium" and (tmp_path / "state" / "outbox.sqlite").exists()


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
