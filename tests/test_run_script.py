"""`scripts/run`, the whole line on one machine: the registry, the station and two simulated
units that keep arriving. Run for real until units of both kinds are registered, then
Ctrl-C (SIGINT to its process group, as a terminal sends it): everything stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import time
from contextlib import closing
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
BOTH = {"fixture:console-1", "fixture:framed-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def factory(config: Path, *args: str) -> str:
    return subprocess.run([str(ROOT / ".venv" / "bin" / "factory"), "-c", str(config), *args],
                          capture_output=True, text=True, check=True, timeout=60).stdout


def registered(journal: Path) -> dict[str, str]:
    """Registered units by the fixture that made them."""
    if not journal.exists():
        return {}
    try:
        with closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT i.actor, u.uci FROM units AS u JOIN events AS i"
                              " ON i.uci = u.uci AND i.kind = 'issued'"
                              " WHERE u.state = 'registered'").fetchall()
    except sqlite3.OperationalError:  # made a moment ago, its tables not yet there
        return {}
    return dict(rows)


def running_in(folder: Path) -> list[int]:
    """Processes whose command line names `folder` (the parts of a line run there)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and str(folder).encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile
            continue
    return found


@pytest.mark.skipif(not (ROOT / ".venv" / "bin" / "factory").exists(),
                    reason="scripts/run uses the project's .venv")
def test_the_whole_line_runs_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    var = tmp_path / "line"
    station, registry = free_port(), free_port()
    env = {**os.environ, "FACTORY_RUN_DIR": str(var),
           "FACTORY_RUN_LISTEN": f"127.0.0.1:{station}",
           "FACTORY_RUN_REGISTRY": f"127.0.0.1:{registry}", "FACTORY_RUN_ARRIVE_EVERY": "3"}
    env.pop("FACTORY_CONFIG", None)
    out = tmp_path / "run.out"
    with out.open("w") as log:
        # SIGINT as a terminal's shell has it: a harness started in the background (`&`)
        # ignores it, and bash cannot trap a signal ignored when it started.
        proc = subprocess.Popen([str(ROOT / "scripts" / "run")], stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not registered(var / "journal.sqlite").keys() >= BOTH:
            assert proc.poll() is None, out.read_text()
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=60) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        left = running_in(var)  # each part has a session of its own: not in its group
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    text = out.read_text()
    assert f"http://127.0.0.1:{station}/" in text  # the status page
    assert str(var / "labels") in text and str(var / "journal.sqlite") in text

    config = var / "station.toml"
    done = registered(var / "journal.sqlite")
    assert done.keys() >= BOTH, text
    for uci in done.values():
        kinds = [e["kind"] for e in json.loads(factory(config, "unit", uci, "--json"))["events"]]
        assert kinds[:3] == ["issued", "written", "verified"]
        assert {"labelled", "registered"} <= set(kinds)
        assert (var / "labels" / f"{uci}-1.pdf").exists()
    with closing(sqlite3.connect(f"file:{var / 'registry.sqlite'}?mode=ro",
                                 uri=True)) as db:
        at_registry = {uci for (uci,) in db.execute("SELECT id FROM devices")}
    assert set(done.values()) <= at_registry
    assert "chain intact" in factory(config, "journal", "verify")
    # Every part stopped: no process of the line left, the simulated units unplugged, both
    # ports free again.
    assert left == []
    assert not (var / "sim-console.tty").exists() and not (var / "sim-framed.tty").exists()
    for port in (station, registry):
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
    assert "stopping: finishing queued journal writes" in text
    # The tokens the script made, and the folder holding them, are the user's alone.
    assert stat.S_IMODE(var.stat().st_mode) == 0o700
    for name in ("upstream.token", "operator.token"):
        assert stat.S_IMODE((var / name).stat().st_mode) == 0o600, name
