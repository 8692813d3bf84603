"""Opt-in cry clips: each cry saved as FLAC with pre-roll from the ring buffer, with retention by age and size.

Off by default: audio stays in memory unless the user enables ``clips.enabled``. A clip opens at ``cry_start``
with the last ``pre_roll_seconds`` from the ring buffer, grows as audio arrives, and closes at ``cry_end`` or
at ``max_seconds``. After each clip the folder is pruned: files older than ``retention_days`` go, then the
oldest until the total is under ``max_total_mb``.
"""

from __future__ import annotations

import time
from pathlib import Path

import soundfile as sf
import structlog

from monitor import SAMPLE_RATE
from monitor.config import ClipsConfig
from monitor.core.buffer import RingBuffer

log = structlog.get_logger(__name__)


class ClipRecorder:
    def __init__(self, config: ClipsConfig, folder: Path) -> None:
        self.config = config
        self.folder = folder
        self._file: sf.SoundFile | None = None
        self._written = 0
        self._next = 0  # absolute index of the next sample to append

    @property
    def recording(self) -> bool:
        return self._file is not None

    def start(self, cry_id: str, buffer: RingBuffer, wall_time: float) -> str:
        """Open a clip for the cry, beginning ``pre_roll_seconds`` back; returns its file name."""
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"{time.strftime('%Y%m%dT%H%M%S', time.localtime(wall_time))}_{cry_id[:8]}.flac"
        self._file = sf.SoundFile(self.folder / name, "w", SAMPLE_RATE, 1, format="FLAC", subtype="PCM_16")
        self._written = 0
        self._next = max(buffer.oldest, buffer.total - round(self.config.pre_roll_seconds * SAMPLE_RATE))
        self.append(buffer)
        return name

    def append(self, buffer: RingBuffer) -> None:
        """Write what the buffer holds beyond the clip's end so far (call after every chunk)."""
        if self._file is None:
            return
        start = max(self._next, buffer.oldest)
        limit = round(self.config.max_seconds * SAMPLE_RATE) - self._written
        length = min(buffer.total - start, limit)
        if length > 0:
            self._file.write(buffer.read(start, length))
            self._written += length
        self._next = buffer.total
        if self._written >= round(self.config.max_seconds * SAMPLE_RATE):
            self.stop()

    def abandon(self) -> None:
        """Give up the current clip after a write error (it stays on disk as far as it got)."""
        try:
            if self._file is not None:
                self._file.close()
        except (OSError, RuntimeError):
            pass
        self._file = None

    def stop(self) -> None:
        if self._file is None:
            return
        self._file.close()
        log.info("clip_saved", path=str(self._file.name), seconds=round(self._written / SAMPLE_RATE, 2))
        self._file = None
        self.prune()

    def prune(self, now: float | None = None) -> list[Path]:
        now = time.time() if now is None else now
        clips = sorted(self.folder.glob("*.flac"), key=lambda p: p.stat().st_mtime)
        removed = [p for p in clips if now - p.stat().st_mtime > self.config.retention_days * 86400]
        kept = [p for p in clips if p not in removed]
        total = sum(p.stat().st_size for p in kept)
        while kept and total > self.config.max_total_mb * 1e6:
            oldest = kept.pop(0)
            total -= oldest.stat().st_size
            removed.append(oldest)
        for path in removed:
            path.unlink(missing_ok=True)
        if removed:
            log.info("clips_pruned", removed=len(removed), kept=len(kept))
        return removed
