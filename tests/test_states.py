"""The station's names have one home (factory/states.py): every table keyed by them covers
each one, and the OpenAPI document and the status page's files use no others."""

from __future__ import annotations

import ast
import re

from factory import failpoints, states
from factory.status.attention import COUNTERS, FIXTURE_WORDS, STEP_WORDS, UNSHOWN_KINDS
from factory.units.pipeline import DEFAULT_STEPS
from factory.web.openapi import DOCUMENT
from factory.web.status_html import COUNTER_WORDS, PRINTER_WORDS
from tests.conftest import ROOT

STATIC = ROOT / "factory" / "web" / "static"


def test_every_fixture_state_has_words_and_a_tone() -> None:
    assert list(FIXTURE_WORDS) == list(states.FIXTURE_STATES)
    assert {tone for _, tone in FIXTURE_WORDS.values()} <= set(states.TONES)


def test_every_event_kind_is_shown_as_a_step_or_left_out_on_purpose() -> None:
    assert set(STEP_WORDS) | UNSHOWN_KINDS == set(states.EVENT_KINDS)
    assert not set(STEP_WORDS) & UNSHOWN_KINDS


def test_every_counter_has_words_and_events_that_add_to_it() -> None:
    assert list(COUNTER_WORDS) == list(states.COUNTER_NAMES)
    assert set(COUNTERS.values()) == set(states.COUNTER_NAMES)
    assert set(COUNTERS) <= set(states.EVENT_KINDS)
    assert list(PRINTER_WORDS) == list(states.PRINTER_STATES)


def test_done_states_are_unit_states_and_steps_are_fixture_states() -> None:
    assert set(states.UNIT_STATES) >= states.DONE_STATES
    assert set(states.STEP_NAMES) <= set(states.FIXTURE_STATES)
    assert {step.name for step in DEFAULT_STEPS} <= set(states.STEP_NAMES)
    step_points = {point for point in failpoints.POINTS if point.startswith("step.")}
    assert step_points == {f"step.{name}" for name in (*states.STEP_NAMES, "done")}


def test_every_kind_the_station_journals_is_an_event_kind() -> None:
    """The kinds written as literals in record(...), note(...) and the outbox's answers."""
    found: set[str] = set()
    for path in (ROOT / "factory").rglob("*.py"):
        if "testbed" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr in ("record", "note"):
                at = 0 if node.func.attr == "note" else 1
                kind = node.args[at] if len(node.args) > at else None
                if isinstance(kind, ast.Constant) and isinstance(kind.value, str):
                    found.add(kind.value)
    found |= {"registered", "preclaimed", "register_failed", "preclaim_failed"}  # outbox
    assert found <= set(states.EVENT_KINDS)
    assert {"written", "verified", "failed", "fixture_port_error", "print_submitting"} <= found


def _schema(*path: str) -> object:
    node: object = DOCUMENT
    for key in path:
        assert isinstance(node, dict)
        node = node[key]
    return node


def test_the_openapi_enums_are_the_names_in_states() -> None:
    schemas = ("components", "schemas")
    units_get = _schema("paths", "/api/v1/units", "get", "parameters")
    outbox_get = _schema("paths", "/api/v1/outbox", "get", "parameters")
    assert isinstance(units_get, list) and isinstance(outbox_get, list)
    status = (*schemas, "Status", "properties")
    fixture = (*status, "fixtures", "items", "properties")
    pinned = {
        "units?state": (next(p for p in units_get if p["name"] == "state")["schema"]["enum"],
                        states.UNIT_STATES),
        "Unit.state": (_schema(*schemas, "Unit", "properties", "state", "enum"),
                       states.UNIT_STATES),
        "Event.kind": (_schema(*schemas, "Event", "properties", "kind", "enum"),
                       states.EVENT_KINDS),
        "outbox?state": (next(p for p in outbox_get if p["name"] == "state")["schema"]["enum"],
                         states.OUTBOX_STATES),
        "fixture state": (_schema(*fixture, "state", "enum"), states.FIXTURE_STATES),
        "fixture tone": (_schema(*fixture, "tone", "enum"), states.TONES),
        "unit state": (_schema(*status, "units", "items", "properties", "state", "enum"),
                       states.UNIT_STATES),
        "printer state": (_schema(*status, "printer", "properties", "state", "enum"),
                          states.PRINTER_STATES),
    }
    for where, (enum, names) in pinned.items():
        assert enum == list(names), where
    for window in ("shift", "today"):
        counts = _schema(*status, "counts", "properties", window, "properties")
        assert isinstance(counts, dict) and list(counts) == list(states.COUNTER_NAMES)


def _js_strings(text: str) -> set[str]:
    return set(re.findall(r'"([^"\\]*)"', text)) | set(re.findall(r"'([^'\\]*)'", text))


def test_the_page_script_hard_codes_no_state_counter_or_tone() -> None:
    """status.js only swaps in what the server rendered: the names stay in Python."""
    script = (STATIC / "status.js").read_text()
    names = {*states.UNIT_STATES, *states.EVENT_KINDS, *states.FIXTURE_STATES,
             *states.COUNTER_NAMES, *states.TONES, *states.PRINTER_STATES}
    strings = _js_strings(script)
    assert not strings & names
    assert not any(s.startswith(("tone-", "count-", "state-")) for s in strings)


def test_the_page_styles_only_known_tones() -> None:
    css = (STATIC / "status.css").read_text()
    assert set(re.findall(r"\.tone-([a-z-]+)", css)) <= set(states.TONES)

