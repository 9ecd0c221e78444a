"""The station's clocks: wall-clock time from one place (tests step it by replacing `now`),
and the monotonic clock for waits, retries and telling when the wall clock stepped.

The wall clock can step (NTP, an RTC battery, a person): the journal's `at` and the outbox's
due times are wall-clock because they outlive the process, so the code that reads them must
expect a step. Pure apart from reading the clocks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

# A wall clock that drifts from the monotonic one by less than this between two looks is
# slewing (NTP), not stepping: no alert.
STEP_TOLERANCE = 60.0
# How long a step seen while running is shown when nothing else tells of it.
SHOW_STEP_FOR = 3600.0


def now() -> datetime:
    """The wall clock, UTC (the one place the station reads it: tests replace this)."""
    return datetime.now(UTC)


def unix() -> float:
    """The wall clock as unix time (persisted due times)."""
    return now().timestamp()


def monotonic() -> float:
    """Seconds on a clock that never steps (in-process waits and ages)."""
    return time.monotonic()


@dataclass(frozen=True)
class Step:
    """The wall clock jumped by `seconds` (negative: back) just before `at` (wall, after);
    `seen` False: told by the journal, so it happened at `at` or before (the clock went
    back by at least `seconds`)."""

    seconds: float
    at: datetime
    seen: bool = True


class StepWatch:
    """Tells a step of the wall clock two ways: between two looks, the wall clock moved
    unlike the monotonic one (a step while running); or the journal holds a time later than
    now (the clock went back, maybe before this process began)."""

    def __init__(self, tolerance: float = STEP_TOLERANCE,
                 show_for: float = SHOW_STEP_FOR) -> None:
        self.tolerance, self.show_for = tolerance, show_for
        self.last: Step | None = None  # the newest step seen
        self.last_seen = 0.0  # monotonic time of the look that saw it
        self.ahead = 0.0  # how far the journal's newest time is past now, at the last look
        self._base: tuple[datetime, float] | None = None
        self._sightings: dict[str, float] = {}

    def look(self, wall: datetime, mono: float, newest: datetime | None = None, *,
             reading: bool = True) -> Step | None:
        """Record a reading of both clocks and the journal's newest time; the step to show
        now: while the journal is ahead of the clock, or for `show_for` after it was seen.
        `reading=False`: `wall` is a moment asked about, not the clock's reading."""
        if reading:
            if self._base is not None:
                base_wall, base_mono = self._base
                drift = (wall - base_wall).total_seconds() - (mono - base_mono)
                if abs(drift) > self.tolerance:
                    self.last, self.last_seen = Step(drift, wall), mono
            self._base = (wall, mono)
        self.ahead = max(0.0, (newest - wall).total_seconds()) if newest else 0.0
        if self.ahead > self.tolerance and (self.last is None or self.last.seconds >= 0):
            # Unseen while running: it went back at least this far, before this look.
            self.last, self.last_seen = Step(-self.ahead, wall, seen=False), mono
        if self.last is not None and (self.ahead > self.tolerance
                                      or mono - self.last_seen < self.show_for):
            return self.last
        return None

    def seen_for(self, key: str, mono: float) -> float:
        """Seconds since the first look at `key` (a thing whose wall-clock age cannot be
        trusted); only the keys asked for in the newest call are remembered."""
        first = self._sightings.get(key, mono)
        self._sightings = {key: first}
        return mono - first
