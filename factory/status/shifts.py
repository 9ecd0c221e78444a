"""Shift and day windows in local time, and journal time stamps to compare them with."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo


@dataclass(frozen=True)
class Windows:
    """Where the counted periods start (aware datetimes)."""

    shift: str  # the running shift's start as configured, "HH:MM"
    shift_start: datetime
    day_start: datetime
    hour_ago: datetime

    def journal_times(self) -> dict[str, str]:
        """Each window's start as the journal writes times, for comparing with events."""
        return {"shift": journal_time(self.shift_start), "today": journal_time(self.day_start),
                "hour": journal_time(self.hour_ago)}


def journal_time(moment: datetime) -> str:
    """Like the journal's `at`: UTC, milliseconds, ISO 8601 with Z (sorts as text)."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _at(day: date, hhmm: str, tz: tzinfo | None) -> datetime:
    hour, minute = (int(part) for part in hhmm.split(":"))
    moment = datetime.combine(day, time(hour, minute))
    # Without a zone, the system's rules for that day (daylight saving included).
    return moment.replace(tzinfo=tz) if tz is not None else moment.astimezone()


def windows(shifts: Sequence[str], now: datetime, tz: tzinfo | None = None) -> Windows:
    """The shift running at `now` (the last start at or before it, yesterday's last shift
    before today's first), today since local midnight, and the last hour."""
    local = now.astimezone(tz) if tz is not None else now.astimezone()
    today = local.date()
    starts = [(hhmm, _at(day, hhmm, tz)) for day in (today - timedelta(days=1), today)
              for hhmm in shifts]
    name, start = max(((n, s) for n, s in starts if s <= local), key=lambda pair: pair[1])
    return Windows(shift=name, shift_start=start, day_start=_at(today, "00:00", tz),
                   hour_ago=local - timedelta(hours=1))
