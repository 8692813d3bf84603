"""Durable outbox for events: written to SQLite before publishing, deleted on PUBACK.

paho keeps unacknowledged QoS 1 messages only in memory, so a daemon restart during a broker outage would lose
them. Here every event row survives until the broker acknowledges it; rows left by a previous run are re-sent
first on start-up (so order is kept), with ``"stale": true`` added when older than ``stale_after_seconds``.
The table is bounded: past ``max_events`` the oldest rows are dropped, counted and logged. Consumers
de-duplicate by the event ``id`` (QoS 1 is at-least-once).

Storage that fails is not the same as a broken file:

- **Transient** (disk full, read-only folder, I/O error, cannot open): the file is kept as it is, the outbox is
  *unavailable* (events are published without it, and each is logged), and :meth:`Outbox.retry` opens it again
  later. The rows it holds are due when it opens.
- **Malformed** (SQLite says the file is corrupt, or is not a database; ``quick_check`` fails; the ``outbox`` table
  has another schema; or a row is out of shape: a payload that is not a JSON object, a ``created`` that is not a
  number): the rows it still yields are salvaged into a fresh outbox (a row without a usable ``created`` as stale;
  one without a usable event is dropped and counted), and the file is set aside as ``outbox.sqlite.corrupt-<time>``.
  Every row is checked at open, so no row sends anything but an event's JSON object.

Example:
    >>> box = Outbox(":memory:")
    >>> seqs = [box.add("t", {"id": str(n)}) for n in range(3)]
    >>> box.remove(seqs[1])  # acknowledged
    >>> [json.loads(p)["id"] for _, _, p in box.pending(now=None)]
    ['0', '2']
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from pathlib import Path

import structlog

from monitor.service.state import StateFileError, parse_json, set_aside

log = structlog.get_logger(__name__)
MALFORMED = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
SCHEMA = [("seq", "INTEGER"), ("topic", "TEXT"), ("payload", "TEXT"), ("created", "REAL")]  # (name, type)


class OutboxUnavailable(sqlite3.OperationalError):
    """The outbox cannot be written now (the reason is in the message); the event goes out without it."""


def _malformed(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in MALFORMED


def _corrupt(problem: str) -> sqlite3.DatabaseError:
    """A problem SQLite does not see itself, as the error it raises for a corrupt file (:func:`_malformed`)."""
    error = sqlite3.DatabaseError(problem)
    error.sqlite_errorcode = sqlite3.SQLITE_CORRUPT
    return error


def _usable(topic: object, payload: object, created: object) -> tuple[str, str, float] | None:
    """A stored row as it can be sent: an event's JSON object on a text topic; a ``created`` that is not a finite
    number becomes 0 (its age is unknown, so it goes out as stale). None for a row that holds no usable event."""
    try:
        event = parse_json(payload) if isinstance(payload, (str, bytes)) else None
    except StateFileError:
        event = None
    if not isinstance(topic, str) or not isinstance(event, dict):
        return None
    usable_time = isinstance(created, (int, float)) and math.isfinite(created)
    return topic, json.dumps(event, separators=(",", ":")), float(created) if usable_time else 0.0


class Outbox:
    def __init__(self, path: str | Path, max_events: int = 1000, stale_after_seconds: float = 3600.0) -> None:
        self.path = str(path)
        self.max_events = max_events
        self.stale_after_seconds = stale_after_seconds
        self.dropped = 0
        self.problem: str | None = None  # why it is unavailable
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._connect()

    @property
    def available(self) -> bool:
        return self._db is not None

    def retry(self) -> bool:
        """Open an unavailable outbox again; True when it opened now, so the rows it holds are due."""
        return self._db is None and self._connect()

    def _connect(self) -> bool:
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = self._open(self.path)
        except OSError as exc:
            return self._unavailable(exc.strerror or repr(exc))
        except sqlite3.DatabaseError as exc:
            if not _malformed(exc):
                return self._unavailable(str(exc))
            db = self._replace_malformed(str(exc))
            if db is None:
                return False
        with self._lock:
            self._db = db
        if self.problem is not None:
            log.warning("outbox_available", path=self.path, pending=len(self), detail="writing events to it again")
        self.problem = None
        return True

    def _unavailable(self, reason: str) -> bool:
        if self.problem is None:  # once per outage; every event published without it is logged by its publisher
            log.error("outbox_unavailable", path=self.path, error=reason,
                      detail="publishing events without it (not kept across a restart) until it can be written "
                             "again; its file is kept")
        self.problem = reason
        return False

    def reopen(self) -> None:
        """Its file was deleted under us (with the state folder): a new file at the path, with the rows the old one
        still held open (their own seq numbers, so an acknowledgement in flight still finds its row)."""
        with self._lock:
            rows = [] if self._db is None else self._db.execute(
                "SELECT seq, topic, payload, created FROM outbox ORDER BY seq").fetchall()
            if self._db is not None:
                self._db.close()
                self._db = None
        if self._connect():
            with self._lock:
                self._db.executemany("INSERT INTO outbox (seq, topic, payload, created) VALUES (?, ?, ?, ?)", rows)

    @staticmethod
    def _open(path: str) -> sqlite3.Connection:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                       "topic TEXT NOT NULL, payload TEXT NOT NULL, created REAL NOT NULL)")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise _corrupt(f"quick_check: {check}")
            columns = [(name, kind) for _, name, kind, *_ in db.execute("PRAGMA table_info(outbox)")]
            if columns != SCHEMA:
                raise _corrupt(f"another outbox schema: {columns}"[:200])
            for topic, payload, created in db.execute("SELECT topic, payload, created FROM outbox"):
                usable = _usable(topic, payload, created)
                if usable is None or usable[2] != created:
                    raise _corrupt("a row out of shape (its payload is not an event's JSON object, or its time "
                                   "is not a number)")
        except BaseException:
            db.close()
            raise
        return db

    def _replace_malformed(self, reason: str) -> sqlite3.Connection | None:
        """Salvage what the file still yields, set it aside (with its WAL), start a fresh outbox with the rows."""
        salvaged, unusable = _salvage(self.path)
        moved_to = set_aside(Path(self.path), ("-wal", "-shm"))
        try:
            if moved_to is None:
                raise OSError("it could not be moved")
            db = self._open(self.path)
            with db:
                db.executemany("INSERT INTO outbox (topic, payload, created) VALUES (?, ?, ?)", salvaged)
        except (OSError, sqlite3.Error) as exc:
            self._unavailable(f"{reason}; setting it aside failed: {exc}")
            return None
        log.error("outbox_corrupt", error=reason, moved_to=str(moved_to), salvaged=len(salvaged), dropped=unusable)
        return db

    def add(self, topic: str, payload: dict) -> int:
        """Keep an event until :meth:`remove`; raises :class:`sqlite3.Error` when it cannot be kept."""
        with self._lock:
            if self._db is None:
                raise OutboxUnavailable(f"outbox unavailable: {self.problem}")
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
                if self._db is not None:
                    self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
        except sqlite3.Error as exc:  # the row stays and is re-sent next start: a duplicate, never a loss
            log.error("outbox_remove_failed", error=str(exc), seq=seq)

    def pending(self, now: float | None) -> list[tuple[int, str, str]]:
        """(seq, topic, payload) oldest first; with ``now`` given, old payloads get ``"stale": true``."""
        with self._lock:
            rows = [] if self._db is None else self._db.execute(
                "SELECT seq, topic, payload, created FROM outbox ORDER BY seq").fetchall()
        out = []
        for seq, topic, payload, created in rows:
            if now is not None and now - created > self.stale_after_seconds:
                payload = json.dumps({**json.loads(payload), "stale": True}, separators=(",", ":"))
            out.append((seq, topic, payload))
        return out

    def __len__(self) -> int:
        with self._lock:
            return 0 if self._db is None else self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def _salvage(path: str) -> tuple[list[tuple[str, str, float]], int]:
    """The usable rows a malformed outbox still yields (:func:`_usable`), in order, up to the first unreadable
    page; and how many it yielded that were not usable."""
    rows: list[tuple[str, str, float]] = []
    unusable = 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error:
        return rows, unusable
    try:
        for row in db.execute("SELECT topic, payload, created FROM outbox ORDER BY seq"):
            usable = _usable(*row)
            if usable is None:
                unusable += 1
            else:
                rows.append(usable)
    except sqlite3.Error:
        pass
    finally:
        db.close()
    return rows, unusable
