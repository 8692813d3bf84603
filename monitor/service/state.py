"""What survives a restart, in the state folder: one daemon per folder (:func:`lock_state_dir`), and
``state.json`` (:class:`DaemonState`): the controls set over MQTT, the cry statistics, the cry open now and the last
cry's reason.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import structlog

from monitor.config import Config, ConfigError
from monitor.core.control import ControlState
from monitor.core.events import PARENT_REASONS, UNCERTAIN, CryEvent, event_payload
from monitor.core.stats import CryStats
from monitor.service.sinks import StatsSink

log = structlog.get_logger(__name__)


def lock_state_dir(folder: Path) -> int:
    """One daemon per state folder: two would share an outbox and a client id and take over each other's MQTT
    session in a loop. An advisory lock on the folder itself (so a full or read-only disk cannot prevent it), held
    until the process exits (the kernel drops it even after kill -9); returns its descriptor. A second daemon
    gets a one-line error naming the first one's PID, which the holder writes to ``daemon.lock`` if it can."""
    pid_file = folder / "daemon.lock"
    try:
        if not folder.is_dir():
            folder.mkdir(parents=True)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise ConfigError(f"state.dir {folder}: cannot use it ({exc.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        try:
            holder = pid_file.read_text().strip() or "?"
        except OSError:
            holder = "?"
        raise ConfigError(f"state.dir {folder}: already used by the crymonitor with PID {holder}; one daemon per "
                          "state folder (give each room its own: crymonitor@<room>)") from None
    try:
        pid_file.write_text(f"{os.getpid()}\n")
    except OSError as exc:  # full or read-only: the lock holds anyway, only the message loses the PID
        log.warning("pid_file_unwritable", path=str(pid_file), error=exc.strerror)
    return fd


def write_json(path: Path, data: object) -> None:
    """``data`` as JSON at ``path``, all or nothing: written beside it, then renamed over it, so a crash mid-write
    leaves the old file, never half a new one. Raises OSError (the caller logs it: a full disk never stops us)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data))
    os.replace(partial, path)


def config_controls(config: Config) -> dict:
    """The controls a config file sets, in :meth:`ControlState.to_payload` form."""
    return {"sensitivity": config.events.sensitivity, "quiet_hours": config.events.quiet_hours or "OFF"}


class DaemonState(StatsSink):
    """``state.json``: written after every change of the controls and at every event, before the event is
    published (the first sink), so that the cry open now is known to the next start even if this run dies right
    after its alarm (:meth:`end_crashed_cry`). As a sink it also counts the cries (:class:`StatsSink`)."""

    def __init__(self, folder: Path, config: Config, on_stats: Callable[[dict], None]) -> None:
        """Controls set over MQTT survive restarts, but a control whose value in the config file changed since
        they were saved follows the file: an edit to the file must never be silently overridden."""
        self.path = folder / "state.json"
        self.config = config
        from_config = config_controls(config)
        self.controls = ControlState.from_payload(from_config)
        super().__init__(CryStats(), on_stats)
        self.open_cry: dict | None = None
        self.last_reason = UNCERTAIN  # what *Cry reason* shows after a restart: the last cry's
        if self.path.exists():
            try:
                saved = json.loads(self.path.read_text())
                remembered = saved.get("controls", {})
                file_then = saved.get("from_config", {})
                merged = {k: (remembered.get(k, v) if file_then.get(k) == v else v) for k, v in from_config.items()}
                self.controls = ControlState.from_payload({**remembered, **merged})
                self.stats = CryStats.from_payload(saved.get("stats", {}))
                open_cry = saved.get("open_cry")
                if open_cry is not None:
                    self.open_cry = {"id": str(open_cry["id"]), "started_ts": str(open_cry["started_ts"])}
                if saved.get("last_reason") in (*PARENT_REASONS, UNCERTAIN):
                    self.last_reason = saved["last_reason"]
            except (OSError, ValueError, TypeError, AttributeError, KeyError, OverflowError) as exc:  # 1e999 → inf
                log.error("state_file_ignored", path=str(self.path), error=str(exc))

    def save(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_json(self.path, {"controls": self.controls.to_payload(), "stats": self.stats.to_payload(),
                                   "from_config": config_controls(self.config), "open_cry": self.open_cry,
                                   "last_reason": self.last_reason})
        except OSError as exc:
            log.error("state_file_unwritable", path=str(self.path), error=str(exc))

    def cry_event(self, payload: dict) -> None:
        self.open_cry = {"id": payload["id"], "started_ts": payload["ts"]} if payload["type"] == "cry_start" else None
        if payload["type"] == "cry_start":
            self.last_reason = UNCERTAIN  # as MqttSink publishes it: not the previous cry's
        super().cry_event(payload)
        self.save()

    def reason_event(self, payload: dict) -> None:
        self.last_reason = payload["reason"]
        self.save()

    def end_crashed_cry(self) -> dict | None:
        """A cry still open in the state file means the last run died during it (kill -9, power cut): its
        ``cry_end`` now, with ``ended_by: restart``, counted. Its duration is unknown (``null``): the dead run
        cannot say when the crying stopped. None when no cry was left open."""
        if self.open_cry is None:
            return None
        payload = {**event_payload(CryEvent("cry_end", 0.0, self.open_cry["id"], 0.0), time.time()),
                   "duration_s": None, "ended_by": "restart", "started_ts": self.open_cry["started_ts"]}
        log.warning("cry_end", **payload)
        self.open_cry = None
        self.stats.cry_ended(None, "restart", datetime.now())
        self.save()
        return payload
