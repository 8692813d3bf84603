"""The one pipeline object that both the daemon and replay drive: buffer → windows → detector → events.

``feed(samples)`` takes 16 kHz mono audio of any chunk size and returns what it decided: one
:class:`~monitor.core.pipeline.WindowScore` per completed window (every ``hop_seconds``), the
:class:`~monitor.core.events.CryEvent` s those scores caused, and the :class:`~monitor.core.schedule.ClassifyRequest` s
that fell due (a cry's audio, copied from the ring buffer, for the reason classifier). The detector's score
stream gives the same scores for any chunking (one sample or a whole file), so replay runs as fast as the CPU
allows while a live stream gets the same scores and events.

Windows end on one grid for the life of the pipeline (``window + k · hop`` samples). A window quieter than
``detector.gate_dbfs`` scores 0, and then the detector *sleeps*: while windows stay quiet only their level is
measured, so a silent room costs the loudness gate alone. The first loud window wakes it: a fresh score stream
starts at that window's first sample, read back from the ring buffer. A window's score depends only on its own
audio, so sleeping and waking change no score.

Between the state machine and the outputs, :class:`~monitor.core.home_sounds.HoldBack` gives each ``cry_start``
the detector's embedding of the windows that confirmed it, and holds back the detections that sound like one
of this home's "not a cry" marks (set by :meth:`Pipeline.configure`; its notes are ``FeedResult.holds``).

The pipeline never runs the classifier itself: the daemon hands requests to their own thread so the detector
never waits for it, and replay runs them inline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from monitor import SAMPLE_RATE
from monitor.config import Config, EventsConfig
from monitor.core.buffer import RingBuffer
from monitor.core.events import CryEvent, CryStateMachine
from monitor.core.home_sounds import Hold, HoldBack, HomeSounds
from monitor.core.levels import level_dbfs
from monitor.core.presets import OperatingPoint, effective_events
from monitor.core.schedule import ClassifyRequest, ReasonSchedule

KEEP = object()  # Pipeline.configure: this setting stays as it is


@dataclass(frozen=True)
class WindowScore:
    t: float  # audio time of the window's end, seconds since the stream started
    score: float  # cry probability, 0 when gated
    level_dbfs: float
    gated: bool


class ScoreStream(Protocol):
    embeddings: np.ndarray | None  # (windows, D) of the last push, from a model that gives them; else None

    def push(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Audio → (end sample of each window it completed, counted from the stream's start; probabilities)."""


class Scorer(Protocol):
    model_id: str  # which weights (the diagnostics name them)
    presets: Mapping[str, OperatingPoint]  # the model's calibrated sensitivity presets
    hop_seconds: float  # the hop they were calibrated at, used unless detector.hop_seconds is set
    window_samples: int  # the audio one score covers (its level decides the gate)

    def stream(self, hop: int) -> ScoreStream:
        """A new stream scoring a window every ``hop`` samples."""


@dataclass
class FeedResult:
    scores: list[WindowScore] = field(default_factory=list)
    events: list[CryEvent] = field(default_factory=list)
    requests: list[ClassifyRequest] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)  # detections held back as the home's "not a cry" sounds


class Pipeline:
    def __init__(self, config: Config, scorer: Scorer, reasons: bool = False) -> None:
        """``reasons``: a classifier runs (:func:`monitor.inference.classify.make_classifier` decided), so the
        cries' audio is handed over for it."""
        self.scorer = scorer
        self.hop = round((config.detector.hop_seconds or scorer.hop_seconds) * SAMPLE_RATE)
        self.gate_dbfs = config.detector.gate_dbfs
        self.buffer = RingBuffer(round(config.audio.buffer_seconds * SAMPLE_RATE))
        self.events = CryStateMachine(effective_events(config.events, config.events.sensitivity, config.detector,
                                                       scorer.presets))
        self.schedule = (ReasonSchedule(config.classifier.at_seconds(), config.classifier.lookback_seconds)
                         if reasons else None)
        self.holdback = HoldBack(self.events.config.of_windows)
        self.window = scorer.window_samples
        scorer.stream(self.hop)  # a hop the model cannot score fails here, not at the first loud window
        self._stream: ScoreStream | None = None  # None: asleep (the last window was quiet) or not started
        self._origin = 0  # sample index where the current stream began: its ends are relative to it
        self._pushed = 0  # samples handed to the current stream, from the origin on
        self._next_end = self.window  # where the next window to decide ends

    def configure(self, events: EventsConfig | None = None, home: HomeSounds | None | object = KEEP) -> None:
        """The one way to change a running pipeline, called on the thread that feeds it (the driver's
        :meth:`~monitor.driver.Driver.configure`), never while a chunk is being decided: new event settings
        (:meth:`CryStateMachine.reconfigure`: an open cry stays open), and the home's "not a cry" sounds that hold
        detections back (None: none do). What is not given stays."""
        if events is not None:
            self.events.reconfigure(events)
            self.holdback.resize(events.of_windows)
        if home is not KEEP:
            self.holdback.home = home

    @property
    def t(self) -> float:
        """Audio time: seconds of audio fed so far."""
        return self.buffer.total / SAMPLE_RATE

    def feed(self, samples: np.ndarray) -> FeedResult:
        result = FeedResult()
        step = self.buffer.capacity // 2  # score before a huge chunk could overwrite unscored windows
        for begin in range(0, samples.size, step):
            self.buffer.write(samples[begin : begin + step])
            self._score_pending(result)
        return result

    def skip(self, samples: np.ndarray) -> None:
        """Keep the audio clock and buffer running without scoring (monitoring paused): the windows that end in
        the pause are not decided, and the detector sleeps until the first loud window after it."""
        self.buffer.write(samples)
        self._stream = None
        while self._next_end <= self.buffer.total:
            self._next_end += self.hop
        self.events.reset_confirmation()
        self.holdback.forget_recent()

    def close(self, ended_by: str = "shutdown") -> FeedResult:
        """End an open cry now (end of stream, shutdown, pause)."""
        events, holds = self.holdback.close(self.t, self.events.close(self.t, ended_by))
        result = FeedResult(events=events, holds=holds)
        self._schedule(result, result.events, self.t)
        return result

    def _schedule(self, result: FeedResult, events: list[CryEvent], t: float) -> None:
        if self.schedule is None:
            return
        for event in events:
            self.schedule.on_event(event.type, event.id, event.t)
        self.schedule.on_time(t)
        for cry_id, start_s, end_s in self.schedule.take():
            end = round(end_s * SAMPLE_RATE)
            start = max(round(start_s * SAMPLE_RATE), self.buffer.oldest)
            samples = np.empty(end - start, dtype=np.float32)
            self.buffer.read(start, end - start, out=samples)
            result.requests.append(ClassifyRequest(cry_id, end_s, samples))

    def _score_pending(self, result: FeedResult) -> None:
        while self._next_end <= self.buffer.total:
            if self._stream is None:
                level = self._level(self._next_end)
                if level < self.gate_dbfs:  # asleep: the gate alone decides
                    self._decide(result, self._next_end, 0.0, level)
                    self._next_end += self.hop
                    continue
                self._stream = self.scorer.stream(self.hop)  # wake at this window's first sample
                self._origin = self._pushed = self._next_end - self.window
            audio = self.buffer.read(self._pushed, self.buffer.total - self._pushed)
            self._pushed = self.buffer.total
            ends, probs = self._stream.push(audio)
            if not ends.size:
                return  # every sample was pushed: the next window is not complete yet
            embeddings = self._stream.embeddings
            for i, (end, prob) in enumerate(zip((ends + self._origin).tolist(), probs.tolist())):
                level = self._level(end)
                self._decide(result, end, prob, level, None if embeddings is None else embeddings[i])
                self._next_end = end + self.hop
                if level < self.gate_dbfs:
                    self._stream = None  # the rest of this push was scored anyway; later windows sleep

    def _level(self, end: int) -> float:
        available = min(self.window, end - self.buffer.oldest)
        return level_dbfs(self.buffer.read(end - available, available))

    def _decide(self, result: FeedResult, end: int, prob: float, level: float,
                embedding: np.ndarray | None = None) -> None:
        gated = level < self.gate_dbfs
        score = WindowScore(end / SAMPLE_RATE, 0.0 if gated else prob, level, gated)
        result.scores.append(score)
        events, holds = self.holdback.decide(self.events, score.t, score.score, None if gated else embedding)
        result.events.extend(events)
        result.holds.extend(holds)
        self._schedule(result, events, score.t)
