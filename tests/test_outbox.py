"""The durable outbox (monitor/service/outbox.py): rows kept until PUBACK, order, staleness and size, a corrupt
or malformed file set aside and salvaged, a full or read-only disk, and a killed daemon's events sent by the next."""

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import structlog

from conftest import cry_then_long_quiet, fill
from daemon_helpers import DaemonProcess, event, quiet_file, write_config
from monitor.config import MqttConfig
from monitor.service.homeassistant import EVENT_TYPES
from monitor.service.outbox import Outbox
from monitor.service.publish import MqttPublisher


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


def test_outbox_rows_live_until_puback_and_are_resent_by_the_next_publisher(broker, subscriber_factory, tmp_path):
    from monitor.service.outbox import Outbox

    sub = subscriber_factory(broker.port)
    box = Outbox(tmp_path / "outbox.sqlite")
    publisher = MqttPublisher(MqttConfig(port=broker.port), outbox=box)
    publisher.start()
    assert publisher.connected.wait(5)
    publisher.publish_event(event(0))
    sub.wait_for(lambda m: len(sub.payloads("event")) == 1)
    deadline = time.monotonic() + 5
    while len(box) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(box) == 0  # acknowledged → deleted
    broker.stop()
    publisher.publish_event(event(1))
    publisher.publish_event(event(2))
    assert publisher.close(timeout=0.2) == 3 and len(box) == 2  # two events and "offline" never acknowledged

    broker.start()
    again = MqttPublisher(MqttConfig(port=broker.port), outbox=Outbox(tmp_path / "outbox.sqlite"))
    again.start()
    sub.wait_for(lambda m: [json.loads(p)["t"] for p in sub.payloads("event")][-2:] == [1.0, 2.0], timeout=20)
    assert again.close(timeout=5) == 0 and len(again.outbox) == 0


def test_a_corrupt_outbox_is_set_aside_not_fatal(tmp_path):
    from monitor.service.outbox import Outbox

    path = tmp_path / "outbox.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    box = Outbox(path)
    box.add("t", {"id": "x"})
    assert len(box) == 1 and len(list(tmp_path.glob("outbox.sqlite.corrupt-*"))) == 1


# --- the outbox on a full or read-only disk: real tmpfs mounts where the machine allows them -------------------


def earlier_events(state: Path, device: str) -> list[str]:
    """Events an earlier run left in the outbox (its broker was down when it stopped)."""
    from monitor.service.outbox import Outbox

    box = Outbox(state / "outbox.sqlite")
    ids = [f"earlier-{n}" for n in range(3)]
    for n, cry_id in enumerate(ids):
        box.add(f"crymonitor/{device}/event", {"type": "cry_start" if n % 2 == 0 else "cry_end", "id": cry_id,
                                               "t": float(n)})
    box.close()
    return ids


def published_ids(sub) -> list[str]:
    return [json.loads(p)["id"] for p in sub.payloads("event")]


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_full_or_read_only_disk_keeps_the_outbox_monitors_and_sends_its_events_once_writable(
        broker, subscriber_factory, small_disk, cry_then_quiet, tmp_path, fault):
    state = small_disk / "state"
    state.mkdir()
    kept = earlier_events(state, "disk")
    before = (state / "outbox.sqlite").read_bytes()
    if fault == "full":
        filler = fill(small_disk)
    else:
        subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    config = tmp_path / "c.yaml"
    config.write_text(f"mqtt:\n  port: {broker.port}\n  device_id: disk\nstate:\n  dir: {state}\n"
                      "logging:\n  format: json\n")
    sub = subscriber_factory(broker.port, "crymonitor/disk/event")
    daemon = DaemonProcess(config, "--input", str(cry_then_long_quiet(tmp_path, cry_then_quiet)))
    try:
        problem = daemon.wait_log("outbox_unavailable")
        daemon.wait_log("cry_start", timeout=60)  # the alarm goes out without the outbox
        sub.wait_for(lambda m: any(json.loads(p)["type"] == "cry_start" for p in sub.payloads("event")))
        assert not set(kept) & set(published_ids(sub))  # not readable yet, and not lost: the file is kept
        assert (state / "outbox.sqlite").read_bytes() == before and not list(state.glob("*.corrupt-*"))
        if fault == "full":
            filler.unlink()  # space freed
        else:
            subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
        daemon.wait_log("outbox_available", timeout=15)
        sub.wait_for(lambda m: set(kept) <= set(published_ids(sub)), timeout=15)
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    assert code == 0 and problem["level"] == "error"
    assert "outbox_write_failed" in {r["event"] for r in daemon.logs()}  # each event without it is logged


def test_a_malformed_outbox_is_set_aside_and_the_events_it_still_holds_are_salvaged(tmp_path):
    from monitor.service.outbox import Outbox

    path = tmp_path / "outbox.sqlite"
    box = Outbox(path)
    for n in range(40):  # about ten 4 KiB pages of rows
        box.add("t", {"id": str(n), "pad": "x" * 900})
    box.close()
    data = bytearray(path.read_bytes())
    last_page = len(data) // 4096 - 1
    data[last_page * 4096: last_page * 4096 + 100] = b"\xff" * 100  # a torn write in the last leaf page
    path.write_bytes(bytes(data))
    with structlog.testing.capture_logs() as logs:
        box = Outbox(path)
    salvaged = [json.loads(p)["id"] for _, _, p in box.pending(now=None)]
    assert 0 < len(salvaged) < 40 and salvaged == [str(n) for n in range(len(salvaged))]  # in order
    set_aside = [p.name for p in tmp_path.glob("outbox.sqlite.corrupt-*") if re.fullmatch(r".*-\d+", p.name)]
    assert len(set_aside) == 1  # with its WAL, if it had one: the rows of the last write may be there
    assert [r for r in logs if r["event"] == "outbox_corrupt"][0]["salvaged"] == len(salvaged)


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
