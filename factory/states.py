"""One home for the station's names: the states a unit, a fixture and an outbox entry can be
in, the kinds of event the journal holds, and the status page's counters and tones.

Everything else derives from these (the API's checks, the OpenAPI enums, the metrics, the
failpoints, the status page's words); adding a step or a state means editing this module plus
the code that acts on it. Tests check the tables keyed by these names cover every one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal, TypeGuard, get_args

UnitState = Literal["issued", "written", "verified", "labelled", "printed", "registered",
                    "claimed", "preclaimed", "failed", "voided"]
UNIT_STATES: tuple[UnitState, ...] = get_args(UnitState)
# A unit in one of these states has a verified device file; re-plugging it only re-checks.
DONE_STATES: frozenset[UnitState] = frozenset({"verified", "labelled", "printed",
                                               "registered", "claimed", "preclaimed"})

# A unit's steps as the journal records them, in the order a unit usually meets them.
UnitEventKind = Literal[
    "issued", "written", "verified", "interrupted", "failed",
    "agent_serialized",  # products whose units' own agent asks for their UCI
    "bound",  # label-first lines: a pre-printed UCI bound to the unit's hardware id by a scan
    "key_made", "certificate_written",  # pre-claimed products
    "node_assigned",  # RainMaker: the node id the claiming service gave the unit's MAC
    "labelled", "print_submitting", "print_submitted", "printed", "print_failed",
    "label_checked",  # the label scanned on the unit matched its UCI (end-of-line check)
    "registered", "register_failed", "preclaimed", "preclaim_failed",
    "claimed",  # older stations' name for preclaimed; their journals still hold it
    "requeued", "voided",
]
# The station's own notes (no unit): a fixture that failed or stopped before it had a UCI.
NoteKind = Literal["fixture_failed", "fixture_interrupted", "fixture_port_error",
                   "loss_accepted"]
EventKind = Literal[UnitEventKind, NoteKind]
EVENT_KINDS: tuple[EventKind, ...] = get_args(EventKind)

# What a fixture shows while each step of a unit runs (also the step's name and failpoint).
StepName = Literal["identifying", "issuing", "writing", "verifying", "keying", "certifying",
                   "claiming",  # RainMaker: node id and certificate, before the NVS is built
                   "labelling",
                   "scanning",  # label-first: waiting for the scan of the unit's label
                   "checking"]  # end-of-line: waiting for the scan of the label stuck on

STEP_NAMES: tuple[StepName, ...] = get_args(StepName)
# The steps during which a fixture waits for a label scan (the page focuses its scan field).
SCAN_STEPS: frozenset[StepName] = frozenset({"scanning", "checking"})
FixtureState = Literal["starting", "waiting", StepName, "done", "failed", "port-error",
                       "stopped"]
FIXTURE_STATES: tuple[FixtureState, ...] = get_args(FixtureState)

OutboxState = Literal["pending", "failed", "done"]
OUTBOX_STATES: tuple[OutboxState, ...] = get_args(OutboxState)

# The status page's counters (units per counter, this shift and today), in the page's order.
CounterName = Literal["issued", "verified", "labelled", "checked", "registered", "preclaimed",
                      "failed", "voided"]
COUNTER_NAMES: tuple[CounterName, ...] = get_args(CounterName)

# The colour class of a fixture, a tile or the attention banner (status.css styles each).
Tone = Literal["idle", "busy", "ok", "stop"]
TONES: tuple[Tone, ...] = get_args(Tone)

PrinterState = Literal["none", "idle", "unavailable"]  # none: labels are kept as PDF
PRINTER_STATES: tuple[PrinterState, ...] = get_args(PrinterState)


def is_fixture_state(value: str) -> TypeGuard[FixtureState]:
    """True for a known fixture state (a status may hold any string a step set)."""
    return value in FIXTURE_STATES


def is_event_kind(value: str) -> TypeGuard[EventKind]:
    """True for a kind of event this station journals."""
    return value in EVENT_KINDS


@dataclass
class FixtureStatus:
    """What the status page and the logs show for one fixture."""

    name: str
    port: str
    state: str = "starting"  # one of FIXTURE_STATES
    reason: str = ""
    action: str = ""
    uci: str | None = None
    since: float = field(default_factory=time.time)
    done: int = 0
    failed: int = 0

    def set(self, state: str, reason: str = "", action: str = "",
            uci: str | None = None) -> None:
        self.state, self.reason, self.action, self.uci = state, reason, action, uci
        self.since = time.time()
