"""The one driver (monitor/driver.py) on its own: the shipped detector and classifier on a held-out cry,
with reasons computed inline (replay) and as tasks of the loop (the daemon)."""

import asyncio

from monitor.audio.capture import file_chunks
from monitor.config import Config
from monitor.core.pipeline import Pipeline
from monitor.inference.classify import ReasonClassifier
from monitor.inference.detect import make_detector
from monitor.offline.replay import Collector
from monitor.driver import Driver, FileClock, Sink


class Stamp(Sink):
    """Adds a field, as the clip sink does, for the sinks after it."""

    def cry_event(self, payload: dict) -> None:
        payload["stamped"] = True


def run(path, reasons_inline: bool, sinks) -> None:
    config = Config()
    driver = Driver(Pipeline(config, make_detector(config.detector), reasons=True), sinks, FileClock(0.0),
                    ReasonClassifier(config.classifier), reasons_inline=reasons_inline)
    asyncio.run(driver.run(file_chunks(str(path), 5.0 if reasons_inline else 0.1, realtime=False)))


def test_inline_reasons_follow_the_window_that_made_them_due_and_sinks_see_earlier_sinks_fields(cry_then_quiet):
    collector = Collector()
    run(cry_then_quiet, True, [Stamp(), collector])
    kinds = [e["type"] for e in collector.events]
    assert kinds[0] == "cry_start" and kinds[-1] == "cry_end" and "cry_reason" in kinds
    times = [e["t"] for e in collector.events]
    assert times == sorted(times)  # in audio-time order, a reason right after its window
    assert all(e.get("stamped") for e in collector.events if e["type"] != "cry_reason")
    assert collector.events[0]["ts"].startswith("1970-01-01T00:00:0")  # FileClock(0): ts is the file's t


def test_reasons_as_tasks_give_what_inline_gives_for_the_same_audio(cry_then_quiet):
    path = cry_then_quiet
    inline, tasks = Collector(), Collector()
    run(path, True, [inline])
    run(path, False, [tasks])  # 0.1 s chunks as live; each reason awaited on its own thread

    def summary(events):
        return sorted((e["type"], e["t"], e.get("reason")) for e in events)

    assert summary(tasks.events) == summary(inline.events)
