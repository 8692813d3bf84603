"""Cry statistics for Home Assistant: cries today (local calendar day) and the last cry's duration."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime


@dataclass
class CryStats:
    day: str = ""
    cries_today: int = 0
    last_cry_duration_s: float | None = None

    def cry_ended(self, duration_s: float | None, ended_by: str, now: datetime) -> bool:
        """Count a cry at its ``cry_end``; returns whether it counted. A cry ended at ``max_duration`` is not: it
        restarts as the same cry. ``duration_s`` None: unknown (a cry ended by a restart)."""
        if ended_by == "max_duration":
            return False
        today = now.date().isoformat()
        if today != self.day:
            self.day, self.cries_today = today, 0
        self.cries_today += 1
        self.last_cry_duration_s = None if duration_s is None else round(duration_s, 1)
        return True

    def to_payload(self, today: date | None = None) -> dict:
        today_iso = (today or date.today()).isoformat()
        return {"day": self.day, "cries_today": self.cries_today if self.day == today_iso else 0,
                "last_cry_duration_s": self.last_cry_duration_s}

    @classmethod
    def from_payload(cls, data: dict) -> CryStats:
        """Rebuild from :meth:`to_payload` output (the state file); ValueError for a field out of shape: a negative
        count would reach a ``total_increasing`` sensor as a drop, a NaN duration would be invalid JSON."""
        if not isinstance(data, dict):
            raise ValueError("stats: expected an object")
        day, count, duration = data.get("day", ""), data.get("cries_today", 0), data.get("last_cry_duration_s")
        if not isinstance(day, str) or (day and not _iso_date(day)):
            raise ValueError(f"stats.day: expected YYYY-MM-DD, got {str(day)[:40]!r}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"stats.cries_today: expected a count, got {str(count)[:40]!r}")
        if duration is not None and (isinstance(duration, bool) or not isinstance(duration, (int, float))
                                     or not math.isfinite(duration) or duration < 0):
            raise ValueError(f"stats.last_cry_duration_s: expected seconds or null, got {str(duration)[:40]!r}")
        return cls(day, count, None if duration is None else float(duration))


def _iso_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True
