"""The status page's markup from plain snapshots: the page and its live parts (what the
page's stream sends) come from one renderer, and everything the station says is escaped."""

from __future__ import annotations

from typing import Any

from factory.states import COUNTER_NAMES
from factory.web.status_html import live_parts, render


def snap(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "station": "line<2>", "now": "2024-05-01T05:00:00.000Z",
        "shift": {"name": "06:00"}, "attention": [], "fixtures": [], "units": [],
        "counts": {w: dict.fromkeys(COUNTER_NAMES, 0) for w in ("shift", "today")},
        "units_per_hour": 0,
        "upstream": {"enabled": False},
        "printer": {"enabled": False, "queue": "", "state": "none", "reason": ""},
    }
    return {**base, **changes}


def test_the_page_is_rendered_with_its_live_parts() -> None:
    page = render(snap())
    parts = live_parts(snap())
    for name, part in parts.items():
        assert part["html"] in page and f'id="{name}"' in page
    assert '<b id="station">line&lt;2&gt;</b>' in page
    assert '<section class="attention tone-ok" id="attention" aria-live="assertive">' in page
    assert "Line OK: nothing needs you now" in parts["attention"]["html"]
    assert parts["units"]["html"] == '<tr><td class="empty">No units yet</td></tr>'


def test_a_fixture_alert_and_failures_show_as_stop() -> None:
    counts = {"shift": dict.fromkeys(COUNTER_NAMES, 0),
              "today": {**dict.fromkeys(COUNTER_NAMES, 0), "failed": 2}}
    fixture = {"name": "line-1", "words": "FAILED", "tone": "stop", "uci": "7KQ2-M9XD",
               "reason": "no answer", "action": "plug it in again", "done": 3, "failed": 1}
    alert = {"source": "fixture:line-1", "what": "Fixture line-1 failed", "action": "a & b"}
    parts = live_parts(snap(counts=counts, fixtures=[fixture], attention=[alert]))
    assert parts["attention"]["class"] == "attention tone-stop"
    assert '<p class="action">a &amp; b</p>' in parts["attention"]["html"]
    assert parts["fixtures"]["html"].startswith(
        '<article class="fixture tone-stop" data-fixture="line-1">')
    assert '<p class="tally">3 done · 1 failed</p>' in parts["fixtures"]["html"]
    assert ('<tr class="count-failed"><th>Failed</th><td class="shift">0</td>'
            '<td class="today warn">2</td></tr>') in parts["counts"]["html"]


def test_tiles_and_units() -> None:
    upstream = {"enabled": True, "pending": 4, "failed": 1, "oldest_age_seconds": 700,
                "last_error": "timeout", "refused": ""}
    printer = {"enabled": True, "queue": "zebra", "state": "unavailable", "reason": "paper"}
    unit = {"state": "verified", "updated_at": None, "human": "7KQ2-M9XD",
            "steps": [{"words": "issued"}, {"words": "written"}, {"words": "verified"}]}
    parts = live_parts(snap(upstream=upstream, printer=printer, units=[unit]))
    tiles = parts["tiles"]["html"]
    assert "<p>oldest 11 min</p>" in tiles and "<p>1 refused, set aside</p>" in tiles
    assert ('<div class="tile tone-stop"><h2>Printer</h2><p class="big">NOT PRINTING</p>'
            '<p>queue zebra</p><p class="detail">paper</p></div>') in tiles
    assert '<td class="steps">issued › written › verified</td>' in parts["units"]["html"]
    assert parts["units"]["html"].startswith('<tr class="unit state-verified">')
