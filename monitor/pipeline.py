"""The one pipeline object that both the daemon and replay drive: buffer → windows → detector → events.

``feed(samples)`` takes 16 kHz mono audio of any chunk size and returns what it decided: one
:class:`~monitor.detect.WindowScore` per completed window (every ``hop_seconds``), the
:class:`~monitor.events.CryEvent` s those scores caused, and the :class:`~monitor.classify.ClassifyRequest` s
that fell due (a cry's audio, copied from the ring buffer, for the reason classifier). Pending windows are scored
in one batch, so replay runs as fast as the CPU allows while a live stream (a window or so per chunk) gets the
same scores and events. The pipeline never runs the classifier itself: the daemon hands requests to their own
thread so the detector never waits for it, and replay runs them inline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from monitor import SAMPLE_RATE
from monitor.buffer import RingBuffer
from monitor.classify import ClassifyRequest, ReasonSchedule, reasons_enabled
from monitor.config import Config, OperatingPoint, effective_events
from monitor.detect import WindowScore
from monitor.events import CryEvent, CryStateMachine

MAX_BATCH = 32


class Scorer(Protocol):
    presets: Mapping[str, OperatingPoint]  # the model's calibrated sensitivity presets
    verifier_seconds: float  # audio the second stage looks at; 0: the model has none

    def verify(self, audio: np.ndarray) -> float:
        """The second stage's cry probability for the last ``verifier_seconds`` of audio."""

    def score(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Windows (B, N) → (cry probabilities, levels in dBFS, gated flags), each (B,)."""


@dataclass
class FeedResult:
    scores: list[WindowScore] = field(default_factory=list)
    events: list[CryEvent] = field(default_factory=list)
    requests: list[ClassifyRequest] = field(default_factory=list)


class Pipeline:
    def __init__(self, config: Config, scorer: Scorer) -> None:
        self.scorer = scorer
        self.window = round(config.detector.window_seconds * SAMPLE_RATE)
        self.hop = round(config.detector.hop_seconds * SAMPLE_RATE)
        self.buffer = RingBuffer(round(config.audio.buffer_seconds * SAMPLE_RATE))
        self.verify_samples = round(scorer.verifier_seconds * SAMPLE_RATE)
        self.events = CryStateMachine(effective_events(config.events, config.events.sensitivity, config.detector,
                                                       scorer.presets),
                                      verify=self._verify if self.verify_samples else None)
        self.schedule = (ReasonSchedule(config.classifier.at_seconds(), config.classifier.lookback_seconds)
                         if reasons_enabled(config) else None)
        self._next_end = self.window  # absolute sample index where the next window ends
        self._scratch = np.empty((MAX_BATCH, self.window), dtype=np.float32)

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
        """Keep the audio clock and buffer running without scoring (monitoring paused)."""
        self.buffer.write(samples)
        while self._next_end <= self.buffer.total:
            self._next_end += self.hop
        self.events.reset_confirmation()

    def close(self, ended_by: str = "shutdown") -> FeedResult:
        """End an open cry now (end of stream, shutdown, pause)."""
        result = FeedResult(events=self.events.close(self.t, ended_by))
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

    def _verify(self, t: float) -> float:
        """The verifier on the audio that ends with the window ending at ``t`` (zeros before the stream began)."""
        end = round(t * SAMPLE_RATE)
        available = min(self.verify_samples, end - self.buffer.oldest)
        audio = np.zeros(self.verify_samples, dtype=np.float32)
        self.buffer.read(end - available, available, out=audio[self.verify_samples - available :])
        return self.scorer.verify(audio)

    def _score_pending(self, result: FeedResult) -> None:
        while self._next_end <= self.buffer.total:
            ends = []
            while self._next_end <= self.buffer.total and len(ends) < MAX_BATCH:
                self.buffer.read(self._next_end - self.window, self.window, out=self._scratch[len(ends)])
                ends.append(self._next_end)
                self._next_end += self.hop
            probs, levels, gated = self.scorer.score(self._scratch[: len(ends)])
            for end, prob, level, skip in zip(ends, probs, levels, gated):
                window = WindowScore(end / SAMPLE_RATE, float(prob), float(level), bool(skip))
                result.scores.append(window)
                events = self.events.update(window.t, window.score)
                result.events.extend(events)
                self._schedule(result, events, window.t)
