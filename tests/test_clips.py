"""Cry clips (monitor/service/clips.py): retention by age then size, and the real daemon saving a cry with its
pre-roll."""

import io
import json
import os
import signal

import pytest
import soundfile as sf
from PIL import Image

from daemon_helpers import DaemonProcess, write_config


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
