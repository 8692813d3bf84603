"""What survives a restart (monitor/service/state.py): one daemon per state folder, ``state.json`` and its
siblings in every shape a fault or a hand could leave, and a cry left open by a killed daemon."""

import json
import shutil
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
import structlog

from daemon_helpers import NASTY_JSON, DaemonProcess, quiet_file, quiet_wav, strict_json, write_config
from monitor.config import Config, override
from monitor.core.control import apply_command
from monitor.service.daemon import Daemon
from monitor.service.feedback import FEEDBACK_FILE, RECENT_FILE


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


def test_an_infinite_number_in_the_state_file_sets_it_aside_with_a_warning(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.json").write_text('{"stats": {"day": "2026-12-02", "cries_today": 1e999}}')
    config = override(override(Config(), "mqtt", enabled=False), "state", dir=str(state))
    with structlog.testing.capture_logs() as logs:
        daemon = Daemon(config)
    assert daemon.state.stats.cries_today == 0
    assert any(r["event"] == "state_file_corrupt" and "out of range" in r["error"] for r in logs)


def test_a_second_daemon_on_the_same_state_folder_is_refused_naming_the_first(broker, tmp_path):
    config = write_config(tmp_path / "c.yaml", broker.port, "twice")
    first = DaemonProcess(config, "--input", str(quiet_wav(tmp_path)))
    try:
        first.wait_log("daemon_started")
        second = DaemonProcess(config, "--input", str(quiet_wav(tmp_path)))
        assert second.proc.wait(timeout=60) == 2
        second.stop(signal.SIGTERM)
        assert f"already used by the crymonitor with PID {first.proc.pid}" in second.stderr
        assert "Traceback" not in second.stderr and first.proc.poll() is None
    finally:
        first.stop(signal.SIGKILL)
    third = DaemonProcess(config, "--input", str(quiet_wav(tmp_path)))  # a killed daemon leaves no stale lock
    try:
        third.wait_log("daemon_started")
    finally:
        third.stop(signal.SIGTERM)


# --- issue 24: the state folder's files in every shape a fault or a hand could leave -----------------------------

VALID_STATE = {"controls": {"enabled": "ON", "sensitivity": "high", "quiet_hours": "OFF"},
               "from_config": {"sensitivity": "medium", "quiet_hours": "OFF"},
               "stats": {"day": "2026-01-01", "cries_today": 2, "last_cry_duration_s": 4.5},
               "open_cry": {"id": "c", "started_ts": "2026-01-01T00:00:00+00:00"}}
VALID_LABELS = {"labels": [{"id": "a", "reason": "tired", "embedding": [0.5, 0.1], "model": "m", "at": 1.0},
                           {"id": "b", "reason": "hungry", "embedding": [0.2, 0.3], "model": "m", "at": 2.0}]}
VALID_RECENT = {"recent": [{"id": "a", "ended_at": 5.0, "embedding": [0.5, 0.1], "model": "m"}]}


def leaves(value, path=()):
    """Every place in a JSON document where a value can be replaced, the document itself included."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))


def with_raw(document, path: tuple, raw: str) -> str:
    """The document as JSON text, with the raw JSON ``raw`` (which may not even parse) at ``path``."""
    if not path:
        return raw
    marker = "\u0000MARK\u0000"
    copy = json.loads(json.dumps(document))
    target = copy
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = marker
    return json.dumps(copy).replace(json.dumps(marker), raw)


def json_variants(document, count: int, rng):
    """Seeded damage to a valid document: one value replaced by a nasty one; a cut; a stray byte."""
    places = list(leaves(document))
    for i in range(count):
        text = with_raw(document, places[rng.integers(len(places))], NASTY_JSON[rng.integers(len(NASTY_JSON))])
        if i % 7 == 5:
            text = text[: int(rng.integers(len(text) + 1))]
        elif i % 7 == 6 and text:
            at = int(rng.integers(len(text)))
            text = text[:at] + chr(int(rng.integers(0, 256))) + text[at + 1:]
        yield text


def outbox_variants(folder: Path, count: int, rng):
    """Seeded outbox files: the right table or another one, rows with every kind of payload and time."""
    import sqlite3

    schemas = ["CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, "
               "payload TEXT NOT NULL, created REAL NOT NULL)",
               "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, topic TEXT, payload TEXT, created REAL)",
               "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, topic TEXT, payload BLOB, created TEXT, extra TEXT)",
               "CREATE TABLE outbox (id INTEGER PRIMARY KEY, data BLOB)"]
    payloads = [json.dumps({"type": "cry_start", "id": "ok", "t": 1.0}), *NASTY_JSON, "not json", b"\xff\xfe"]
    times = [1.0, 1e12, -5.0, "yesterday", "1.0", None, float("inf"), float("nan"), 2**62]
    for i in range(count):
        path = folder / f"{i}" / "outbox.sqlite"
        path.parent.mkdir()
        db = sqlite3.connect(path)
        schema = schemas[i % len(schemas)]
        db.execute(schema)
        for _ in range(int(rng.integers(0, 6))):
            row = ("crymonitor/x/event", payloads[rng.integers(len(payloads))], times[rng.integers(len(times))])
            try:
                if "data BLOB" in schema:
                    db.execute("INSERT INTO outbox (data) VALUES (?)", (row[1],))
                else:
                    db.execute("INSERT INTO outbox (topic, payload, created) VALUES (?, ?, ?)", row)
            except sqlite3.IntegrityError:  # NOT NULL
                pass
        db.commit()
        db.close()
        yield path


@pytest.fixture(scope="module")
def shipped_classifier():
    from monitor.config import ClassifierConfig
    from monitor.inference.classify import ReasonClassifier

    return ReasonClassifier(ClassifierConfig(device="cpu", adaptation=True))


def test_state_file_fuzz_every_shape_loads_or_is_set_aside(tmp_path, shipped_classifier):
    from monitor.service.feedback import Feedback
    from monitor.service.outbox import Outbox
    from monitor.service.running import RunningConfig
    from monitor.service.state import DaemonState

    rng = np.random.default_rng(24)
    outcomes = {"kept": 0, "set aside": 0}
    cases = [("state.json", text) for text in json_variants(VALID_STATE, 150, rng)]
    cases += [("feedback.json", text) for text in json_variants(VALID_LABELS, 150, rng)]
    cases += [("recent_cries.json", text) for text in json_variants(VALID_RECENT, 100, rng)]
    for n, (name, text) in enumerate(cases):
        folder = tmp_path / f"j{n}"
        folder.mkdir()
        (folder / name).write_text(text, errors="surrogatepass")
        with structlog.testing.capture_logs() as logs:
            state = DaemonState(folder, RunningConfig(Config()))
            feedback = Feedback(folder, shipped_classifier, 12)
        stats = json.loads(json.dumps(state.stats.to_payload(), allow_nan=False))
        duration = stats["last_cry_duration_s"]
        assert stats["cries_today"] >= 0 and (duration is None or duration >= 0), (name, text[:200])
        json.dumps({"labels": feedback.labels, "recent": feedback.recent}, allow_nan=False)
        set_aside = list(folder.glob(f"{name}.corrupt-*"))
        warned = [r for r in logs if r["event"] in ("state_file_corrupt", "feedback_store_corrupt")]
        assert len(set_aside) == len(warned) <= 1, (name, text[:200])  # a bad file is never silently used
        outcomes["set aside" if set_aside else "kept"] += 1
    for path in outbox_variants(tmp_path, 80, rng):
        box = Outbox(path)
        for _, _, payload in box.pending(now=time.time()):
            assert isinstance(json.loads(payload, parse_constant=pytest.fail), dict)  # only events go out
        box.close()
    assert outcomes["kept"] >= 30 and outcomes["set aside"] >= 200, outcomes


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
