"""Runtime controls set over MQTT: monitoring on/off, sensitivity, quiet hours. Pure parsing and state.

Commands arrive on ``<base>/<device>/set/<control>``; the resulting state is echoed, retained, on
``<base>/<device>/state``. A malformed or out-of-range command raises :class:`CommandError` and the caller keeps
the old state: nothing a publisher sends can crash the daemon or put it in an invalid state.

| control       | accepted payloads                                                   |
|---------------|---------------------------------------------------------------------|
| ``enabled``     | ``ON`` / ``OFF`` (any case), ``true`` / ``false``                     |
| ``sensitivity`` | ``low`` / ``medium`` / ``high``                                       |
| ``quiet_hours`` | ``HH:MM-HH:MM`` (local time, may wrap midnight) or ``OFF``            |

During quiet hours, as when disabled, detection is paused: no model runs and no cry events are sent (an open
cry is ended first). That is the user's explicit choice, and ``state`` says ``monitoring: OFF`` throughout.

Example:
    >>> state = apply_command(ControlState(), "quiet_hours", b"13:00-15:30")
    >>> state.quiet_hours.contains(dt.time(14, 0)), state.to_payload()["quiet_hours"]
    (True, '13:00-15:30')
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from dataclasses import dataclass

SENSITIVITIES = ("low", "medium", "high")  # the presets every detector's manifest entry holds; settable over MQTT
CONTROLS = ("enabled", "sensitivity", "quiet_hours")
MAX_PAYLOAD = 64
_HH_MM = r"([01]\d|2[0-3]):([0-5]\d)"
_HOURS = re.compile(rf"^{_HH_MM}-{_HH_MM}$")
QUIET_HOURS_PATTERN = rf"^(OFF|{_HH_MM}-{_HH_MM})$"  # what Home Assistant's text entity lets the parents send


class CommandError(ValueError):
    """A control command that is not understood; the state stays as it was."""


@dataclass(frozen=True)
class QuietHours:
    start: dt.time
    end: dt.time

    def contains(self, now: dt.time) -> bool:
        if self.start <= self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end  # wraps midnight

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        match = _HOURS.match(text)
        if not match:
            raise CommandError(f"quiet_hours must be HH:MM-HH:MM or OFF, got {text!r}")
        h1, m1, h2, m2 = map(int, match.groups())
        if (h1, m1) == (h2, m2):
            raise CommandError("quiet_hours start and end must differ")
        return cls(dt.time(h1, m1), dt.time(h2, m2))


@dataclass(frozen=True)
class ControlState:
    enabled: bool = True
    sensitivity: str = "medium"
    quiet_hours: QuietHours | None = None

    def monitoring(self, now: dt.datetime) -> bool:
        return self.enabled and not (self.quiet_hours and self.quiet_hours.contains(now.time()))

    def to_payload(self, now: dt.datetime | None = None) -> dict:
        out = {"enabled": "ON" if self.enabled else "OFF", "sensitivity": self.sensitivity,
               "quiet_hours": str(self.quiet_hours) if self.quiet_hours else "OFF"}
        if now is not None:
            out["monitoring"] = "ON" if self.monitoring(now) else "OFF"
        return out

    @classmethod
    def from_payload(cls, data: dict) -> ControlState:
        """Rebuild from :meth:`to_payload` output (the persisted state); raises CommandError if invalid."""
        state = cls()
        for control in CONTROLS:
            if control in data:
                state = apply_command(state, control, str(data[control]).encode())
        return state


def command_text(payload: bytes, limit: int, name: str) -> str:
    """An MQTT command's payload as stripped text, or :class:`CommandError` (too long, not UTF-8)."""
    if len(payload) > limit:
        raise CommandError(f"{name}: payload of {len(payload)} bytes is longer than {limit}")
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CommandError(f"{name}: payload is not UTF-8 text") from None


def apply_command(state: ControlState, control: str, payload: bytes) -> ControlState:
    """The state after one command, or :class:`CommandError`."""
    if control not in CONTROLS:
        raise CommandError(f"unknown control {control!r}; known: {', '.join(CONTROLS)}")
    text = command_text(payload, MAX_PAYLOAD, control)
    if not text:  # also what an empty retained publish (clearing a retained message) delivers to live subscribers
        raise CommandError(f"{control}: empty payload")
    if text.startswith('"'):  # a JSON string is accepted too
        try:
            text = json.loads(text)
        except json.JSONDecodeError:
            raise CommandError(f"{control}: malformed JSON string") from None
        if not isinstance(text, str):
            raise CommandError(f"{control}: expected a string")
    if control == "enabled":
        value = {"on": True, "true": True, "off": False, "false": False}.get(text.lower())
        if value is None:
            raise CommandError(f"enabled must be ON or OFF, got {text!r}")
        return dataclasses.replace(state, enabled=value)
    if control == "sensitivity":
        if text.lower() not in SENSITIVITIES:
            raise CommandError(f"sensitivity must be one of {', '.join(SENSITIVITIES)}, got {text!r}")
        return dataclasses.replace(state, sensitivity=text.lower())
    if text.upper() == "OFF":
        return dataclasses.replace(state, quiet_hours=None)
    return dataclasses.replace(state, quiet_hours=QuietHours.parse(text))
