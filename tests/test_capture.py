"""Real capture: PulseAudio's null-sink monitor is the microphone; what `paplay` plays into it is heard."""

import asyncio
import json
import signal
import subprocess
import time

import numpy as np
import pytest
import soundfile as sf

from daemon_helpers import DaemonProcess, write_config
from monitor.audio.capture import MicCapture, list_input_devices
from monitor.cli import main
from monitor.config import AudioConfig

pytestmark = pytest.mark.xdist_group("pulse")  # one PulseAudio server: its tests run in one worker, one at a time


def play(path, sink="vspk") -> subprocess.Popen:
    return subprocess.Popen(["paplay", f"--device={sink}", str(path)])


def test_devices_lists_the_virtual_microphone(pulse, capsys):
    names = [d.name for d in list_input_devices()]
    assert "pulse" in names and "default" in names
    assert main(["devices"]) == 0
    assert "pulse" in capsys.readouterr().out


@pytest.mark.parametrize("rate", [16000, 48000])  # 48 kHz exercises the streaming resampler on a live stream
async def test_microphone_hears_what_is_played(pulse, tmp_path, rate):
    rng = np.random.default_rng(rate)
    spectrum = np.fft.rfft(rng.standard_normal(16000))
    # band-limited: at 48 kHz the path may shift by a fraction of a 16 kHz sample, which decorrelates high bands
    spectrum[np.fft.rfftfreq(16000, 1 / 16000) > 2000] = 0
    noise = np.fft.irfft(spectrum, 16000)
    probe = np.concatenate([np.zeros(4000), 0.3 * noise / noise.std(), np.zeros(8000)]).astype(np.float32)
    sf.write(tmp_path / "probe.wav", probe, 16000)
    capture = MicCapture(AudioConfig(device="pulse", sample_rate=rate))
    chunks, player = [], None

    async def collect():
        nonlocal player
        async for chunk in capture.chunks():
            chunks.append(chunk)
            if player is None and sum(c.size for c in chunks) > 8000:
                player = play(tmp_path / "probe.wav")
            if player is not None and player.poll() is not None and sum(c.size for c in chunks) > 60000:
                capture.stop()

    await asyncio.wait_for(collect(), timeout=30)
    recorded = np.concatenate(chunks)
    ref = probe[4000:20000]
    n = recorded.size + ref.size
    xcorr = np.fft.irfft(np.fft.rfft(recorded, n) * np.conj(np.fft.rfft(ref, n)), n)[: recorded.size]
    lag = int(np.argmax(xcorr))
    segment = recorded[lag : lag + ref.size]
    assert segment.size == ref.size
    similarity = float(np.dot(segment, ref) / (np.linalg.norm(segment) * np.linalg.norm(ref)))
    assert similarity > 0.95, similarity


def test_daemon_on_the_microphone_detects_a_played_cry(pulse, broker, subscriber_factory, cry_then_quiet, tmp_path):
    sub = subscriber_factory(broker.port, "crymonitor/mic/#")
    daemon = DaemonProcess(write_config(tmp_path / "c.yaml", broker.port, "mic"))
    try:
        sub.wait_for(lambda m: "online" in sub.payloads("status"), timeout=60)
        sub.wait_for(lambda m: len(sub.payloads("level")) > 0, timeout=30)  # audio is flowing
        player = play(cry_then_quiet)
        sub.wait_for(lambda m: any(json.loads(p)["type"] == "cry_start" for p in sub.payloads("event")), timeout=30)
        player.wait(30)
    finally:
        code, seconds = daemon.stop(signal.SIGTERM)
    assert code == 0 and seconds < 2.0, daemon.stderr
    assert daemon.wait_log("capture_started")["sample_rate"] == 16000
    assert sub.payloads("crying")[:2] == ["OFF", "ON"]


def test_a_silent_microphone_is_reported_deaf_reopened_and_recovers(pulse, broker, subscriber_factory,
                                                                    cry_then_quiet, tmp_path):
    # Nothing plays into the null sink: its monitor delivers digital silence, as a muted or broken mic would.
    sub = subscriber_factory(broker.port, "crymonitor/deafmic/#")
    config = write_config(tmp_path / "c.yaml", broker.port, "deafmic", "audio:\n  deaf_after_seconds: 2\n")
    daemon = DaemonProcess(config)
    try:
        sub.wait_for(lambda m: any(json.loads(p)["problem"] for p in sub.payloads("diagnostics")), timeout=60)
        daemon.wait_log("capture_reopening", timeout=15)
        player = play(cry_then_quiet)  # sound again: the monitor can hear
        sub.wait_for(lambda m: not json.loads(sub.payloads("diagnostics")[-1])["problem"], timeout=30)
        player.wait(30)
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    assert code == 0 and set(sub.payloads("status")) == {"online", "offline"}  # the daemon was there throughout
    assert daemon.wait_log("microphone_ok")


def test_a_missing_device_is_retried_with_backoff_not_fatal(pulse, broker, tmp_path):
    config = write_config(tmp_path / "c.yaml", broker.port, "nomic", "audio:\n  device: no-such-microphone\n")
    daemon = DaemonProcess(config)
    try:
        deadline = time.monotonic() + 30
        while len([r for r in daemon.logs() if r["event"] == "capture_open_failed"]) < 3:
            assert daemon.proc.poll() is None and time.monotonic() < deadline, daemon.stderr
            time.sleep(0.1)
    finally:
        code, _ = daemon.stop(signal.SIGTERM)
    failures = [r for r in daemon.logs() if r["event"] == "capture_open_failed"]
    assert [r["retry_in_s"] for r in failures[:3]] == [1.0, 2.0, 4.0]
    assert "no-such-microphone" in failures[0]["error"] and code == 0
