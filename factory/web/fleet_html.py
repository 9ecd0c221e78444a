"""The fleet page's HTML (`factory fleet serve`): every station with its lag, its day and its
conflicts, the open hardware conflicts, and a search for one unit across the fleet. Built
with the status page's helpers and styled by its CSS. Pure: plain values in, a string out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from factory import uci as uci_codec
from factory.status.attention import duration
from factory.web.status_html import clock, h, t


def _lag(s: dict[str, Any]) -> str:
    if s["lag_events"] is None:
        return "not reported"
    if not s["lag_events"]:
        return "caught up"
    return f"{s['lag_events']} events, oldest {duration(s['lag_seconds'] or 0)}"


def _when(at: str) -> str:
    """An event's time in this server's local time, to the second: 12-07 05:49:59."""
    return datetime.fromisoformat(at).astimezone().strftime("%m-%d %H:%M:%S")


def stations(rows: list[dict[str, Any]]) -> str:
    head = h("thead", "", h("tr", "", *(h("th", "", t(w)) for w in (
        "Station", "Lag", "Units today", "Failed today", "Conflicts", "Newest event"))))
    if not rows:
        return head + h("tbody", "", h("tr", "", h("td", "empty", "No station has shipped "
                                                                  "to this center yet")))
    body = []
    for s in rows:
        tone = "stop" if s["refused"] or s["conflicts"] else "ok"
        cells = [h("th", "", t(s["station"])), h("td", "lag", t(_lag(s))),
                 h("td", "", t(s["units_today"])),
                 h("td", "warn" if s["failed_today"] else "", t(s["failed_today"])),
                 h("td", "warn" if s["conflicts"] else "", t(s["conflicts"])),
                 h("td", "time", t(clock(s["head_at"]) or "-"))]
        body.append(h("tr", f"station tone-{tone}", *cells, **{"data-station": s["station"]}))
        if s["refused"]:
            body.append(h("tr", "refused", h("td", "reason", t(f"REFUSED: {s['refused']}"),
                                             colspan="6")))
    return head + h("tbody", "", *body)


def conflicts(rows: list[dict[str, Any]]) -> str:
    open_rows = [c for c in rows if c["open"]]
    if not open_rows:
        return h("div", "alert", h("p", "what", "No hardware id is bound to two UCIs"))
    return "".join(h("div", "alert", h("p", "what", t(
        f"Hardware {c['hardware_id']} has two UCIs: {uci_codec.human(c['uci'])} at "
        f"{c['station']} and {uci_codec.human(c['other_uci'])} at {c['other_station']}")),
        h("p", "action", t("void one of them at its station (factory void UCI --reason "
                           "...); the void ships and this clears"))) for c in open_rows)


def found(query: str, units: list[dict[str, Any]]) -> str:
    if not query:
        return ""
    if not units:
        return h("p", "empty", t(f"No unit {query!r} at the fleet center"))
    parts = []
    for u in units:
        rows = [h("tr", f"event kind-{e['kind']}", h("td", "time", t(_when(e["at"]))),
                  h("td", "", t(f"{e['station']} #{e['seq']}")), h("td", "", t(e["kind"])),
                  h("td", "time", t(e["actor"])))
                for e in u["events"]]
        parts.append(h("article", f"unit state-{u['state']}",
                       h("h2", "uci", t(uci_codec.human(u["uci"]))),
                       h("p", "", t(f"{u['state']} · issued at {u['station']} · hardware "
                                    f"{u['hardware_id'] or '-'} · product {u['product']}")),
                       h("table", "events", h("tbody", "", *rows))))
    return "".join(parts)


def render(station_rows: list[dict[str, Any]], conflict_rows: list[dict[str, Any]],
           query: str = "", units: list[dict[str, Any]] | None = None,
           error: str = "") -> str:
    """The whole fleet page; with a query, the units it found and their events, or what
    was wrong with the query (`error`)."""
    any_open = any(c["open"] for c in conflict_rows)
    tone = "stop" if any_open or any(s["refused"] for s in station_rows) else "ok"
    value = t(query)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Fleet</title>
<link rel="stylesheet" href="static/status.css">
</head>
<body>
<header>
<h1>Fleet</h1>
<p class="updated">{len(station_rows)} stations</p>
</header>
{h("section", f"attention tone-{tone}", conflicts(conflict_rows), id="conflicts")}
<main>
<div class="left">
{h("table", "counts", stations(station_rows), id="stations", **{"aria-label": "Stations"})}
<form class="scan" method="get" action="">
<label>Find a unit (UCI, claim URL or hardware id)
<input type="search" name="q" value="{value}" autocomplete="off" spellcheck="false"></label>
</form>
</div>
<section class="units" aria-label="Units found">
<h2>{"Units found" if query else "Search for a unit to see its events"}</h2>
{h("div", "found", h("p", "reason", t(error)) if error else found(query, units or []),
   id="found")}
</section>
</main>
</body>
</html>
"""
