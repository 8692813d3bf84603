"""The one driver from audio to outputs: :meth:`Driver.run` ``(source)`` over a pipeline, sinks and a clock.

The daemon (a microphone, or a file paced like one), ``crymonitor replay`` (a file, fast or paced; JSON lines,
and MQTT as a replay device with ``--publish``) and ``crymonitor evaluate`` (a file, fast; a collector) are this
loop with other sources and sinks, so a timestamp or a field cannot differ between them.

For each chunk the :class:`~monitor.core.pipeline.Pipeline` decides on the inference thread (never on the event
loop). What it decided goes out in audio-time order, typed: each event as an :class:`Emitted` (the event, its
wall-clock ``ts`` from the clock, and the clip it is saved in) to every sink's :meth:`Sink.cry_event`; each
classification request becomes a reason computed on the classifier's own thread, which goes to
:meth:`Sink.reason_event`. Live, a reason is a task that publishes whenever it is ready, so the detector never
waits for it; offline (``reasons_inline``) it is awaited at once, so ``cry_reason`` follows the window that made
it due. The window scores go to :meth:`Sink.scores` and the chunk, once decided, to :meth:`Sink.audio`.
:meth:`Driver.stop` lets the chunk being scored finish and go out, ends an open cry (``ended_by``), waits for the
reasons under way and closes the sinks. The daemon's pause is a ``gate`` on :meth:`Driver.run`; its microphone
health, level meter and watchdog are sinks (:mod:`monitor.service.watch`): this is its only loop over the audio.

The state machine is only ever used on the inference thread: :meth:`Driver.configure` (new event settings, the
home's "not a cry" sounds) hands :meth:`Pipeline.configure` to it, between two chunks, and the pause's and the
stop's ends of an open cry are decided there too.

:meth:`Driver.emit` is the one way an event goes out (a cry a killed run left open too). Before any sink sees a
cry event, the clips (:class:`Clips`, if any) say which clip holds it, and a ``cry_end`` is counted in the cry
statistics (if kept), which then go to every sink's :meth:`Sink.statistics` just before the event. Sinks get
the same frozen :class:`Emitted`, so none can change what another sees; the outputs that serialise (JSON lines,
MQTT, the log) call :meth:`Emitted.payload`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import numpy as np
import structlog

from monitor import SAMPLE_RATE
from monitor.core.events import CryEvent, ReasonEvent, event_payload
from monitor.core.home_sounds import Hold
from monitor.core.pipeline import FeedResult, Pipeline, WindowScore
from monitor.core.schedule import ClassifyRequest
from monitor.core.stats import CryStats

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Clip:
    """The clip a cry is saved in (``clips.enabled``): its file name, or None if it could not be written."""

    name: str | None


@dataclass(frozen=True)
class Emitted:
    """An event as it goes out: what was decided, its wall-clock time (seconds since the epoch), and for a cry the
    clips are recording, its :class:`Clip`."""

    event: CryEvent | ReasonEvent
    ts: float
    clip: Clip | None = None

    def payload(self) -> dict:
        """The event's JSON object (:func:`event_payload`), with ``clip`` when there is one: what is published."""
        payload = event_payload(self.event, self.ts)
        if self.clip is not None:
            payload["clip"] = self.clip.name
        return payload


def _log_failure(future: Future) -> None:
    if future.exception() is not None:
        log.error("configure_failed", error=repr(future.exception()))


class Sink:
    """One kind of output; every method is optional (a no-op here)."""

    def cry_event(self, emitted: Emitted) -> None:
        """A ``cry_start`` or ``cry_end`` (a :class:`CryEvent`)."""

    def reason_event(self, emitted: Emitted) -> None:
        """A ``cry_reason`` (a :class:`ReasonEvent`)."""

    def statistics(self, stats: CryStats) -> None:
        """The cry statistics: at the start, when a ``cry_end`` counted (just before it) and at midnight."""

    def reason_embedding(self, cry_id: str, embedding: tuple[float, ...]) -> None:
        """The embedding that reason came from (what the parents' answers teach; not in the payload)."""

    def detection_embedding(self, cry_id: str, embedding: tuple[float, ...]) -> None:
        """The detector's embedding of the windows that confirmed a cry (what "not a cry" stores; not in the
        payload), right after its ``cry_start``."""

    def hold(self, note: Hold) -> None:
        """A detection held back, suppressed or announced after all (:mod:`monitor.core.home_sounds`)."""

    def scores(self, scores: list[WindowScore]) -> None:
        """The windows one chunk completed."""

    def audio(self, chunk: np.ndarray) -> None:
        """A chunk, after what it decided went out."""

    def close(self) -> None:
        """The driver stopped: nothing more will come."""


class Clips(Protocol):
    """What records each cry as a clip: asked for every cry event before any sink sees it."""

    def clip(self, event: CryEvent) -> Clip | None:
        """Start or end the cry's clip; its :class:`Clip`, or None for a cry it does not record."""


class Classifier(Protocol):
    model_id: str

    def classify(self, samples: np.ndarray): ...


class WallClock:
    """Live: the audio at ``t`` was heard ``pipeline.t - t`` seconds before now."""

    def ts(self, t: float, now_t: float) -> float:
        return time.time() - (now_t - t)


class FileClock:
    """A file: its start is ``started`` (the replay's start time), and ``t`` seconds into it is ``started + t``."""

    def __init__(self, started: float | None = None) -> None:
        self.started = time.time() if started is None else started

    def ts(self, t: float, now_t: float) -> float:
        return self.started + t


class Driver:
    def __init__(self, pipeline: Pipeline, sinks: Sequence[Sink], clock: WallClock | FileClock,
                 classifier: Classifier | None = None, reasons_inline: bool = False,
                 clips: Clips | None = None, stats: CryStats | None = None) -> None:
        """``clips``: what records cries (a sink too: it comes first); ``stats``: the cry statistics, counted here
        at each ``cry_end`` (None: not kept)."""
        self.pipeline, self.clock = pipeline, clock
        self.sinks = [*([clips] if clips is not None else []), *sinks]
        self.classifier, self.clips, self.stats = classifier, clips, stats
        self.reasons_inline = reasons_inline
        self.inference_ms: float | None = None  # per window, of the last chunk that scored any
        self.last_score: float | None = None
        self.classify_ms: float | None = None
        self._inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._classifying = ThreadPoolExecutor(max_workers=1, thread_name_prefix="classifier")
        self._inflight: Future | None = None  # the chunk being scored, if any
        self._reasons: set[asyncio.Task] = set()  # classifications under way
        self._stopping: asyncio.Future | None = None

    async def run(self, source: AsyncIterator[np.ndarray], gate: Callable[[], bool] | None = None) -> None:
        """Until the source ends (an open cry then ends with ``shutdown``) or raises (``input_error``, then the
        error propagates); cancelled, it stops as :meth:`stop` does and the cancellation propagates. ``gate``,
        asked before each chunk: whether to listen (the daemon's switch and quiet hours). While it says no, chunks
        only keep the audio clock running (:meth:`Pipeline.skip`), and the moment it says no an open cry ends
        (``paused``)."""
        listening = True
        try:
            async for chunk in source:
                if gate is not None:
                    was, listening = listening, gate()
                    if was and not listening:  # like a chunk: in flight, so a stop meanwhile still sends its end
                        self._inflight = self._inference.submit(self.pipeline.close, "paused")
                        closed = await asyncio.shield(asyncio.wrap_future(self._inflight))
                        self._inflight = None
                        await self.send(closed)
                await (self.feed(chunk) if listening else self._skip(chunk))
        except asyncio.CancelledError:
            await self.stop("shutdown")
            raise
        except Exception:
            await self.stop("input_error")
            raise
        await self.stop("shutdown")

    def configure(self, **settings) -> None:
        """New settings for the pipeline (:meth:`Pipeline.configure`: ``events``, ``home``), applied on the inference
        thread after the chunk it may be deciding: the state machine is only ever used by that one thread."""
        if self._stopping is None:  # stopped: nothing more will be decided
            self._inference.submit(self.pipeline.configure, **settings).add_done_callback(_log_failure)

    async def feed(self, chunk: np.ndarray) -> FeedResult:
        started = time.perf_counter()
        # shielded: if a stop cancels the caller mid-inference, stop() still sends what this chunk decided
        self._inflight = self._inference.submit(self.pipeline.feed, chunk)
        result: FeedResult = await asyncio.shield(asyncio.wrap_future(self._inflight))
        self._inflight = None
        if result.scores:
            self.inference_ms = round(1000 * (time.perf_counter() - started) / len(result.scores), 1)
            self.last_score = round(result.scores[-1].score, 4)
        await self.send(result)
        for sink in self.sinks:
            sink.audio(chunk)
        return result

    async def _skip(self, chunk: np.ndarray) -> None:
        await self._on_inference_thread(self.pipeline.skip, chunk)
        for sink in self.sinks:
            sink.audio(chunk)

    async def _on_inference_thread(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._inference, fn, *args)

    def diagnostics(self) -> dict:
        """The detector's last score and the time per window and per reason, for the diagnostics sensor."""
        return {"last_score": self.last_score, "inference_ms": self.inference_ms, "classify_ms": self.classify_ms}

    @property
    def models(self) -> dict:
        return {"detector": self.pipeline.scorer.model_id,
                "classifier": self.classifier.model_id if self.classifier else None}

    async def send(self, result: FeedResult, reasons: bool = True) -> None:
        """What one step decided, in audio-time order; ``reasons``: classify the requests (not at a live stop)."""
        if result.scores:
            for sink in self.sinks:
                sink.scores(result.scores)
        for note in result.holds:
            log.info(f"detection_{note.outcome}", cry_id=note.id, distance=note.distance,
                     **({"held_s": note.held_s} if note.outcome != "held" else {}), **({"why": note.why} if note.why else {}))
            for sink in self.sinks:
                sink.hold(note)
        decided = sorted([*result.events, *result.requests], key=lambda item: item.t)  # stable: events first
        for item in decided:
            if isinstance(item, CryEvent):
                self.emit(item, self.clock.ts(item.t, self.pipeline.t))
            elif self.classifier is None or not reasons:
                continue
            elif self.reasons_inline:
                await self._reason(item)
            else:
                task = asyncio.get_running_loop().create_task(self._reason(item))
                self._reasons.add(task)
                task.add_done_callback(self._reasons.discard)

    async def _reason(self, request: ClassifyRequest) -> None:
        started = time.perf_counter()
        try:
            reason = await asyncio.get_running_loop().run_in_executor(self._classifying, self.classifier.classify,
                                                                      request.samples)
        except Exception as exc:  # a reason is a hint: log it, keep detecting
            log.error("classify_failed", cry_id=request.id, error=repr(exc))
            return
        self.classify_ms = round(1000 * (time.perf_counter() - started), 1)
        event = ReasonEvent(request.t, request.id, reason, request.samples.size / SAMPLE_RATE)
        emitted = Emitted(event, self.clock.ts(event.t, self.pipeline.t))
        for sink in self.sinks:
            sink.reason_event(emitted)
            if reason.embedding is not None:
                sink.reason_embedding(event.id, reason.embedding)

    def emit(self, event: CryEvent, ts: float) -> None:
        """A cry event out to every sink, with its clip; a ``cry_end`` that counts goes after the new statistics."""
        emitted = Emitted(event, ts, self.clips.clip(event) if self.clips is not None else None)
        # counted with the duration as published (CryStats rounds it again)
        duration = None if event.duration_s is None else round(event.duration_s, 3)
        if (event.type == "cry_end" and self.stats is not None
                and self.stats.cry_ended(duration, event.ended_by, datetime.now())):
            self.statistics()
        for sink in self.sinks:
            sink.cry_event(emitted)
            if event.embedding is not None:
                sink.detection_embedding(event.id, event.embedding)

    def statistics(self) -> None:
        """The cry statistics as they are now, to every sink (at the start, after a count, at midnight)."""
        if self.stats is not None:
            for sink in self.sinks:
                sink.statistics(self.stats)

    async def stop(self, ended_by: str = "shutdown") -> None:
        """The chunk being scored finishes and goes out; an open cry ends with ``ended_by``; a reason being
        computed goes out (one only due now, for a cry cut short by the stop, does not); the sinks close. Once:
        a later call waits for the first, and cancelling a caller does not cut it short."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(ended_by))
        await asyncio.shield(self._stopping)

    async def _stop(self, ended_by: str) -> None:
        closing = self._inference.submit(self.pipeline.close, ended_by)  # after the chunk being scored
        await asyncio.to_thread(self._inference.shutdown, wait=True)
        inflight, self._inflight = self._inflight, None
        if inflight is not None and not inflight.cancelled() and inflight.exception() is None:
            await self.send(inflight.result())
        await self.send(closing.result(), reasons=self.reasons_inline)
        await asyncio.gather(*self._reasons, return_exceptions=True)
        self._classifying.shutdown(wait=False)
        for sink in self.sinks:
            sink.close()
