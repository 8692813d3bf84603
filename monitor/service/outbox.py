"""Durable outbox for events: written to SQLite before publishing, deleted on PUBACK.

paho keeps unacknowledged QoS 1 messages only in memory, so a daemon restart during a broker outage would lose
them. Here every event row survives until the broker acknowledges it; rows left by a previous run are re-sent
first on start-up (so order is kept), with ``"stale": true`` added when older than ``stale_after_seconds``.
The table is bounded: past ``max_events`` the oldest rows are dropped, counted and logged. Consumers
de-duplicate by the event ``id`` (QoS 1 is at-least-once).

Example:
    >>> box = Outbox(":memory:")
    >>> seqs = [box.add("t", {"id": str(n)}) for n in range(3)]
    >>> box.remove(seqs[1])  # acknowledged
    >>> [json.loads(p)["id"] for _, _, p in box.pending(now=None)]
    ['0', '2']
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


class Outbox:
    def __init__(self, path: str | Path, max_events: int = 1000, stale_after_seconds: float = 3600.0) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open(str(path))
        except sqlite3.DatabaseError as exc:  # e.g. an SD card corrupted by a power cut: keep it, start afresh
            corrupt = Path(f"{path}.corrupt-{int(time.time())}")
            Path(path).rename(corrupt)
            log.error("outbox_corrupt", error=str(exc), moved_to=str(corrupt))
            self._db = self._open(str(path))
        self._lock = threading.Lock()
        self.max_events = max_events
        self.stale_after_seconds = stale_after_seconds
        self.dropped = 0

    @staticmethod
    def _open(path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                   "topic TEXT NOT NULL, payload TEXT NOT NULL, created REAL NOT NULL)")
        return db

    def add(self, topic: str, payload: dict) -> int:
        with self._lock:
            seq = self._db.execute("INSERT INTO outbox (topic, payload, created) VALUES (?, ?, ?)",
                                   (topic, json.dumps(payload, separators=(",", ":")), time.time())).lastrowid
            excess = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] - self.max_events
            if excess > 0:
                self._db.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox ORDER BY seq LIMIT ?)",
                                 (excess,))
                self.dropped += excess
                log.error("outbox_full", dropped=excess, dropped_total=self.dropped, max_events=self.max_events)
        return seq

    def remove(self, seq: int) -> None:
        try:
            with self._lock:
                self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        except sqlite3.Error as exc:  # the row stays and is re-sent next start: a duplicate, never a loss
            log.error("outbox_remove_failed", error=str(exc), seq=seq)

    def pending(self, now: float | None) -> list[tuple[int, str, str]]:
        """(seq, topic, payload) oldest first; with ``now`` given, old payloads get ``"stale": true``."""
        with self._lock:
            rows = self._db.execute("SELECT seq, topic, payload, created FROM outbox ORDER BY seq").fetchall()
        out = []
        for seq, topic, payload, created in rows:
            if now is not None and now - created > self.stale_after_seconds:
                payload = json.dumps({**json.loads(payload), "stale": True}, separators=(",", ":"))
            out.append((seq, topic, payload))
        return out

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
