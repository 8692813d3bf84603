"""Start the real daemon as a subprocess against a test broker, and read what it logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

DECODER = json.JSONDecoder()


def write_config(path: Path, port: int, device_id: str, extra: str = "") -> Path:
    """A config for the test broker with its own state folder beside the file; ``extra`` appends YAML."""
    path.write_text(f"mqtt:\n  port: {port}\n  device_id: {device_id}\n  keepalive_seconds: 5\n"
                    f"state:\n  dir: {path.parent / 'state'}\nlogging:\n  format: json\n{extra}")
    return path


def quiet_file(path: Path, seconds: float, level: float = 1e-3) -> Path:
    """A quiet room (white noise at ``level``) for a daemon to listen to while a test does something else."""
    rng = np.random.default_rng(1)
    sf.write(path, (rng.standard_normal(int(seconds * 16000)) * level).astype(np.float32), 16000)
    return path


def without_torch(folder: Path) -> dict:
    """An environment in which ``import torch`` fails, as on the edge install (``pip install -e '.[edge]'``)."""
    shim = folder / "no-torch" / "torch"
    shim.mkdir(parents=True, exist_ok=True)
    (shim / "__init__.py").write_text("raise ImportError('torch is not installed (edge install)')\n")
    return {**os.environ, "PYTHONPATH": str(shim.parent)}


class DaemonProcess:
    """``crymonitor run`` in a subprocess; its JSON log lines are collected as they arrive."""

    def __init__(self, config: Path, *args: str, env: dict | None = None) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(config), *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def logs(self) -> list[dict]:
        """The JSON log records. C libraries (PortAudio, ALSA) write to the same stderr without our locking, so
        their text can land on the end of a record's line: the record is what decodes from the line's start."""
        return [DECODER.raw_decode(line)[0] for line in list(self.lines) if line.startswith("{")]

    def wait_log(self, event: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in self.logs():
                if record.get("event") == event:
                    return record
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {event!r} in the daemon log:\n{''.join(self.lines)[-3000:]}")

    def stop(self, sig) -> tuple[int, float]:
        """Send ``sig``; return (exit code, seconds to exit)."""
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        return self.proc.returncode, time.monotonic() - started

    @property
    def stderr(self) -> str:
        return "".join(self.lines)
