"""The journal's files against the real command line and real stations: files SQLite cannot
open, a journal that is not there, a damaged one, a second station, a WAL cut after a kill -9,
and a -shm deleted under a running station."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import FACTORY, PRODUCT, ROOT, run_cli, write_config
from tests.processes import station_process

pytestmark = pytest.mark.slow


def run_guarded(config: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """`factory ARGS` with a hang guard: a process that does not end is a failure, not a
    stuck test (aiosqlite's thread kept such processes alive)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    try:
        result = subprocess.run([*FACTORY, "-c", str(config), *args], capture_output=True,
                                text=True, env=env, timeout=15, check=False)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"factory {' '.join(args)} did not exit: {exc.stderr!r}") from exc
    return result, time.monotonic() - started


def journal_of(tmp_path: Path) -> Path:
    return tmp_path / "journal.sqlite"


def make_journal(config: Path, count: int = 20) -> None:
    run_cli(config, "issue", "--product", PRODUCT, "--count", str(count))


def random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(8192))


def flipped_header(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[0] ^= 0x01  # "SQLite format 3\0" no more
    path.write_bytes(bytes(raw))


def directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


@pytest.mark.parametrize("damage", [random_bytes, flipped_header, directory])
@pytest.mark.parametrize("command", [["journal", "verify"], ["serve"], ["units"]])
def test_a_journal_sqlite_cannot_open_is_one_line_and_an_exit(
        tmp_path: Path, damage: Any, command: list[str]) -> None:
    config = write_config(tmp_path)
    make_journal(config)
    damage(journal_of(tmp_path))
    result, took = run_guarded(config, *command)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(journal_of(tmp_path)) in lines[0]
    assert "not a database" in lines[0] or "directory" in lines[0]
    assert took < 5


@pytest.mark.parametrize("command", [["journal", "verify"], ["units"],
                                     ["journal", "export"], ["token", "list"]])
def test_reading_a_journal_that_is_not_there_creates_nothing(
        tmp_path: Path, command: list[str]) -> None:
    config = write_config(tmp_path)
    result, _ = run_guarded(config, *command)
    assert result.returncode == 2
    assert f"no journal at {journal_of(tmp_path)}" in result.stderr
    assert "[station] journal" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["station.toml"]


def flip_index_page(path: Path) -> None:
    """Damage the units_state index's root page (its page type byte): the events, and so the
    hash chain, stay readable."""
    with sqlite3.connect(path) as db:
        page_size = db.execute("PRAGMA page_size").fetchone()[0]
        root = db.execute(
            "SELECT rootpage FROM sqlite_schema WHERE name = 'units_state'").fetchone()[0]
    db.close()
    with path.open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(b"\xff")


def test_a_damaged_journal_is_refused_at_start_and_named_by_verify(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    make_journal(config, 200)
    flip_index_page(journal_of(tmp_path))
    for command in (["serve"], ["issue", "--product", PRODUCT]):
        result, _ = run_guarded(config, *command)
        assert result.returncode == 2
        line = result.stderr.strip()
        assert "\n" not in line
        assert f"journal {journal_of(tmp_path)} is damaged (SQLite: " in line
        assert "put back its backup" in line and "factory journal verify" in line
    verify, _ = run_guarded(config, "journal", "verify")
    assert verify.returncode == 1
    assert "is damaged (SQLite: " in verify.stdout


async def test_a_second_station_on_the_same_journal_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    async with station_process(config) as (proc, _):
        result, took = await asyncio.to_thread(run_guarded, config, "serve")
        assert result.returncode == 2
        line = result.stderr.strip()
        assert "\n" not in line, result.stderr
        assert f"is already served by process {proc.pid} (" in line
        assert "serve" in line.split(f"process {proc.pid}")[1]
        assert took < 5
        # The CLI still writes beside the station.
        make_journal(config, 3)


async def _issue(session: aiohttp.ClientSession, url: str, body: dict[str, Any]) -> list[str]:
    async with session.post(f"{url}/api/v1/ucis", json=body) as resp:
        assert resp.status in (200, 201), await resp.text()
        data = await resp.json()
    return list(data["ucis"] if "ucis" in data else [data["uci"]])


def events_in(journal: Path) -> int:
    with sqlite3.connect(journal) as db:
        count = int(db.execute("SELECT count(*) FROM events").fetchone()[0])
    db.close()
    return count


def cut_copy(source: Path, target: Path, keep: float) -> Path:
    """The killed station's folder copied, its -wal cut to `keep` of its size; its config."""
    shutil.copytree(source, target)
    wal = target / "journal.sqlite-wal"
    os.truncate(wal, int(wal.stat().st_size * keep))
    return target / "station.toml"


async def test_a_cut_wal_after_kill_9_is_named_and_holds_issuing(tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    killed.mkdir()
    config = write_config(killed)
    token = run_cli(config, "token", "new", "--role", "device", "--name", "t").stdout.strip()
    auth = {"Authorization": f"Bearer {token}"}
    async with station_process(config) as (proc, url), aiohttp.ClientSession(
            headers=auth) as session:
        for _ in range(19):
            await _issue(session, url, {"product": PRODUCT, "count": 100})
        for n in range(100):
            await _issue(session, url, {"product": PRODUCT, "hardware_id": f"HW-{n}"})
        proc.kill()
        await proc.wait()

    lost = []
    for keep in (0.75, 0.5, 0.25, 0.0):
        cut = cut_copy(killed, tmp_path / f"cut-{keep}", keep)
        held = events_in(cut.parent / "journal.sqlite") < 2000
        verify = run_cli(cut, "journal", "verify", check=False)
        if not held:
            assert verify.returncode == 0, verify.stdout
            continue
        lost.append(keep)
        assert verify.returncode == 1, verify.stdout
        assert "are missing (the anchor, written " in verify.stdout
        assert "says the journal reached event 2000" in verify.stdout
    assert lost, "no cut lost an event: the test shows nothing"
    config = tmp_path / f"cut-{lost[0]}" / "station.toml"

    refused = run_cli(config, "issue", "--product", PRODUCT, "--hardware-id", "HW-99",
                      check=False)
    assert refused.returncode == 2
    assert "held: events " in refused.stderr and len(refused.stderr.strip().splitlines()) == 1

    async with station_process(config) as (_, url), aiohttp.ClientSession(
            headers=auth) as session:
        async with session.get(f"{url}/healthz") as resp:
            assert resp.status == 503
            assert "held: events " in (await resp.json())["detail"]
        async with session.post(f"{url}/api/v1/ucis",
                                json={"product": PRODUCT, "hardware_id": "HW-99"}) as resp:
            assert resp.status == 503
            assert resp.content_type == "application/problem+json"
            assert "are missing (the anchor" in (await resp.json())["detail"]

    accepted = run_cli(config, "journal", "accept-loss")
    assert "loss accepted" in accepted.stdout
    assert "OK" in run_cli(config, "journal", "verify").stdout
    kinds = run_cli(config, "journal", "export").stdout
    assert '"kind": "loss_accepted"' in kinds
    run_cli(config, "issue", "--product", PRODUCT, "--hardware-id", "HW-99")


async def test_a_deleted_shm_stops_the_station_writing_and_the_loss_is_caught(
        tmp_path: Path) -> None:
    config = write_config(tmp_path)
    token = run_cli(config, "token", "new", "--role", "device", "--name", "t").stdout.strip()
    auth = {"Authorization": f"Bearer {token}"}
    async with station_process(config) as (proc, url), aiohttp.ClientSession(
            headers=auth) as session:
        await _issue(session, url, {"product": PRODUCT, "count": 10})
        Path(f"{journal_of(tmp_path)}-shm").unlink()
        for _ in range(5):
            await asyncio.to_thread(run_cli, config, "issue", "--product", PRODUCT,
                                    "--count", "50")
        await asyncio.sleep(1.2)  # the station looks at its files once a second
        async with session.post(f"{url}/api/v1/ucis", json={"product": PRODUCT}) as resp:
            assert resp.status == 503
            detail = (await resp.json())["detail"]
            assert "-shm was deleted or replaced while the station ran" in detail
        async with session.get(f"{url}/healthz") as resp:
            assert resp.status == 503
            assert "-shm was deleted" in (await resp.json())["detail"]
        proc.terminate()
        await proc.wait()
    verify = run_cli(config, "journal", "verify", check=False)
    assert verify.returncode == 1, verify.stdout
    assert "are missing (the anchor, written " in verify.stdout
