"""Cry statistics for Home Assistant: cries today (local calendar day) and the last cry's duration."""

from __future__ import annotations

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
        duration = data.get("last_cry_duration_s")
        return cls(str(data.get("day", "")), int(data.get("cries_today", 0)),
                   float(duration) if duration is not None else None)
