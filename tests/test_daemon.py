"""The real daemon process on a file paced in real time, publishing to a real mosquitto."""

import asyncio
import json
import re
import signal
import time
from pathlib import Path

import pytest
import soundfile as sf
import structlog

from conftest import assert_golden
from daemon_helpers import DaemonProcess, quiet_file, quiet_wav, without_torch, write_config
from monitor.audio.capture import file_chunks
from monitor.config import load_config
from monitor.core.events import UNCERTAIN
from monitor.inference.classify import ReasonClassifier
from monitor.inference.detect import make_detector
from monitor.offline.replay import BLOCK_SECONDS, Collector, replay_file


def events(sub, kind=None):
    out = [json.loads(p) for p in sub.payloads("event")]
    return [e for e in out if kind is None or e["type"] == kind]


def test_daemon_on_the_default_onnx_models_without_torch_publishes_a_cry_and_exits_on_sigterm(
        broker, subscriber_factory, cry_then_quiet, tmp_path):
    cry_seconds = sf.info(cry_then_quiet).duration - 9.0  # 1 s of quiet room before the cry, 8 s after
    sub = subscriber_factory(broker.port, "crymonitor/file1/#")
    daemon = DaemonProcess(write_config(tmp_path / "c.yaml", broker.port, "file1"), "--input", str(cry_then_quiet),
                           env=without_torch(tmp_path))
    try:
        sub.wait_for(lambda m: len(events(sub, "cry_end")) == 1, timeout=60)
    finally:
        code, seconds = daemon.stop(signal.SIGTERM)
    start, end = events(sub, "cry_start")[0], events(sub, "cry_end")[0]
    assert start["id"] == end["id"] and end["ended_by"] == "quiet"
    assert 1.0 < start["t"] < 1.0 + cry_seconds  # detected while the baby is crying
    assert end["duration_s"] > 3.0 and start["ts"].endswith("+00:00")
    assert sub.payloads("crying") == ["OFF", "ON", "OFF"]
    reasons = events(sub, "cry_reason")  # classified off the detector's thread, published as they come
    assert reasons and {r["id"] for r in reasons} == {start["id"]}
    assert reasons[0]["t"] - start["t"] <= 5.0
    # before the first cry (not HA's "unknown"), reset at the start, then set
    assert sub.payloads("reason") == [UNCERTAIN, UNCERTAIN] + [r["reason"] for r in reasons]
    assert code == 0 and seconds < 2.0, daemon.stderr
    sub.wait_for(lambda m: "offline" in sub.payloads("status"))
    assert sub.payloads("status")[0] == "online"
    assert any(r["event"] == "cry_start" and r["id"] == start["id"] for r in daemon.logs())  # JSON logs off a TTY
    # one driver: replay of the same file gives the same events, fields and audio times as the daemon
    config = load_config(tmp_path / "c.yaml")
    collector = Collector()
    replay_file(str(cry_then_quiet), config, make_detector(config.detector), [collector],
                ReasonClassifier(config.classifier))
    published = [json.loads(p) for p in sub.payloads("event")]
    assert [(e["type"], e["t"], sorted(e)) for e in collector.events] == \
        [(e["type"], e["t"], sorted(e)) for e in published]


def test_sigterm_mid_cry_ends_it_before_going_offline(broker, subscriber_factory, cry_then_quiet, tmp_path):
    sub = subscriber_factory(broker.port, "crymonitor/file2/#")
    daemon = DaemonProcess(write_config(tmp_path / "c.yaml", broker.port, "file2"), "--input", str(cry_then_quiet))
    try:
        sub.wait_for(lambda m: len(events(sub, "cry_start")) == 1, timeout=60)
    finally:
        code, seconds = daemon.stop(signal.SIGTERM)
    assert code == 0 and seconds < 2.0, daemon.stderr
    sub.wait_for(lambda m: "offline" in sub.payloads("status"))
    end = events(sub, "cry_end")[0]
    assert end["ended_by"] == "shutdown" and end["id"] == events(sub, "cry_start")[0]["id"]
    assert sub.payloads("crying")[-1] == "OFF"


@pytest.mark.parametrize("section", ["detector", "classifier"])
def test_missing_model_is_a_clear_error(tmp_path, broker, section):
    config = write_config(tmp_path / "c.yaml", broker.port, "x", f"{section}:\n  model: {tmp_path}/none.pt\n")
    daemon = DaemonProcess(config, "--input", "/dev/null")
    assert daemon.proc.wait(timeout=60) == 2
    daemon.stop(signal.SIGTERM)
    assert "crymonitor: error:" in daemon.stderr and "none.pt" in daemon.stderr
    assert "Traceback" not in daemon.stderr


def test_unusable_state_dir_is_a_clear_error(tmp_path, broker):
    (tmp_path / "file").write_text("not a folder")
    config = write_config(tmp_path / "c.yaml", broker.port, "x", f"state:\n  dir: {tmp_path}/file/state\n")
    config.write_text(config.read_text().replace(f"state:\n  dir: {tmp_path / 'state'}\n", ""))
    daemon = DaemonProcess(config, "--input", "/dev/null")
    assert daemon.proc.wait(timeout=60) == 2
    daemon.stop(signal.SIGTERM)
    assert "crymonitor: error: state.dir" in daemon.stderr and "Traceback" not in daemon.stderr


SHOWN_LOGS = {"cry_start", "cry_end", "cry_reason", "clip_saved", "clip_failed", "monitoring_paused",
              "monitoring_resumed"}
HIDDEN_TOPICS = {"diagnostics", "level", "status", "instance"}  # on a timer, or the connection's


def normalised(text: str) -> str:
    """Clip names (local wall time and the id's start), cry ids, the crashed cry's time and today's date, by order
    of appearance; everything else as it was."""
    names: dict[str, str] = {}
    text = re.sub(r"\d{8}T\d{6}_[0-9a-f]{8}\.flac", lambda m: names.setdefault(m.group(), f"clip-{len(names) + 1}"),
                  text)
    ids: dict[str, str] = {}
    text = re.sub(r"[0-9a-f]{32}", lambda m: ids.setdefault(m.group(), f"cry-{len(ids) + 1}"), text)
    text = re.sub(r"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", "<now>", text)
    return re.sub(r"20\d\d-\d\d-\d\d", "<today>", text)


def test_the_daemon_publishes_and_logs_the_golden_messages_for_fixed_minutes(broker, subscriber_factory,
                                                                             nursery_minutes, tmp_path):
    """What the daemon's outputs make of tests/golden/replay-events.jsonl's minutes (its wiring as it runs, with
    the file's start at the epoch and reasons awaited in line, as replay does, so the order is fixed): each MQTT
    message and each event's log record, a cry left open by a killed run first. Written before the outputs took
    typed events."""
    from monitor.config import parse_config
    from monitor.service.daemon import Daemon
    from monitor.driver import FileClock

    state = tmp_path / "state"
    state.mkdir()
    crashed_cry = {"id": "d" * 32, "started_ts": "2026-01-01T00:00:00.000+00:00"}
    (state / "state.json").write_text(json.dumps({"open_cry": crashed_cry}))
    config = parse_config(f"mqtt:\n  port: {broker.port}\n  device_id: golden\nstate:\n  dir: {state}\n"
                          "clips:\n  enabled: true\nevents:\n  max_duration_seconds: 20\n")
    sub = subscriber_factory(broker.port, "crymonitor/golden/#")

    async def once_online():
        while ("crymonitor/golden/status", "online", False) not in sub.messages:
            await asyncio.sleep(0.02)
        async for chunk in file_chunks(str(nursery_minutes), BLOCK_SECONDS, realtime=False):
            yield chunk

    with structlog.testing.capture_logs() as logs:
        daemon = Daemon(config, source=once_online())
        daemon.driver.clock, daemon.driver.reasons_inline = FileClock(0.0), True
        asyncio.run(daemon.run())
    crashed = [p for t, p, _ in sub.messages if t.endswith("/event") and "d" * 32 in p]
    online = sub.messages.index(("crymonitor/golden/status", "online", False))
    published = [(t.rsplit("/", 1)[-1], "<png>" if t.endswith("picture") else p) for t, p, retained in
                 sub.messages[online:] if not retained and t.rsplit("/", 1)[-1] not in HIDDEN_TOPICS]
    records = [r for r in logs if r["event"] in SHOWN_LOGS]
    lines = "".join(json.dumps(item) + "\n" for item in [*(["crashed", p] for p in crashed),
                                                        *(["mqtt", *m] for m in published),
                                                        *(["log", r] for r in records)])
    lines = normalised(lines.replace(str(tmp_path), "<tmp>"))
    assert_golden(lines, "daemon-outputs.jsonl")


def test_a_sighup_a_tenth_of_a_second_after_start_is_a_reload_not_a_death(broker, tmp_path):
    # The handler is the first thing the daemon's Python code does (before about 0.03 s on an idle machine the
    # interpreter itself is starting and the kernel's default action is all there is; it used to come only after
    # 0.2-0.4 s of imports). Timed from when the handler is there, not from the start: on a loaded machine (the
    # suite runs four workers on two cores) the interpreter's own start varies by more than these delays.
    daemons = []
    for delay in (0.0, 0.05, 0.1):
        folder = tmp_path / str(delay)
        folder.mkdir()
        config = write_config(folder / "c.yaml", broker.port, f"early{len(daemons)}")
        audio = quiet_file(folder / "q.wav", 60)
        started = time.monotonic()
        daemons.append(DaemonProcess(config, "--input", str(audio)))
        while not catches_sighup(daemons[-1].proc.pid):
            assert time.monotonic() - started < 5, "no SIGHUP handler 5 s after start"
            time.sleep(0.001)
        time.sleep(delay)
        daemons[-1].proc.send_signal(signal.SIGHUP)
    try:
        for daemon in daemons:
            daemon.wait_log("reload_requested_while_starting", timeout=60)
            daemon.wait_log("config_reloaded")
    finally:
        codes = [daemon.stop(signal.SIGTERM)[0] for daemon in daemons]
    assert codes == [0, 0, 0], [d.stderr[-500:] for d in daemons]


def catches_sighup(pid: int) -> bool:
    """Whether the process has a handler for SIGHUP (bit 0 of SigCgt in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & 1 << (signal.SIGHUP - 1))
    return False


def test_a_sighup_while_the_models_load_is_a_reload_not_a_death(broker, tmp_path):
    config = write_config(tmp_path / "c.yaml", broker.port, "hup")
    daemon = DaemonProcess(config, "--input", str(quiet_wav(tmp_path)))
    deadline = time.monotonic() + 10
    while not catches_sighup(daemon.proc.pid) and time.monotonic() < deadline:
        time.sleep(0.005)  # until the interpreter is up (a sleep of 0.3 s was too short on a loaded machine)
    assert not any(r["event"] == "daemon_started" for r in daemon.logs())  # the models are not loaded yet
    daemon.proc.send_signal(signal.SIGHUP)
    try:
        daemon.wait_log("reload_requested_while_starting")
        daemon.wait_log("config_reloaded")
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    assert code == 0, daemon.stderr
