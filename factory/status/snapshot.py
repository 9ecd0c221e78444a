"""One snapshot of the line: the JSON that GET /api/v1/status answers, the page is rendered
from and the live feed sends. Read from the journal and from the station's live objects."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any, Protocol

from factory import clock
from factory import uci as uci_codec
from factory.config import StationConfig
from factory.journal.backlog import backlog
from factory.journal.interface import Journal
from factory.journal.records import Unit
from factory.states import COUNTER_NAMES
from factory.status.attention import (
    COUNTERS,
    clock_alert,
    fixture_alert,
    fixture_words,
    fleet_alert,
    journal_alert,
    journal_hold_alert,
    outbox_failed_alert,
    printer_alert,
    step_words,
    unfinished_alert,
    upstream_alerts,
)
from factory.status.notices import Notices
from factory.status.shifts import journal_time, windows

if TYPE_CHECKING:
    from factory.states import FixtureStatus

RECENT_UNITS = 20
# A unit written but not verified for this long is in no fixture: it needs a person.
UNFINISHED_AFTER = timedelta(minutes=10)


class PrinterView(Protocol):
    """What the page reads of the label printer (factory.labels.print_queue.PrintQueue)."""

    printer_state: str  # none, idle, unavailable
    printer_reason: str


class UpstreamView(Protocol):
    """What the page reads of the outbox worker (factory.upstream.outbox.OutboxWorker)."""

    last_error: str
    refused: str


class ShippingView(Protocol):
    """What the page reads of the fleet shipper (factory.fleet.shipper.Shipper)."""

    center_seq: int | None  # the center's newest event of this station (None: not heard yet)
    away: str  # why the center cannot be reached now
    problem: str  # why the center refuses this station's events


def _no_fixtures() -> Sequence[FixtureStatus]:
    return ()


@dataclass
class LiveSources:
    """The station's objects whose state lives in memory, not in the journal."""

    fixtures: Callable[[], Sequence[FixtureStatus]] = _no_fixtures
    printer: PrinterView | None = None
    upstream: UpstreamView | None = None
    fleet: ShippingView | None = None
    # The clocks between snapshots: a step of the wall clock, and ages it cannot tell.
    clock: clock.StepWatch = field(default_factory=clock.StepWatch)
    notices: Notices = field(default_factory=Notices)  # warnings noticed while serving

    def signature(self) -> tuple[object, ...]:
        """Changes whenever anything the page shows from memory changes (cheap to compare)."""
        return (
            tuple((f.state, f.reason, f.uci, f.done, f.failed) for f in self.fixtures()),
            (self.printer.printer_state, self.printer.printer_reason) if self.printer else (),
            (self.upstream.last_error, self.upstream.refused) if self.upstream else (),
            (self.fleet.center_seq, self.fleet.away, self.fleet.problem) if self.fleet else (),
            self.notices.version,
        )


async def build(config: StationConfig, journal: Journal, live: LiveSources,
                now: datetime | None = None, tz: tzinfo | None = None) -> dict[str, Any]:
    """The snapshot at `now` (default: now), shifts read in `tz` (default: local time)."""
    reading = now is None  # a `now` given is a moment asked about, not the clock's reading
    now = now or clock.now()
    mono = clock.monotonic()
    win = windows(config.status.shifts, now, tz)
    counters: dict[str, str] = {kind: counter for kind, counter in COUNTERS.items()}
    counted = await journal.count_events(counters, win.journal_times())
    units = await journal.recent_units(RECENT_UNITS)
    outbox = await backlog(journal, limit=0, now=now)
    newest = await journal.newest_at()
    step = live.clock.look(now, mono, _moment(newest), reading=reading)
    if outbox["oldest"] is not None:
        # A backlog queued before the clock went back looks newer than it is: its age is
        # at least how long this station has seen it waiting.
        seen = live.clock.seen_for(outbox["oldest"], mono)
        outbox["oldest_age_seconds"] = round(max(outbox["oldest_age_seconds"] or 0.0, seen), 1)

    fixtures, alerts = [], []
    if (alert := journal_alert(journal.write_failure)):
        alerts.append(alert)
    if step is not None:
        ahead = live.clock.ahead > live.clock.tolerance
        alerts.append(clock_alert(step.seconds, step.at, _moment(newest) if ahead else None,
                                  seen=step.seen, tz=tz))
    if (alert := journal_hold_alert(journal.hold)):
        alerts.append(alert)
    scans = {f.name for f in config.fixtures if f.scanning.scans
             or any(p.id == f.product and p.scan_check for p in config.products)}
    for status in live.fixtures():
        words, tone = fixture_words(status.state)
        fixtures.append({
            "name": status.name, "port": status.port, "state": status.state, "words": words,
            "tone": tone, "reason": status.reason, "action": status.action,
            "scans": status.name in scans,
            "uci": _human(status.uci), "since": _iso(status.since),
            "done": status.done, "failed": status.failed})
        alert = fixture_alert(status.name, status.state, status.reason, status.action)
        if alert is not None:
            alerts.append(alert)

    printer_state = live.printer.printer_state if live.printer else "none"
    printer_reason = live.printer.printer_reason if live.printer else ""
    if (alert := printer_alert(config.printer.name, printer_state, printer_reason)):
        alerts.append(alert)

    refused = live.upstream.refused if live.upstream else ""
    alerts += upstream_alerts(refused, outbox["pending"], outbox["oldest_age_seconds"],
                              config.status.backlog_alert_minutes)
    if (alert := outbox_failed_alert(outbox["failed"])):
        alerts.append(alert)
    fleet = await fleet_lag(journal, live.fleet, now)
    if fleet["refused"]:
        alerts.append(fleet_alert(fleet["refused"]))
    alerts += live.notices.alerts()
    left = await journal.left_in("written", journal_time(now - UNFINISHED_AFTER))
    if (alert := unfinished_alert(*left)):
        alerts.append(alert)

    return {
        "station": config.station_id,
        "now": journal_time(now),
        "shift": {"name": win.shift, "start": journal_time(win.shift_start)},
        "day_start": journal_time(win.day_start),
        "counts": {window: {name: counted[name][window] for name in COUNTER_NAMES}
                   for window in ("shift", "today")},
        "units_per_hour": counted["verified"]["hour"],
        "fixtures": fixtures,
        "units": [_unit(config, unit) for unit in units],
        "upstream": {
            "enabled": config.upstream.enabled, "pending": outbox["pending"],
            "failed": outbox["failed"], "oldest": outbox["oldest"],
            "oldest_age_seconds": outbox["oldest_age_seconds"],
            "last_error": live.upstream.last_error if live.upstream else "",
            "refused": refused},
        "printer": {"enabled": config.printer.enabled, "queue": config.printer.name,
                    "state": printer_state, "reason": printer_reason},
        "fleet": fleet,
        "attention": [alert.as_dict() for alert in alerts],
    }


async def fleet_lag(journal: Journal, shipping: ShippingView | None,
                    now: datetime | None = None) -> dict[str, Any]:
    """How far the fleet center is behind this station: events not shipped yet and the
    oldest one's age in seconds (None when the center was not heard from since start)."""
    if shipping is None:
        return {"enabled": False, "events": None, "seconds": None, "center_seq": None,
                "away": "", "refused": ""}
    events, seconds = None, None
    if shipping.center_seq is not None:
        events, oldest = await journal.behind(shipping.center_seq)
        seconds = 0.0
        if oldest is not None:
            age = (now or clock.now()) - datetime.fromisoformat(oldest.replace("Z", "+00:00"))
            seconds = round(max(0.0, age.total_seconds()), 1)
    return {"enabled": True, "events": events, "seconds": seconds,
            "center_seq": shipping.center_seq, "away": shipping.away,
            "refused": shipping.problem}


def _unit(config: StationConfig, unit: Unit) -> dict[str, Any]:
    product = config.product(unit.product)
    return {
        "uci": unit.uci, "human": uci_codec.human(unit.uci),
        "product": product.name if product else unit.product,
        "state": unit.state, "updated_at": unit.updated_at,
        "steps": [{"kind": e.kind, "words": words, "at": e.at}
                  for e in unit.events if (words := step_words(e.kind)) is not None],
    }


def _human(uci: str | None) -> str | None:
    return uci_codec.human(uci) if uci else None


def _moment(at: str | None) -> datetime | None:
    return datetime.fromisoformat(at.replace("Z", "+00:00")) if at else None


def _iso(unix: float) -> str:
    return journal_time(datetime.fromtimestamp(unix, UTC))
