"""Issue 24: what a user or a fault did that still broke the daemon, each reproduced with real parts (the daemon
in a subprocess, a real broker, real files)."""

import json
import signal
import sqlite3
from pathlib import Path

import pytest

from daemon_helpers import DaemonProcess, quiet_file, write_config
from monitor.service.feedback import FEEDBACK_FILE, RECENT_FILE


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
        assert events["state_file_corrupt"]["kept"] == ["controls", "open_cry"]
        assert json.loads(sub.payloads("state")[-1])["sensitivity"] == "high"
