"""The daemon: the one place that wires capture → pipeline → publish, on asyncio.

Audio arrives on the event loop from the capture callback thread; each chunk is scored on a single worker
thread (``run_in_executor``) so inference never blocks the loop; events go to MQTT (whose network thread
reconnects by itself) and to the log. SIGTERM/SIGINT stop capture, end an open cry with ``cry_end``, publish
``offline`` and return within about a second.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import numpy as np
import structlog

from monitor.capture import MicCapture, file_chunks
from monitor.config import Config
from monitor.detect import CryDetector
from monitor.events import CryEvent
from monitor.pipeline import Pipeline
from monitor.publish import MqttPublisher

log = structlog.get_logger(__name__)


def event_payload(event: CryEvent, wall_time: float) -> dict:
    """The event's JSON object: the pipeline's fields plus ``ts``, the wall-clock time (ISO 8601, UTC)."""
    return {**event.to_dict(), "ts": datetime.fromtimestamp(wall_time, timezone.utc).isoformat(timespec="milliseconds")}


class Daemon:
    def __init__(self, config: Config, input_path: str | None = None) -> None:
        self.config = config
        self.input_path = input_path
        self.pipeline = Pipeline(config, CryDetector(config.detector))
        self.publisher = MqttPublisher(config.mqtt) if config.mqtt.enabled else None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._capture: MicCapture | None = None

    def _source(self) -> AsyncIterator[np.ndarray]:
        if self.input_path is not None:
            return file_chunks(self.input_path, self.config.audio.block_seconds, realtime=True)
        self._capture = MicCapture(self.config.audio)
        return self._capture.chunks()

    def _emit(self, events: list[CryEvent]) -> None:
        now = time.time()
        for event in events:
            payload = event_payload(event, now - (self.pipeline.t - event.t))
            log.info(event.type, **payload)
            if self.publisher:
                self.publisher.publish_event(payload)

    async def _consume(self) -> None:
        loop = asyncio.get_running_loop()
        async for chunk in self._source():
            result = await loop.run_in_executor(self._executor, self.pipeline.feed, chunk)
            self._emit(result.events)
            if self.publisher and result.scores:
                self.publisher.publish_level(max(s.level_dbfs for s in result.scores))
        log.info("input_ended", audio_seconds=round(self.pipeline.t, 2))

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        if self.publisher:
            self.publisher.start()
        consumer = asyncio.ensure_future(self._consume())
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, consumer.cancel)
        log.info("daemon_started", model=self.pipeline.scorer.entry.sha256[:12], input=self.input_path or "microphone",
                 hop_s=self.config.detector.hop_seconds)
        try:
            await consumer
        except asyncio.CancelledError:
            log.info("daemon_stopping", reason="signal")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            if self._capture:
                self._capture.stop()
            # let an in-flight inference finish before touching the pipeline from this thread
            await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
            self._emit(self.pipeline.close())
            if self.publisher:
                await asyncio.to_thread(self.publisher.close, 1.0)
        return 0
