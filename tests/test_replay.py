"""Replay of real held-out clips through the shipped detector and the daemon's pipeline."""

import asyncio
import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, assert_golden, pick
from monitor.audio.capture import file_chunks
from monitor.audio.files import read_file
from monitor.cli import main
from monitor.config import Config, override
from monitor.core.events import REASONS, UNCERTAIN
from monitor.core.pipeline import Pipeline
from monitor.driver import Driver, FileClock
from monitor.inference.classify import ReasonClassifier
from monitor.inference.detect import CryDetector
from monitor.inference.weights import read_manifest
from monitor.offline.replay import BLOCK_SECONDS, Collector, JsonLines, replay_file


def replay_events(path, detector) -> list[dict]:
    collector = Collector()
    replay_file(str(path), Config(), detector, [collector])
    return collector.events


def test_cry_clip_yields_start_then_end(cry_then_quiet, detector):
    events = replay_events(cry_then_quiet, detector)
    assert [e["type"] for e in events] == ["cry_start", "cry_end"]
    assert events[0]["id"] == events[1]["id"] and events[1]["ended_by"] == "quiet"
    assert 0.5 <= events[0]["confidence"] <= 1.0
    assert events[1]["duration_s"] == pytest.approx(events[1]["t"] - events[0]["t"], abs=1e-3)


@pytest.fixture(scope="module")
def held_out_negatives(val_clips, tmp_path_factory):
    """The held-out music track, household noise and one adult speaker's digits played end to end."""
    folder = tmp_path_factory.mktemp("negatives")
    music = pick(val_clips, "debian asterisk-moh", "notcry")[0].path
    noise = pick(val_clips, "Google Speech Commands", "notcry")[0].path
    speech = np.concatenate([read_file(c.path) for c in pick(val_clips, "free-spoken-digit", "notcry")[:150]])
    sf.write(folder / "speech.wav", speech, 16000)
    return {"music": music, "noise": noise, "speech": folder / "speech.wav"}


@pytest.mark.parametrize("kind", ["music", "noise", "speech"])
def test_non_cry_audio_yields_no_events(held_out_negatives, detector, kind):
    assert replay_events(held_out_negatives[kind], detector) == []


def lowpass(audio: np.ndarray, cutoff: float) -> np.ndarray:
    spectrum = np.fft.rfft(audio)
    spectrum[np.fft.rfftfreq(audio.size, 1 / 16000) > cutoff] = 0
    return np.fft.irfft(spectrum, audio.size).astype(np.float32)


@pytest.mark.parametrize("kind", ["music", "speech"])
def test_non_cries_cut_to_a_cry_recordings_band_do_not_become_cries(held_out_negatives, detector, tmp_path, kind):
    # Every training cry is 8 kHz audio (nothing above 4 kHz): the band alone must not make a cry.
    narrow = tmp_path / f"{kind}_4k.wav"
    sf.write(narrow, lowpass(read_file(held_out_negatives[kind]), 4000), 16000)
    assert replay_events(narrow, detector) == []


def test_a_cry_with_full_band_content_added_is_still_a_cry(cry_then_quiet, detector, tmp_path):
    cry = read_file(cry_then_quiet)
    hiss = lowpass(np.random.default_rng(0).standard_normal(cry.size), 8000) - lowpass(
        np.random.default_rng(0).standard_normal(cry.size), 4000)  # energy only above 4 kHz
    wide = tmp_path / "cry_wide.wav"
    sf.write(wide, cry + hiss * (np.sqrt(np.mean(cry**2)) / np.sqrt(np.mean(hiss**2)) / 10), 16000)  # 20 dB SNR
    assert [e["type"] for e in replay_events(wide, detector)] == ["cry_start", "cry_end"]


def test_cli_replay_writes_events_and_scores_and_survives_a_bad_file(cry_then_quiet, tmp_path, capsys, detector):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    events_path, scores_path = tmp_path / "events.jsonl", tmp_path / "scores.csv"
    code = main(["replay", str(bad), str(cry_then_quiet), "--events-out", str(events_path),
                 "--scores-out", str(scores_path)])
    assert code == 2  # one input failed ...
    err = capsys.readouterr().err
    assert f"crymonitor: error: {bad}" in err and "Traceback" not in err
    events = [json.loads(line) for line in events_path.read_text().splitlines()]
    # ... and the good one was still replayed: one cry, its reasons (one or two) between start and end
    types = [e["type"] for e in events]
    assert types[0] == "cry_start" and types[-1] == "cry_end" and set(types[1:-1]) == {"cry_reason"}
    assert 1 <= len(types) - 2 <= 2
    assert all(e["file"] == str(cry_then_quiet) and isinstance(e["t"], float) for e in events)
    rows = list(csv.DictReader(scores_path.open()))
    samples, window, hop = sf.info(cry_then_quiet).frames, detector.window_samples, 0.24 * 16000
    assert len(rows) == int((samples - window) // hop) + 1  # a window every hop once the first one is complete
    assert float(rows[0]["t"]) == round(window / 16000, 3) and all(0.0 <= float(r["score"]) <= 1.0 for r in rows)
    medium = read_manifest(ROOT / "models")[Config().detector.model.name].operating_point["medium"]
    assert max(float(r["score"]) for r in rows) >= medium.start_threshold


def test_tools_replay_wrapper_prints_json_lines(cry_then_quiet):
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "replay.py"), str(cry_then_quiet)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    types = [json.loads(line)["type"] for line in out.stdout.splitlines()]
    assert types[0] == "cry_start" and types[-1] == "cry_end" and set(types[1:-1]) == {"cry_reason"}


# --- the replay's events, byte for byte ------------------------------------------------------------------------
CRY_ID = re.compile(r"[0-9a-f]{32}")


def replay_lines(path: Path) -> str:
    """``crymonitor replay``'s JSON lines for ``path`` (named ``input.wav``), with the replay's start at 0 (the
    epoch) and each cry id replaced by ``cry-<n>`` in order of appearance: everything else as replay writes it."""
    config = override(Config(), "events", max_duration_seconds=20.0)
    out = io.StringIO()
    pipeline = Pipeline(config, CryDetector(config.detector), reasons=True)
    driver = Driver(pipeline, [JsonLines(out, "input.wav")], FileClock(0.0), ReasonClassifier(config.classifier),
                    reasons_inline=True)
    asyncio.run(driver.run(file_chunks(str(path), BLOCK_SECONDS, realtime=False)))
    ids: dict[str, str] = {}
    return CRY_ID.sub(lambda m: ids.setdefault(m.group(), f"cry-{len(ids) + 1}"), out.getvalue())


def test_the_replay_of_fixed_minutes_gives_the_golden_events_byte_for_byte(nursery_minutes):
    """The outputs' refactorings change no byte of an event: tests/golden/replay-events.jsonl was written by this
    replay before the driver handed its sinks typed events."""
    lines = replay_lines(nursery_minutes)
    events = [json.loads(line) for line in lines.splitlines()]
    assert [e["type"] for e in events].count("cry_start") >= 4 and "cry_reason" in {e["type"] for e in events}
    assert {e.get("ended_by") for e in events} - {None} == {"quiet", "max_duration", "shutdown"}
    assert_golden(lines, "replay-events.jsonl")


def test_replay_prints_cry_reason_for_the_cry_within_five_seconds(cry_then_quiet, tmp_path):
    out = subprocess.run([sys.executable, "-m", "monitor", "replay", str(cry_then_quiet)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stdout.splitlines()]
    start = next(e for e in events if e["type"] == "cry_start")
    reasons = [e for e in events if e["type"] == "cry_reason"]
    assert reasons and all(r["id"] == start["id"] for r in reasons)
    assert reasons[0]["t"] - start["t"] <= 5.0
    assert set(reasons[0]["probs"]) == set(REASONS) and reasons[0]["reason"] in (*REASONS, UNCERTAIN)
    types = [e["type"] for e in events]
    assert types.index("cry_start") < types.index("cry_reason") < types.index("cry_end")
