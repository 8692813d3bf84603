"""Replay: recorded files through the same :class:`~monitor.core.pipeline.Pipeline` as the daemon.

As fast as the CPU allows (pending windows are scored in batches), or paced like a microphone with
``realtime=True``. Each file starts a fresh pipeline, so ``t`` is seconds from the file's start and ``ts`` is
the replay's start time plus ``t``. An open cry is closed at the end of the file (``ended_by: shutdown``), or
where its decoding failed (``ended_by: input_error``, then the error).
Classification requests run inline when a classifier is given (replay measures, it need not stay responsive),
so ``cry_reason`` events appear in order right after the window that made them due.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from monitor import SAMPLE_RATE
from monitor.audio.files import AudioFileError, iter_file
from monitor.config import Config
from monitor.core.events import ReasonEvent, event_payload
from monitor.core.pipeline import FeedResult, Pipeline, Scorer, WindowScore
from monitor.inference.classify import ReasonClassifier

BLOCK_SECONDS = 5.0


def replay_file(path: str, config: Config, scorer: Scorer, classifier: ReasonClassifier | None = None,
                realtime: bool = False) -> Iterator[tuple[list[dict], list[WindowScore]]]:
    """Yield (event payloads, window scores) chunk by chunk as the file is decoded and scored."""
    pipeline = Pipeline(config, scorer)
    started = time.time()

    def payloads(result: FeedResult) -> list[dict]:
        events = list(result.events)
        if classifier is not None:
            events += [ReasonEvent(r.t, r.id, classifier.classify(r.samples), r.samples.size / SAMPLE_RATE)
                       for r in result.requests]
        return [event_payload(e, started + e.t) for e in sorted(events, key=lambda e: e.t)]

    try:
        for chunk in iter_file(path, config.audio.block_seconds if realtime else BLOCK_SECONDS):
            if realtime:
                time.sleep(max(0.0, started + pipeline.t + chunk.size / SAMPLE_RATE - time.time()))
            result = pipeline.feed(chunk)
            yield payloads(result), result.scores
    except AudioFileError:  # decoding failed part-way: a cry already started still gets its end, then the error
        yield payloads(pipeline.close(ended_by="input_error")), []
        raise
    yield payloads(pipeline.close()), []
