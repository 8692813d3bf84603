"""What survives a restart, in the state folder: one daemon per folder (:class:`StateDirLock`), and
``state.json`` (:class:`DaemonState`): the controls set over MQTT, the cry statistics, the cry open now and the last
cry's reason.

Every JSON file in the folder is read by :func:`read_json` and checked whole before anything in it is used: a
file that does not parse, or holds a value out of shape (NaN, a 400-digit number, nesting 1,000 deep, a negative
count), is set aside as ``<name>.corrupt-<time>`` (:func:`set_aside`) with a warning, never a crash; what is still
sound in it is kept where that is safe (here: each of the sections on its own).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import socket
import struct
import time
from pathlib import Path

import structlog

from monitor.config import Config, ConfigError
from monitor.core.control import ControlState
from monitor.core.events import PARENT_REASONS, UNCERTAIN, CryEvent, iso_time
from monitor.core.stats import CryStats
from monitor.driver import Emitted, Sink
from monitor.service.running import RunningConfig

log = structlog.get_logger(__name__)


class StateDirLock:
    """One daemon per state folder: two would share an outbox and a client id and take over each other's MQTT
    session in a loop. A second daemon gets a one-line error naming the first one's PID. Two locks, both held
    until the process exits (the kernel drops them even after kill -9):

    * an abstract Unix socket named after the folder's path, in no file system: it holds while the folder is
      deleted or replaced (a fresh folder at the path would be a fresh inode, free to lock), and whoever finds it
      taken learns the holder's PID from it;
    * an advisory lock on the folder itself: the same folder reached by another path (a symlink, a bind mount) is
      the same inode. It needs no write, so a full or read-only disk cannot prevent it; the holder writes its PID
      to ``daemon.lock`` if it can, for the error message.

    A folder deleted under the running daemon is made again by :meth:`recreate_if_gone`, and locked again."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        name = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:32]
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._socket.bind(f"\0crymonitor-state-{name}")
            self._socket.listen(1)
        except OSError:
            self._socket.close()
            raise self._in_use(self._socket_holder(name)) from None
        try:
            self._fd = self._lock_folder()
        except BaseException:
            self._socket.close()
            raise
        self._gone_logged = False  # a deleted folder that cannot be made again is logged once

    def _in_use(self, holder: str) -> ConfigError:
        return ConfigError(f"state.dir {self.folder}: already used by the crymonitor with PID {holder}; one daemon per "
                           "state folder (give each room its own: crymonitor@<room>)")

    @staticmethod
    def _socket_holder(name: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(f"\0crymonitor-state-{name}")
                pid, _, _ = struct.unpack("3i", probe.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            except OSError:
                return "?"
        return str(pid)

    def _lock_folder(self) -> int:
        pid_file = self.folder / "daemon.lock"
        try:
            if not self.folder.is_dir():
                self.folder.mkdir(parents=True)
            fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise ConfigError(f"state.dir {self.folder}: cannot use it ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            try:
                holder = pid_file.read_text().strip() or "?"
            except OSError:
                holder = "?"
            raise self._in_use(holder) from None
        try:
            pid_file.write_text(f"{os.getpid()}\n")
        except OSError as exc:  # full or read-only: the lock holds anyway, only the message loses the PID
            log.warning("pid_file_unwritable", path=str(pid_file), error=exc.strerror)
        return fd

    def recreate_if_gone(self) -> bool:
        """Whether the folder was deleted or replaced since it was locked; if so it is made (and locked) again,
        and the caller writes into it what it holds in memory (state, answers, outbox)."""
        try:
            same = os.stat(self.folder).st_ino == os.fstat(self._fd).st_ino and os.fstat(self._fd).st_nlink > 0
        except FileNotFoundError:
            same = False
        if same:
            return False
        try:
            fd = self._lock_folder()
        except ConfigError as exc:  # cannot be made now (permissions, a full disk): tried again in a second
            if not self._gone_logged:
                log.error("state_dir_gone", path=str(self.folder), error=str(exc))
            self._gone_logged = True
            return False
        os.close(self._fd)
        self._fd, self._gone_logged = fd, False
        log.warning("state_dir_recreated", path=str(self.folder),
                    detail="it was deleted under the running daemon; writing what it held again")
        return True

    def release(self) -> None:
        """What the process's exit does (a restart in-process, in the tests)."""
        os.close(self._fd)
        self._socket.close()


MAX_JSON_INT = 2**53  # a stored count or time beyond this is damage (and a float could not hold it exactly)


class StateFileError(ValueError):
    """A state file that cannot be used as it is; the message says why, in one line."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999
        raise StateFileError(f"number out of range: {text[:40]}")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > 20 or abs(int(text)) > MAX_JSON_INT:  # 400 digits would parse (4,300 would raise)
        raise StateFileError(f"number out of range: {text[:40]}")
    return int(text)


def _no_constant(name: str) -> None:
    raise StateFileError(f"{name} is not a number JSON allows")


def read_json(path: Path) -> object:
    """The JSON in ``path`` (:func:`parse_json`). FileNotFoundError and other OSErrors propagate: a missing or
    unreadable file is not a corrupt one."""
    return parse_json(path.read_bytes())


def parse_json(text: str | bytes) -> object:
    """JSON, strictly: NaN, infinities, numbers out of a float's exact range and nesting deeper than the parser's
    recursion limit are :class:`StateFileError`, as is text that is not JSON or not UTF-8."""
    try:
        return json.loads(text, parse_float=_finite_float, parse_int=_bounded_int, parse_constant=_no_constant)
    except RecursionError:
        raise StateFileError("nested too deep") from None
    except StateFileError:
        raise
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise StateFileError(str(exc).splitlines()[0][:200]) from None


def set_aside(path: Path, companions: tuple[str, ...] = ()) -> Path | None:
    """Move a damaged state file (and its ``companions``, suffixes of its name: SQLite's ``-wal``) out of the way
    as ``<name>.corrupt-<time>``, kept for a human; None if it could not be moved (it is then left in place)."""
    aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
    try:
        for suffix in ("", *companions):
            companion = path.with_name(path.name + suffix)
            if suffix == "" or companion.exists():
                companion.replace(aside.with_name(aside.name + suffix))
    except OSError:
        return None
    return aside


def write_json(path: Path, data: object) -> None:
    """``data`` as JSON at ``path``, all or nothing: written beside it, then renamed over it, so a crash mid-write
    leaves the old file, never half a new one. Raises OSError (the caller logs it: a full disk never stops us)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data))
    os.replace(partial, path)


def config_controls(config: Config) -> dict:
    """The controls a config file sets, in :meth:`ControlState.to_payload` form."""
    return {"sensitivity": config.events.sensitivity, "quiet_hours": config.events.quiet_hours or "OFF"}


class DaemonState(Sink):
    """``state.json``: written after every change of the controls and at every event, before the event is
    published (the first sink after the clips), so that the cry open now is known to the next start even if this
    run dies right after its alarm (:meth:`crashed_cry`). The cry statistics are :attr:`stats`, which the driver
    counts (:class:`~monitor.driver.Driver`)."""

    def __init__(self, folder: Path, running: RunningConfig) -> None:
        """Controls set over MQTT survive restarts, but a control whose value in the config file changed since
        they were saved follows the file: an edit to the file must never be silently overridden."""
        self.path = folder / "state.json"
        self.running = running
        from_config = config_controls(running.current)
        self.controls = ControlState.from_payload(from_config)
        self.stats = CryStats()
        self.open_cry: dict | None = None
        self.last_reason = UNCERTAIN  # what *Cry reason* shows after a restart: the last cry's
        try:
            saved = read_json(self.path)
        except FileNotFoundError:
            return
        except (OSError, StateFileError) as exc:
            self._set_aside(str(exc), kept=[])
            return
        if not isinstance(saved, dict):
            self._set_aside("expected a JSON object", kept=[])
            return
        problems, kept = [], []
        for section, load in (("controls", lambda: self._load_controls(saved, from_config)),
                              ("stats", lambda: self._load_stats(saved)),
                              ("open_cry", lambda: self._load_open_cry(saved)),
                              ("last_reason", lambda: self._load_last_reason(saved))):
            try:
                load()
                kept.append(section)
            except (ValueError, TypeError, AttributeError, KeyError) as exc:  # CommandError is a ValueError
                problems.append(f"{section}: {str(exc)[:120]}")
        if problems:
            self._set_aside("; ".join(problems), kept)

    def _load_controls(self, saved: dict, from_config: dict) -> None:
        remembered, file_then = saved.get("controls", {}), saved.get("from_config", {})
        merged = {k: (remembered.get(k, v) if file_then.get(k) == v else v) for k, v in from_config.items()}
        self.controls = ControlState.from_payload({**remembered, **merged})

    def _load_stats(self, saved: dict) -> None:
        self.stats = CryStats.from_payload(saved.get("stats", {}))

    def _load_open_cry(self, saved: dict) -> None:
        open_cry = saved.get("open_cry")
        if open_cry is not None:
            if not (isinstance(open_cry.get("id"), str) and isinstance(open_cry.get("started_ts"), str)):
                raise ValueError("expected an id and a start time")
            self.open_cry = {"id": open_cry["id"], "started_ts": open_cry["started_ts"]}

    def _load_last_reason(self, saved: dict) -> None:
        reason = saved.get("last_reason", UNCERTAIN)
        if reason not in (*PARENT_REASONS, UNCERTAIN):
            raise ValueError(f"unknown reason {str(reason)[:40]!r}")
        self.last_reason = reason

    def _set_aside(self, error: str, kept: list[str]) -> None:
        """The file is moved aside for a human; what was sound in it stays in use, and is saved at the next
        change."""
        aside = set_aside(self.path)
        log.warning("state_file_corrupt", path=str(self.path), error=error, kept=kept,
                    moved_to=str(aside) if aside else None)

    def save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, {"controls": self.controls.to_payload(), "stats": self.stats.to_payload(),
                                   "from_config": config_controls(self.running.current), "open_cry": self.open_cry,
                                   "last_reason": self.last_reason})
        except OSError as exc:
            log.error("state_file_unwritable", path=str(self.path), error=str(exc))

    def cry_event(self, emitted: Emitted) -> None:
        start = emitted.event.type == "cry_start"
        self.open_cry = {"id": emitted.event.id, "started_ts": iso_time(emitted.ts)} if start else None
        if start:
            self.last_reason = UNCERTAIN  # as MqttSink publishes it: not the previous cry's
        self.save()

    def reason_event(self, emitted: Emitted) -> None:
        self.last_reason = emitted.event.reason.reason
        self.save()

    def crashed_cry(self) -> CryEvent | None:
        """A cry still open in the state file means the last run died during it (kill -9, power cut): its
        ``cry_end`` (:meth:`CryEvent.restart`), to go out now like any other event (counted, saved, published). Its
        duration is unknown (``null``): the dead run cannot say when the crying stopped. None when no cry was left
        open."""
        return None if self.open_cry is None else CryEvent.restart(self.open_cry["id"], self.open_cry["started_ts"])
