"""What the page says about each fixture, step and problem, in words for the line: plain
values in, plain values out (no I/O), so every rule is tested on its own."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, tzinfo
from typing import Any

from factory.states import (
    CounterName,
    EventKind,
    FixtureState,
    Tone,
    is_event_kind,
    is_fixture_state,
)

# Fixture state → (what the screen says, its colour class).
FIXTURE_WORDS: dict[FixtureState, tuple[str, Tone]] = {
    "starting": ("Starting", "idle"),
    "waiting": ("Ready: plug in a unit", "idle"),
    "identifying": ("Identifying", "busy"),
    "issuing": ("Issuing ID", "busy"),
    "writing": ("Writing", "busy"),
    "verifying": ("Verifying", "busy"),
    "keying": ("Making its key", "busy"),
    "certifying": ("Writing certificate", "busy"),
    "claiming": ("Claiming its certificate", "busy"),
    "labelling": ("Labelling", "busy"),
    "scanning": ("Scan the unit's label", "idle"),
    "checking": ("Scan the label on the unit", "idle"),
    "done": ("Done: unplug the unit", "ok"),
    "failed": ("FAILED", "stop"),
    "port-error": ("Port problem", "stop"),
    "stopped": ("Stopped", "busy"),
}
# Journal event kinds as a unit's steps; the kinds in UNSHOWN_KINDS are left out.
STEP_WORDS: dict[EventKind, str] = {
    "issued": "issued", "written": "written", "verified": "verified",
    "agent_serialized": "serialized by its agent", "bound": "label bound",
    "label_checked": "label checked",
    "labelled": "labelled", "printed": "printed", "print_failed": "print failed",
    "registered": "registered", "register_failed": "registration refused",
    "key_made": "key made", "node_assigned": "node id assigned", "preclaimed": "pre-claimed",
    "claimed": "pre-claimed",
    "preclaim_failed": "pre-claim refused", "certificate_written": "certificate written",
    "requeued": "sent again", "failed": "failed", "voided": "voided",
}
# Bookkeeping a person on the line need not see (a print job's hand-over, a step cut short
# by a restart that redoes it), and notes that belong to no unit.
UNSHOWN_KINDS: frozenset[EventKind] = frozenset({
    "print_submitting", "print_submitted", "interrupted", "fixture_failed",
    "fixture_interrupted", "fixture_port_error", "loss_accepted"})
# Event kind → the counter it adds to.
COUNTERS: dict[EventKind, CounterName] = {
    "issued": "issued", "verified": "verified", "labelled": "labelled",
    "label_checked": "checked", "registered": "registered", "claimed": "preclaimed",
    "preclaimed": "preclaimed",
    "failed": "failed", "fixture_failed": "failed", "print_failed": "failed",
    "register_failed": "failed", "preclaim_failed": "failed", "voided": "voided",
}


@dataclass(frozen=True)
class Alert:
    """Something a person has to do now."""

    source: str  # fixture:NAME, printer, upstream, fleet, journal, units, clock
    what: str
    action: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def fixture_words(state: str) -> tuple[str, Tone]:
    """The words and tone for a fixture state (an unknown one is shown as it is)."""
    if is_fixture_state(state):
        return FIXTURE_WORDS[state]
    return state.capitalize(), "busy"


def step_words(kind: str) -> str | None:
    """How a unit's list of steps names an event, or None for one it does not show."""
    return STEP_WORDS.get(kind) if is_event_kind(kind) else None


def fixture_alert(name: str, state: str, reason: str, action: str) -> Alert | None:
    """A failed fixture or port needs a person; every other state does not."""
    if state == "failed":
        return Alert(f"fixture:{name}", f"Fixture {name} failed: {reason or 'no reason given'}",
                     action or "unplug the unit and plug it in again")
    if state == "port-error":
        return Alert(f"fixture:{name}", f"Fixture {name} cannot use its port: "
                     f"{reason or 'no reason given'}",
                     action or "check the fixture's cable and adapter")
    return None


def journal_alert(failure: str) -> Alert | None:
    """The journal refusing writes: every new unit and request is refused until it can."""
    if not failure:
        return None
    return Alert("journal", f"The journal cannot write: {failure}",
                 "call an engineer to make room on the station's disk; units wait, nothing "
                 "already recorded is lost")


def journal_hold_alert(hold: str) -> Alert | None:
    """The journal held until a person acts: its newest events lost, or replaced."""
    if not hold:
        return None
    return Alert("journal", f"The journal refuses to issue: {hold.split('; ')[0]}",
                 "call an engineer: put back the journal's backup, or run `factory journal "
                 "accept-loss` and restart the station")


def printer_alert(queue: str, state: str, reason: str) -> Alert | None:
    if state != "unavailable":
        return None
    return Alert("printer", f"Printer {queue} is not printing: {reason or 'no reason given'}",
                 "check power, cable, paper and ribbon; waiting labels print when it is back")


def unfinished_alert(count: int, sample: list[str]) -> Alert | None:
    """Units written but never verified, long enough that no fixture holds them: a station
    stopped mid-unit, or a unit pulled out mid-write. Re-plugging one finishes it."""
    if not count:
        return None
    which = ", ".join(sample) + (", ..." if count > len(sample) else "")
    return Alert("units", f"{count} unit{'s' if count != 1 else ''} written but never "
                 f"verified ({which})",
                 "find them and plug each in again: the station finishes them with the same "
                 "ID (`factory units --state written` lists them)")


def outbox_failed_alert(failed: int) -> Alert | None:
    """Units the upstream refused for good: they wait for a person."""
    if not failed:
        return None
    return Alert("upstream", f"The device cloud refused {failed} unit"
                 f"{'s' if failed != 1 else ''}",
                 "call an engineer: `factory outbox --state failed` says why; once fixed, "
                 "`factory outbox retry UCI` sends each again")


def upstream_alerts(refused: str, pending: int, age_seconds: float | None,
                    alert_minutes: int) -> list[Alert]:
    """The upstream refusing the station, and a backlog older than the configured limit."""
    alerts = []
    if refused:
        alerts.append(Alert("upstream", f"The device cloud refuses this station: {refused}",
                            "call an engineer: the station's upstream token needs fixing "
                            "(units are kept and sent later)"))
    if pending and age_seconds is not None and age_seconds >= alert_minutes * 60:
        alerts.append(Alert("upstream", f"{pending} unit{'s' if pending != 1 else ''} not "
                            f"registered for {duration(age_seconds)}",
                            "check the factory network's link to the device cloud; call an "
                            "engineer if it stays"))
    return alerts


def fleet_alert(refused: str) -> Alert:
    """The fleet center refuses this station's events (its chain does not add up there)."""
    return Alert("fleet", f"The fleet center refuses this station's events: {refused}",
                 "call an engineer: units go on here and wait in the journal; once the "
                 "cause is fixed, 'factory fleet clear' lets the station ship again")


def clock_alert(seconds: float, at: datetime, until: datetime | None, *, seen: bool = True,
                tz: tzinfo | None = None) -> Alert:
    """The wall clock stepped by `seconds` (negative: back) at `at` (`seen` False: at or
    before it, by at least that); `until`: the journal's newest time, later than now, which
    windows keep counting until the clock passes it."""
    when = at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
    way = "back" if seconds < 0 else "forward"
    what = (f"The station's clock went {way} {duration(abs(seconds))} at {when}" if seen else
            f"The station's clock went {way} {duration(abs(seconds))} or more before {when}")
    if until is not None:
        what += (f"; the journal holds events up to {until.astimezone(tz):%Y-%m-%d %H:%M},"
                 " written before it went back")
    later = (f"until {until.astimezone(tz):%Y-%m-%d %H:%M} has passed" if until is not None
             else "for the shifts and the day it spans")
    return Alert("clock", what,
                 "check the station's time sync (`timedatectl timesync-status`: NTP reachable, "
                 f"no one setting the clock by hand); counts by shift and today may be off {later}")


def duration(seconds: float) -> str:
    """A rough age for people: 45 s, 12 min, 3 h 20 min, 2 d 4 h."""
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"
