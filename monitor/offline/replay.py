"""Replay: recorded files through the daemon's driver (:mod:`monitor.driver`) and pipeline.

As fast as the CPU allows (5 s blocks, pending windows scored in batches), or paced like a microphone with
``realtime=True``. Each file starts a fresh pipeline, so ``t`` is seconds from the file's start and ``ts`` is
the replay's start time plus ``t`` (:class:`~monitor.driver.FileClock`). An open cry is closed at the
end of the file (``ended_by: shutdown``), or where its decoding failed (``ended_by: input_error``, then the
error). Reasons are computed inline (replay measures, it need not stay responsive), so ``cry_reason`` events
appear in order right after the window that made them due. The file is decoded block by block: memory does not
grow with its length.

The sinks here are replay's outputs: JSON lines, a scores CSV, and a collector for ``evaluate``; ``replay
--publish`` adds the daemon's own MQTT sink, and cry statistics for it.

Example:
    >>> from monitor.config import override
    >>> from monitor.inference.detect import make_detector
    >>> import numpy as np, soundfile as sf, tempfile
    >>> path = tempfile.mkdtemp() + "/beep.wav"
    >>> t = np.arange(20 * 16000) / 16000
    >>> sf.write(path, (0.5 * np.sin(2 * np.pi * 440 * t) * ((t > 2) & (t < 6))).astype(np.float32), 16000)
    >>> collector = Collector()
    >>> config = override(Config(), "detector", kind="loudness")  # any sound (no model to load)
    >>> replay_file(path, config, make_detector(config.detector), [collector])
    >>> [(e["type"], e["t"], e.get("ended_by")) for e in collector.events]
    [('cry_start', 3.0, None), ('cry_end', 10.0, 'quiet')]
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import TextIO

from monitor.audio.capture import file_chunks
from monitor.config import Config
from monitor.core.pipeline import Pipeline, Scorer, WindowScore
from monitor.core.stats import CryStats
from monitor.driver import Driver, Emitted, FileClock, Sink
from monitor.inference.classify import ReasonClassifier

BLOCK_SECONDS = 5.0


def replay_file(path: str, config: Config, scorer: Scorer, sinks: Sequence[Sink],
                classifier: ReasonClassifier | None = None, realtime: bool = False,
                stats: CryStats | None = None) -> None:
    """Replay one file into ``sinks``; a file that fails to decode part-way raises
    :class:`~monitor.audio.files.AudioFileError` after the events up to that point (an open cry ended).
    ``stats``: cry statistics to count the file's cries in (``replay --publish``)."""
    driver = Driver(Pipeline(config, scorer, reasons=classifier is not None), sinks, FileClock(), classifier,
                    reasons_inline=True, stats=stats)
    block = config.audio.block_seconds if realtime else BLOCK_SECONDS
    asyncio.run(driver.run(file_chunks(path, block, realtime)))


class Collector(Sink):
    """Every event and window score of a replay, for evaluation and tests."""

    def __init__(self) -> None:
        self.emitted: list[Emitted] = []
        self.windows: list[WindowScore] = []

    @property
    def events(self) -> list[dict]:
        """The events as replay writes them (:meth:`Emitted.payload`)."""
        return [emitted.payload() for emitted in self.emitted]

    def cry_event(self, emitted: Emitted) -> None:
        self.emitted.append(emitted)

    reason_event = cry_event

    def scores(self, scores: list[WindowScore]) -> None:
        self.windows.extend(scores)


class JsonLines(Sink):
    """Each event as one JSON line with the ``file`` it came from."""

    def __init__(self, stream: TextIO, file: str) -> None:
        self.stream, self.file = stream, file

    def cry_event(self, emitted: Emitted) -> None:
        self.stream.write(json.dumps({**emitted.payload(), "file": self.file}) + "\n")
        self.stream.flush()

    reason_event = cry_event


class ScoresCsv(Sink):
    """``t,score,level_dbfs`` per window (the header is the caller's: with several files, ``t`` restarts)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def scores(self, scores: list[WindowScore]) -> None:
        self.stream.writelines(f"{s.t:.3f},{s.score:.4f},{s.level_dbfs:.1f}\n" for s in scores)
