"""The runtime controls (monitor/core/control.py): commands over MQTT parsed or refused, the quiet hours."""

import datetime as dt
import json

import numpy as np
import pytest

from monitor.core.control import CONTROLS, CommandError, ControlState, QuietHours, apply_command


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


def test_state_round_trips_through_its_payload():
    state = ControlState(enabled=False, sensitivity="high", quiet_hours=QuietHours.parse("13:00-15:00"))
    assert ControlState.from_payload(json.loads(json.dumps(state.to_payload()))) == state
