"""The status page's HTML, rendered from a snapshot: the only place its markup is built.

The page is rendered whole once; after that its event stream (GET /api/v1/status/events
?view=page) sends `live_parts` of each new snapshot, which static/status.js swaps in by
element id. Pure: plain values in, a string out."""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from factory.states import COUNTER_NAMES, SCAN_STEPS, CounterName, PrinterState
from factory.status.attention import duration

COUNTER_WORDS: dict[CounterName, str] = {
    "issued": "Issued", "verified": "Verified", "labelled": "Labelled",
    "checked": "Label checked", "registered": "Registered", "preclaimed": "Pre-claimed",
    "failed": "Failed", "voided": "Voided"}
PRINTER_WORDS: dict[PrinterState, str] = {"none": "None", "idle": "Ready",
                                          "unavailable": "NOT PRINTING"}


def h(tag: str, cls: str = "", *children: str, **attrs: str) -> str:
    """One element; text children must already be escaped (use `t`)."""
    attributes = "".join(f' {k.rstrip("_")}="{escape(v)}"' for k, v in attrs.items())
    if cls:
        attributes = f' class="{escape(cls)}"{attributes}'
    return f"<{tag}{attributes}>{''.join(children)}</{tag}>"


def t(value: object) -> str:
    return escape(str(value))


def clock(at: str | None) -> str:
    """HH:MM:SS in the station's local time, from a journal time."""
    if not at:
        return ""
    return datetime.fromisoformat(at).astimezone().strftime("%H:%M:%S")


def attention(snap: dict[str, Any]) -> str:
    alerts = snap["attention"]
    if not alerts:
        return h("div", "alert", h("p", "what", "Line OK: nothing needs you now"))
    return "".join(h("div", "alert", h("p", "what", t(a["what"])),
                     h("p", "action", t(a["action"]))) for a in alerts)


def fixtures(snap: dict[str, Any]) -> str:
    if not snap["fixtures"]:
        return h("p", "empty", "No fixtures in this station's config")
    cards = []
    for f in snap["fixtures"]:
        parts = [h("h2", "", t(f["name"])), h("p", "state", t(f["words"]))]
        if f["uci"]:
            parts.append(h("p", "uci", t(f["uci"])))
        if f["reason"]:
            parts.append(h("p", "reason", t(f["reason"])))
        if f["action"]:
            parts.append(h("p", "action", t(f["action"])))
        parts.append(h("p", "tally", t(f"{f['done']} done · {f['failed']} failed")))
        # The page's script focuses the scan field of a fixture that waits for a scan.
        wants = {"data-wants-scan": "yes"} if f.get("state") in SCAN_STEPS else {}
        cards.append(h("article", f"fixture tone-{f['tone']}", *parts,
                       **{"data-fixture": f["name"], **wants}))
    return "".join(cards)


def scan_fields(snap: dict[str, Any]) -> str:
    """A scan field per fixture that takes scans, where a keyboard-wedge scanner types; not
    a live part (swapping it would lose what is being typed), so rendered once."""
    forms = [h("form", "scan",
               h("label", "", t(f"Scan for {f['name']}"),
                 f'<input type="text" name="code" autocomplete="off" spellcheck="false"'
                 f' id="scan-{t(f["name"])}">'),
               h("output", "answer", **{"aria-live": "polite"}), **{"data-fixture": f["name"]})
             for f in snap["fixtures"] if f.get("scans")]
    if not forms:
        return ""
    return h("section", "scans", *forms, **{"aria-label": "Label scans"})


def counts(snap: dict[str, Any]) -> str:
    shift = t(f"Shift from {snap['shift']['name']}")
    head = h("thead", "", h("tr", "", h("th", ""), h("th", "", shift), h("th", "", "Today")))
    rows = []
    for key in COUNTER_NAMES:
        cells = [h("th", "", t(COUNTER_WORDS[key]))]
        for window in ("shift", "today"):
            n = snap["counts"][window][key]
            cells.append(h("td", f"{window} warn" if key == "failed" and n else window, t(n)))
        rows.append(h("tr", f"count-{key}", *cells))
    return head + h("tbody", "", *rows)


def tiles(snap: dict[str, Any]) -> str:
    rate = h("div", "tile", h("h2", "", "Units per hour"),
             h("p", "big", t(snap["units_per_hour"])), h("p", "", "verified in the last hour"))
    up = snap["upstream"]
    if not up["enabled"]:
        upstream = h("div", "tile", h("h2", "", "Upstream"), h("p", "big", "None"),
                     h("p", "", "units are not registered"))
    else:
        lines = [h("h2", "", "Upstream backlog"), h("p", "big", t(up["pending"])),
                 h("p", "", "waiting to register")]
        if up["oldest_age_seconds"] is not None:
            lines.append(h("p", "", t(f"oldest {duration(up['oldest_age_seconds'])}")))
        if up["failed"]:
            lines.append(h("p", "", t(f"{up['failed']} refused, set aside")))
        if up["last_error"]:
            lines.append(h("p", "detail", t(up["last_error"])))
        tone = "stop" if up["refused"] else "idle"
        upstream = h("div", f"tile tone-{tone}", *lines)
    pr = snap["printer"]
    printer_lines = [h("h2", "", "Printer"),
                     h("p", "big", t(PRINTER_WORDS.get(pr["state"], pr["state"]))),
                     h("p", "", t(f"queue {pr['queue']}" if pr["enabled"]
                                  else "labels are kept as PDF"))]
    if pr["reason"]:
        printer_lines.append(h("p", "detail", t(pr["reason"])))
    tone = "stop" if pr["state"] == "unavailable" else "idle"
    return rate + upstream + h("div", f"tile tone-{tone}", *printer_lines) + fleet(snap)


def fleet(snap: dict[str, Any]) -> str:
    """The fleet center's lag behind this station (mode 2), if it ships there."""
    lag = snap.get("fleet") or {}
    if not lag.get("enabled"):
        return ""
    lines = [h("h2", "", "Fleet center")]
    if lag["events"] is None:
        lines += [h("p", "big", "?"), h("p", "", "not reached since start")]
    else:
        lines += [h("p", "big", t(lag["events"])), h("p", "", "events not shipped yet")]
        if lag["events"] and lag["seconds"] is not None:
            lines.append(h("p", "", t(f"oldest {duration(lag['seconds'])}")))
    if lag["away"]:
        lines.append(h("p", "detail", t(f"center unreachable: {lag['away']}")))
    if lag["refused"]:
        lines.append(h("p", "detail", t(f"refused: {lag['refused']}")))
    tone = "stop" if lag["refused"] else "idle"
    return h("div", f"tile tone-{tone} fleet", *lines, id="fleet-lag")


def units(snap: dict[str, Any]) -> str:
    if not snap["units"]:
        return h("tr", "", h("td", "empty", "No units yet"))
    return "".join(
        h("tr", f"unit state-{u['state']}", h("td", "time", t(clock(u["updated_at"]))),
          h("td", "uci", t(u["human"])),
          h("td", "steps", t(" › ".join(s["words"] for s in u["steps"]))))
        for u in snap["units"])


def live_parts(snap: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The page's parts that follow the line, by element id: the inner HTML and, where it
    changes with the snapshot, the element's class. The page is rendered with them and its
    stream sends them again, so the page and its updates cannot differ."""
    tone = "stop" if snap["attention"] else "ok"
    return {
        "station": {"html": t(snap["station"])},
        "updated": {"html": t(clock(snap["now"]))},
        "attention": {"html": attention(snap), "class": f"attention tone-{tone}"},
        "fixtures": {"html": fixtures(snap)},
        "counts": {"html": counts(snap)},
        "tiles": {"html": tiles(snap)},
        "units": {"html": units(snap)},
    }


def render(snap: dict[str, Any]) -> str:
    """The whole page for one snapshot (it then updates itself from the event stream)."""
    parts = live_parts(snap)

    def live(tag: str, name: str, cls: str = "", **attrs: str) -> str:
        part = parts[name]
        names = {key.replace("_", "-"): value for key, value in attrs.items()}  # aria-*
        return h(tag, part.get("class", cls), part["html"], id=name, **names)

    station = t(snap["station"])
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{station} · line status</title>
<link rel="stylesheet" href="static/status.css">
<script src="static/status.js" defer></script>
</head>
<body>
<header>
<h1>Station {live("b", "station")}</h1>
<p id="link" class="link">Connecting…</p>
<p class="updated">Updated {live("time", "updated")}</p>
</header>
<section id="lost" class="lost" role="alert" hidden>
<p class="what">STATION UNREACHABLE since <time id="lost-since"></time></p>
<p class="action">This screen shows the last known state. Check the station PC and its network;
the page reconnects by itself.</p>
</section>
{live("section", "attention", aria_live="assertive")}
<main>
<div class="left">
{live("section", "fixtures", "fixtures", aria_label="Fixtures")}
{scan_fields(snap)}
<div class="numbers">
{live("table", "counts", "counts")}
{live("section", "tiles", "tiles")}
</div>
</div>
<section class="units" aria-label="Last units">
<h2>Last units</h2>
<table>{live("tbody", "units")}</table>
</section>
</main>
</body>
</html>
"""
