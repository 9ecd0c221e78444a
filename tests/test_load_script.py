"""scripts/load.py runs the whole line (station, registry, simulated units) under load and
its figures agree with the journal the station wrote."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def test_a_short_load_run_agrees_with_the_journal(tmp_path: Path) -> None:
    folder = tmp_path / "line"
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "load.py"), "--duration", "5", "--clients", "2",
         "--viewers", "3", "--fixtures", "2", "--json", "--folder", str(folder)],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)

    assert result["errors"] == {}
    issue = result["issue"]
    assert issue["ucis"] > 0 and issue["requests"] > 0
    assert all(k["requests"] > 0 for k in issue["by_kind"].values())
    assert result["events"]["per_viewer"] == [n for n in result["events"]["per_viewer"] if n > 0]
    assert len(result["events"]["per_viewer"]) == 3
    station = result["station"]
    assert station["exit_code"] == 0
    assert "chain intact" in station["journal_verify"]
    assert station["peak_rss_kib"] > 0 and station["max_fds"] > 0

    received = (folder / "received.txt").read_text().split()
    assert len(received) == issue["ucis"] == len(set(received))
    fx = result["fixtures_result"]
    with sqlite3.connect(folder / "journal.sqlite") as db:
        in_journal = {row[0] for row in db.execute("SELECT uci FROM units")}
        labelled = dict(db.execute("SELECT actor, count(*) FROM events "
                                   "WHERE kind = 'labelled' GROUP BY actor").fetchall())
        registered = db.execute(
            "SELECT count(*) FROM events WHERE kind = 'registered'").fetchone()[0]
        queued = db.execute("SELECT count(*) FROM outbox WHERE action = 'register'").fetchone()[0]
    assert set(received) <= in_journal
    assert fx["missing_in_journal"] == 0
    assert fx["labelled_total"] == {"console-1": labelled.get("fixture:console-1", 0),
                                    "framed-2": labelled.get("fixture:framed-2", 0)}
    assert sum(labelled.values()) >= 1, "no fixture provisioned a unit"
    # Every labelled unit has its PDF kept and its registration queued (or done).
    assert fx["label_pdfs"] == sum(labelled.values()) == queued
    assert fx["registered"] == registered <= queued
