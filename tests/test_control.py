import datetime as dt
import json
import os

import numpy as np
import pytest

from monitor.core.control import CONTROLS, CommandError, ControlState, QuietHours, apply_command
from monitor.core.health import MicHealth
from monitor.service.outbox import Outbox


@pytest.mark.parametrize(
    "control, payload, expected",
    [
        ("enabled", b"OFF", {"enabled": "OFF"}),
        ("enabled", b"on", {"enabled": "ON"}),
        ("enabled", b"false", {"enabled": "OFF"}),
        ("sensitivity", b"HIGH", {"sensitivity": "high"}),
        ("sensitivity", b'"low"', {"sensitivity": "low"}),
        ("quiet_hours", b"22:00-06:30", {"quiet_hours": "22:00-06:30"}),
        ("quiet_hours", b"off", {"quiet_hours": "OFF"}),
    ],
)
def test_valid_commands(control, payload, expected):
    state = apply_command(ControlState(quiet_hours=QuietHours.parse("01:00-02:00")), control, payload)
    assert expected.items() <= state.to_payload().items()


@pytest.mark.parametrize(
    "control, payload",
    [
        ("enabled", b"maybe"), ("enabled", b"1"), ("enabled", b"\xff\xfe"), ("enabled", b"ON" * 100),
        ("sensitivity", b"extreme"), ("sensitivity", b"[1,2]"), ("sensitivity", b'"unterminated'),
        ("sensitivity", b"null"), ("quiet_hours", b"25:00-06:00"), ("quiet_hours", b"22:00-22:00"),
        ("quiet_hours", b"{\"start\": 1}"), ("volume", b"11"),
        ("quiet_hours", b""), ("quiet_hours", b"  \n"), ("enabled", b""), ("sensitivity", b'""'),
    ],
)
def test_invalid_commands_raise(control, payload):
    with pytest.raises(CommandError):
        apply_command(ControlState(), control, payload)


def test_random_bytes_never_escape_as_anything_but_command_error():
    rng = np.random.default_rng(0)
    for _ in range(3000):
        payload = rng.integers(0, 256, int(rng.integers(0, 80)), dtype=np.uint8).tobytes()
        control = CONTROLS[int(rng.integers(0, len(CONTROLS)))]
        try:
            state = apply_command(ControlState(), control, payload)
        except CommandError:
            continue
        assert state.sensitivity in ("low", "medium", "high")  # whatever was accepted is a valid state


def test_quiet_hours_wrap_midnight_and_pause_monitoring():
    night = QuietHours.parse("22:00-06:00")
    assert night.contains(dt.time(23, 30)) and night.contains(dt.time(5, 59))
    assert not night.contains(dt.time(6, 0)) and not night.contains(dt.time(21, 59))
    state = ControlState(quiet_hours=night)
    assert not state.monitoring(dt.datetime(2026, 1, 1, 23, 0)) and state.monitoring(dt.datetime(2026, 1, 1, 12, 0))
    assert not ControlState(enabled=False).monitoring(dt.datetime(2026, 1, 1, 12, 0))


def test_settings_changed_in_the_file_win_over_remembered_ones(tmp_path):
    from monitor.config import parse_config
    from monitor.service.daemon import Daemon

    def daemon(yaml_text: str) -> Daemon:  # loudness mode: no model to load, MQTT off
        return Daemon(parse_config(f"detector:\n  kind: loudness\nmqtt:\n  enabled: false\nstate:\n  dir: {tmp_path}\n"
                                   + yaml_text))

    def restarted(yaml_text: str, previous: Daemon) -> Daemon:
        previous._lock.release()  # what the previous process's exit does: one daemon per state folder
        return daemon(yaml_text)

    first = daemon("events:\n  sensitivity: medium\n")
    first.control.set(apply_command(first.state.controls, "sensitivity", b"high"))  # set over MQTT
    first.control.set(apply_command(first.state.controls, "enabled", b"OFF"))
    second = restarted("events:\n  sensitivity: medium\n", first)
    assert second.state.controls.sensitivity == "high"  # file unchanged: kept
    edited = restarted("events:\n  sensitivity: low\n", second).state.controls  # file edited: the file wins for that key
    assert edited.sensitivity == "low" and edited.enabled is False


def test_state_round_trips_through_its_payload():
    state = ControlState(enabled=False, sensitivity="high", quiet_hours=QuietHours.parse("13:00-15:00"))
    assert ControlState.from_payload(json.loads(json.dumps(state.to_payload()))) == state


def test_outbox_survives_reopen_keeps_order_marks_stale_and_bounds_size(tmp_path):
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path, max_events=3, stale_after_seconds=60)
    seqs = [box.add("crymonitor/x/event", {"id": f"e{n}", "t": n}) for n in range(5)]
    box.remove(seqs[3])
    assert box.dropped == 2
    box.close()
    reopened = Outbox(path, max_events=3, stale_after_seconds=60)
    rows = reopened.pending(now=None)
    assert [json.loads(p)["id"] for _, _, p in rows] == ["e2", "e4"]
    import time

    stale = reopened.pending(now=time.time() + 120)
    assert all(json.loads(p)["stale"] is True for _, _, p in stale)
    assert "stale" not in json.loads(reopened.pending(now=time.time())[0][2])


def test_mic_health_flags_digital_silence_and_flat_lines_only():
    health = MicHealth(deaf_after_seconds=2.0)
    rng = np.random.default_rng(0)
    room = (rng.standard_normal(1600) * 3e-4).astype(np.float32)  # a quiet room: about -70 dBFS
    changes = [health.update(room, t=0.1 * (i + 1)) for i in range(100)]
    assert set(changes) == {None}
    changes = [health.update(np.full(1600, 0.25, np.float32), t=10 + 0.1 * (i + 1)) for i in range(30)]
    assert changes.index("deaf") == 19 and changes.count("deaf") == 1  # after 2 s of a DC-stuck stream
    assert health.update(room, t=14.0) == "ok"


def test_clip_retention_by_age_then_total_size(tmp_path):
    import time

    from monitor.config import ClipsConfig
    from monitor.service.clips import ClipRecorder

    recorder = ClipRecorder(ClipsConfig(enabled=True, retention_days=1.0, max_total_mb=0.25), tmp_path)
    now = time.time()
    ages_h = {"old.flac": 30, "a.flac": 3, "b.flac": 2, "c.flac": 1}
    for name, hours in ages_h.items():
        (tmp_path / name).write_bytes(b"\0" * 100_000)
        os.utime(tmp_path / name, (now - hours * 3600, now - hours * 3600))
    removed = {p.name for p in recorder.prune(now=now)}
    assert removed == {"old.flac", "a.flac"}  # past 1 day, then the oldest until ≤ 0.25 MB remain
    assert sorted(p.name for p in tmp_path.glob("*.flac")) == ["b.flac", "c.flac"]
