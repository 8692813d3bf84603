"""Start the real daemon as a subprocess against a test broker, read what it logs, speak to it over MQTT, and check
what it publishes as Home Assistant would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest
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


def quiet_wav(folder: Path) -> Path:
    return quiet_file(folder / "quiet.wav", 60.0)


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


def publish(port: int, topic: str, payload: bytes, retain: bool = False) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"cmd-{time.monotonic_ns()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


def event(n: int) -> dict:
    return {"type": "cry_start" if n % 2 == 0 else "cry_end", "t": float(n), "id": f"cry{n // 2}", "confidence": 0.9}


# JSON that a broken automation or a damaged file could hold: each a value, or a document, that must not be taken
NASTY_JSON = ["NaN", "Infinity", "-Infinity", "1e999", "-1", "-1e-300", "9" * 400, "-" + "9" * 400, "0.5", "true",
              "null", '""', '"x"', '"2026-02-30"', "[]", "{}", "[1, [2]]", "[" * 1000 + "]" * 1000,
              '{"a": ' * 1000 + "1" + "}" * 1000, '"\\ud800"', "[0.1, 0.2, 0.3]"]


def strict_json(text: str):
    """What Home Assistant can parse: NaN and Infinity are not JSON."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} published"))


HA_PLATFORMS = {"binary_sensor", "event", "sensor", "switch", "select", "number", "button", "text", "image"}
BINARY_SENSOR_CLASSES = {"sound", "problem", "connectivity", "running"}
SENSOR_CLASSES = {"enum", "sound_pressure", "duration", "timestamp", None}


def validate_ha_device_discovery(config: dict) -> None:
    """The checks Home Assistant's MQTT device discovery applies to a device-based config."""
    device = config.get("dev") or config.get("device")
    assert device and (device.get("ids") or device.get("identifiers")), "required key not provided: device ids"
    assert config.get("o", {}).get("name"), "origin name required"
    components = config.get("cmps") or config.get("components")
    assert components
    unique_ids = [c["unique_id"] for c in components.values()]
    assert len(set(unique_ids)) == len(unique_ids)
    for key, comp in components.items():
        platform = comp.get("p") or comp.get("platform")
        assert platform in HA_PLATFORMS, (key, platform)
        assert comp.get("unique_id"), key
        for field, value in comp.items():
            if field.endswith("_topic"):
                assert value and "#" not in value and "+" not in value, (key, field)
        if platform == "binary_sensor":
            assert comp.get("device_class") in BINARY_SENSOR_CLASSES and comp["state_topic"]
        if platform == "sensor":
            assert comp.get("device_class") in SENSOR_CLASSES
            if comp.get("device_class") == "enum":
                assert comp["options"] and all(isinstance(o, str) for o in comp["options"])
            if comp.get("device_class") == "sound_pressure":
                assert comp["unit_of_measurement"] == "dB"
        if platform == "event":
            assert comp["event_types"] and comp["state_topic"]
        if platform in ("switch", "select"):
            assert comp["command_topic"]
        if platform == "select":
            assert comp["options"]
        if platform == "text":
            assert comp["command_topic"] and re.compile(comp.get("pattern", ""))
        if platform == "image":
            assert comp["image_topic"] and comp["content_type"].startswith("image/")
