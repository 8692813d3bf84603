"""The one driver (monitor/driver.py) on its own: the shipped detector and classifier on a held-out cry,
with reasons computed inline (replay) and as tasks of the loop (the daemon), and typed events to the sinks."""

import asyncio
import dataclasses
import json
import subprocess
import sys
import threading

import pytest
import soundfile as sf

from conftest import ROOT
from monitor.audio.capture import file_chunks
from monitor.config import Config
from monitor.core.pipeline import Pipeline
from monitor.core.presets import effective_events
from monitor.driver import Clip, Driver, Emitted, FileClock, Sink
from monitor.inference.classify import ReasonClassifier
from monitor.inference.detect import make_detector
from monitor.offline.replay import Collector


class Clips(Sink):
    """Names each cry's clip, as the clip recorder does (the driver asks it before any sink)."""

    def __init__(self) -> None:
        self.chunks = 0

    def clip(self, event) -> Clip:
        return Clip(f"{event.id[:8]}.flac")

    def audio(self, chunk) -> None:
        self.chunks += 1


class Tamper(Sink):
    """Tries to change what the sinks after it see."""

    def __init__(self) -> None:
        self.refused = 0

    def cry_event(self, emitted: Emitted) -> None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            emitted.clip = None
        self.refused += 1


def run(path, reasons_inline: bool, sinks, clips=None) -> None:
    config = Config()
    driver = Driver(Pipeline(config, make_detector(config.detector), reasons=True), sinks, FileClock(0.0),
                    ReasonClassifier(config.classifier), reasons_inline=reasons_inline, clips=clips)
    asyncio.run(driver.run(file_chunks(str(path), 5.0 if reasons_inline else 0.1, realtime=False)))


def test_inline_reasons_follow_the_window_that_made_them_due_and_every_sink_sees_the_clip(cry_then_quiet):
    collector, tamper, clips = Collector(), Tamper(), Clips()
    run(cry_then_quiet, True, [tamper, collector], clips)
    kinds = [e["type"] for e in collector.events]
    assert kinds[0] == "cry_start" and kinds[-1] == "cry_end" and "cry_reason" in kinds
    times = [e["t"] for e in collector.events]
    assert times == sorted(times)  # in audio-time order, a reason right after its window
    assert all(e["clip"] == e["id"][:8] + ".flac" for e in collector.events if e["type"] != "cry_reason")
    assert tamper.refused == 2 and clips.chunks > 0  # the clips are a sink of the audio too
    assert collector.events[0]["ts"].startswith("1970-01-01T00:00:0")  # FileClock(0): ts is the file's t


def test_reasons_as_tasks_give_what_inline_gives_for_the_same_audio(cry_then_quiet):
    path = cry_then_quiet
    inline, tasks = Collector(), Collector()
    run(path, True, [inline])
    run(path, False, [tasks])  # 0.1 s chunks as live; each reason awaited on its own thread

    def summary(events):
        return sorted((e["type"], e["t"], e.get("reason")) for e in events)

    assert summary(tasks.events) == summary(inline.events)


class ThreadNoting(Pipeline):
    """The real pipeline, noting which thread each call that changes it comes on."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.threads: dict[str, set[str]] = {"feed": set(), "configure": set()}

    def feed(self, samples):
        self.threads["feed"].add(threading.current_thread().name)
        return super().feed(samples)

    def configure(self, **settings) -> None:
        self.threads["configure"].add(threading.current_thread().name)
        super().configure(**settings)


def test_settings_changed_from_the_event_loop_reach_the_state_machine_on_the_inference_thread(cry_then_quiet):
    config = Config()
    detector = make_detector(config.detector)
    pipeline = ThreadNoting(config, detector)
    driver = Driver(pipeline, [Collector()], FileClock(0.0))
    high = effective_events(config.events, "high", config.detector, detector.presets)

    async def changed_while_listening():
        async for chunk in file_chunks(str(cry_then_quiet), 0.5, realtime=False):
            yield chunk
            driver.configure(events=high)  # as a command or a reload does, between two chunks

    asyncio.run(driver.run(changed_while_listening()))
    assert pipeline.events.config == high and high != Pipeline(config, detector).events.config
    assert len(pipeline.threads["configure"] | pipeline.threads["feed"]) == 1  # the one inference thread
    assert threading.current_thread().name not in pipeline.threads["configure"]


class Audio(Collector):
    def __init__(self) -> None:
        super().__init__()
        self.samples = 0

    def audio(self, chunk) -> None:
        self.samples += chunk.size


def test_a_gate_that_closes_mid_cry_ends_it_paused_and_the_pause_only_keeps_the_clock(cry_then_quiet):
    config = Config()
    pipeline = Pipeline(config, make_detector(config.detector))
    sink = Audio()
    driver = Driver(pipeline, [sink], FileClock(0.0))
    asked = []

    def gate() -> bool:  # listening, then paused from 3 s of audio on (the cry is on), then listening from 6 s
        asked.append(pipeline.t)
        return not 3.0 <= pipeline.t < 6.0

    asyncio.run(driver.run(file_chunks(str(cry_then_quiet), 0.5, realtime=False), gate))
    events = sink.events
    assert [(e["type"], e.get("ended_by")) for e in events[:2]] == [("cry_start", None), ("cry_end", "paused")]
    assert events[1]["t"] == 3.0 and events[0]["t"] < 3.0
    assert not [w for w in sink.windows if 3.0 < w.t <= 6.0]  # nothing decided while paused ...
    assert sink.samples == round(pipeline.t * 16000) and pipeline.t == sf.info(cry_then_quiet).duration
    assert len(asked) == len(range(0, sink.samples, 8000))  # ... but every chunk asked the gate and reached the sinks


def test_a_truncated_flac_ends_the_open_cry_before_its_error(tmp_path, cry_then_quiet):
    audio, rate = sf.read(cry_then_quiet, dtype="float32")
    flac = tmp_path / "cut.flac"
    sf.write(flac, audio, rate)
    data = flac.read_bytes()
    flac.write_bytes(data[: len(data) * 2 // 3])  # the cry holds most of the bytes: this cuts into it
    out = subprocess.run([sys.executable, "-m", "monitor", "replay", str(flac)], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert [e["type"] for e in events if e["type"] != "cry_reason"] == ["cry_start", "cry_end"], out.stdout
    assert events[-1]["ended_by"] == "input_error"
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("crymonitor: error:") and "cut.flac: decoding failed part-way" in out.stderr
