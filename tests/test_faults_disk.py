"""The journal's disk fills up under load: the station refuses new work with a clear error,
stays up, loses nothing it acknowledged, and takes work again once there is room, without a
restart. The real thing is a small tmpfs under a `factory serve` process (needs root to
mount); the same checks run in-process against SQLite's own page limit everywhere."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from factory.journal.sqlite import SQLiteJournal
from tests.conftest import CONFIG_TEXT, PRODUCT, Station, run_cli, write_config
from tests.processes import arriving_units, station_process, until

pytestmark = pytest.mark.slow
PROBLEM = "application/problem+json"


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted on `folder` (skips the test where mounting is not allowed)."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                              str(folder)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs for the journal (needs root or "
                    f"CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def grow(folder: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)


@dataclass
class Load:
    """What clients were told: acknowledged UCIs, and each refusal's status and body."""

    acknowledged: set[str] = field(default_factory=set)
    refusals: list[tuple[int, str, dict[str, Any], str]] = field(default_factory=list)
    hardware: dict[str, str] = field(default_factory=dict)


Post = Callable[[dict[str, Any]], Awaitable[tuple[int, str, Any, str]]]


async def load_until_full(post: Post, load: Load, *, workers: int = 8,
                          refusals: int = 20) -> None:
    """Issue singles, hardware ids and batches from `workers` clients until the journal has
    refused `refusals` requests."""
    async def worker(w: int) -> None:
        n = 0
        while len(load.refusals) < refusals:
            n += 1
            body: dict[str, Any] = {"product": PRODUCT}
            if n % 3 == 0:
                body["count"] = 40
            elif n % 3 == 1:
                body["hardware_id"] = f"W{w}-{n}"
            status, content_type, answer, retry_after = await post(body)
            if status in (200, 201):
                got = answer["ucis"] if "ucis" in answer else [answer["uci"]]
                load.acknowledged.update(got)
                if "hardware_id" in body:
                    load.hardware[body["hardware_id"]] = got[0]
            else:
                load.refusals.append((status, content_type, answer, retry_after))

    async with asyncio.timeout(60):
        await asyncio.gather(*(worker(w) for w in range(workers)))


async def refused(post: Post) -> None:
    """One more large batch, refused: the journal's newest write is a failed one (a small
    write may still fit in a page freed meanwhile, and would clear the alarm)."""
    status, _, answer, _ = await post({"product": PRODUCT, "count": 500})
    assert status == 503, answer


def check_refusals(load: Load) -> None:
    """Every refusal is a 503 problem that says nothing was recorded, with a Retry-After."""
    assert load.refusals
    for status, content_type, problem, retry_after in load.refusals:
        assert status == 503, (status, problem)
        assert content_type == PROBLEM and problem["status"] == 503
        assert "nothing was recorded" in problem["detail"], problem
        assert "disk is full" in problem["detail"], problem
        assert retry_after.isdigit()


async def check_health(http: aiohttp.ClientSession, url: str, *, full: bool,
                       headers: dict[str, str] | None = None) -> None:
    """/healthz and the status page say the journal cannot write while it cannot."""
    async with http.get(f"{url}/healthz") as resp:
        assert resp.status == (503 if full else 200)
        if full:
            assert resp.content_type == PROBLEM
            assert "disk is full" in (await resp.json(content_type=PROBLEM))["detail"]
    async with http.get(f"{url}/api/v1/status", headers=headers) as resp:
        alerts = [a for a in (await resp.json())["attention"] if a["source"] == "journal"]
    assert len(alerts) == (1 if full else 0)
    if full:
        assert "make room" in alerts[0]["action"]


def journal_ucis(path: Path) -> set[str]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return {r[0] for r in db.execute("SELECT uci FROM units")}


# --- the real thing: a station process whose journal is on a full tmpfs -------------------


async def test_a_full_disk_refuses_new_work_and_loses_nothing(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "2m") as disk:
        config = write_config(tmp_path, CONFIG_TEXT.replace(
            'journal = "journal.sqlite"', 'journal = "disk/journal.sqlite"'))
        token = run_cli(config, "token", "new", "--role", "operator",
                        "--name", "load").stdout.strip()
        load = Load()
        async with station_process(config) as (proc, url), aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {token}"}) as http:

            async def post(body: dict[str, Any]) -> tuple[int, str, Any, str]:
                async with http.post(f"{url}/api/v1/ucis", json=body) as resp:
                    return (resp.status, resp.content_type, await resp.json(content_type=None),
                            resp.headers.get("Retry-After", ""))

            await load_until_full(post, load)
            check_refusals(load)
            assert proc.returncode is None  # still up
            await refused(post)
            await check_health(http, url, full=True)
            assert load.acknowledged <= journal_ucis(disk / "journal.sqlite")

            grow(disk, "64m")  # room again: the same process takes work at once
            status, _, answer, _ = await post({"product": PRODUCT, "count": 200})
            assert status == 201, answer
            load.acknowledged.update(answer["ucis"])
            await check_health(http, url, full=False)
            for hardware_id, uci in list(load.hardware.items())[:10]:
                status, _, answer, _ = await post({"product": PRODUCT,
                                                   "hardware_id": hardware_id})
                assert (status, answer["uci"]) == (200, uci)
        held = journal_ucis(disk / "journal.sqlite")
        assert load.acknowledged <= held
        assert "OK" in run_cli(config, "journal", "verify").stdout
        print(f"\n2 MiB tmpfs: {len(load.acknowledged)} UCIs acknowledged, "
              f"{len(load.refusals)} requests refused (503), {len(held)} in the journal")


# --- everywhere: the same checks in-process, the journal held to its current size ---------


@pytest.mark.parametrize("journal_backend", ["sqlite"], indirect=True)  # SQLite's own size limit
async def test_a_journal_that_may_not_grow_refuses_and_loses_nothing(station: Station) -> None:
    """SQLite's max_page_count makes the same SQLITE_FULL a full disk does, without root."""
    assert isinstance(station.journal, SQLiteJournal)  # SQLite's own size limit
    writer = station.journal._writer_conn
    headers = station.auth("operator")

    async def post(body: dict[str, Any]) -> tuple[int, str, Any, str]:
        resp = await station.client.post("/api/v1/ucis", json=body, headers=headers)
        return (resp.status, resp.content_type, await resp.json(content_type=None),
                resp.headers.get("Retry-After", ""))

    async with writer.execute("PRAGMA page_count") as cur:
        pages = (await cur.fetchone())[0]  # type: ignore[index]
    await writer.execute(f"PRAGMA max_page_count = {pages + 40}")  # room for a few hundred
    load = Load()
    await load_until_full(post, load)
    check_refusals(load)
    assert len(load.acknowledged) > 100
    http = station.client.session
    url = str(station.client.make_url("")).rstrip("/")
    await refused(post)
    await check_health(http, url, full=True, headers=headers)
    assert load.acknowledged <= journal_ucis(station.config.journal)

    await writer.execute("PRAGMA max_page_count = 1073741823")
    status, _, answer, _ = await post({"product": PRODUCT, "count": 200})
    assert status == 201, answer
    await check_health(http, url, full=False, headers=headers)
    assert load.acknowledged <= journal_ucis(station.config.journal)
    assert (await station.journal.verify()).ok


# --- a fixture at work when the disk fills ----------------------------------------------


def fill(folder: Path) -> Path:
    """A ballast file taking every free byte of the file system under `folder`."""
    ballast = folder / "ballast"
    chunk = b"\0" * 65536
    with ballast.open("wb") as out:
        try:
            while True:
                out.write(chunk)
                out.flush()
        except OSError:
            pass
    with contextlib.suppress(OSError):  # the last partial chunk may not fit either
        for _ in range(64):
            with ballast.open("ab") as out:
                out.write(b"\0" * 1024)
    return ballast


def verified_units(journal: Path) -> dict[str, str]:
    """UCI -> the digest the unit reported, for every verified unit."""
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as db:
        return dict(db.execute("SELECT uci, json_extract(data, '$.digest') FROM events "
                               "WHERE kind = 'verified'").fetchall())


async def test_a_fixture_at_work_when_the_disk_fills_goes_on_once_there_is_room(
        tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "3m") as disk:
        journal = disk / "journal.sqlite"
        config = write_config(tmp_path, CONFIG_TEXT.replace(
            'journal = "journal.sqlite"', 'journal = "disk/journal.sqlite"') + f"""
[[fixtures]]
name = "line-1"
port = "unit.tty"
driver = "framed"
product = "{PRODUCT}"
poll_interval = 0.1
""")
        token = run_cli(config, "token", "new", "--role", "viewer",
                        "--name", "screen").stdout.strip()
        async with station_process(config) as (proc, url), aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {token}"}) as http, arriving_units(
                tmp_path / "units", tmp_path / "unit.tty", 0.6):

            async def fixture() -> dict[str, Any]:
                async with http.get(f"{url}/api/v1/status") as resp:
                    return (await resp.json())["fixtures"][0]

            await until(lambda: len(verified_units(journal)) >= 3, 30, "3 units verified")
            before = verified_units(journal)
            ballast = fill(disk)

            async def refused() -> bool:
                state = await fixture()
                return state["state"] == "failed" and "disk is full" in state["reason"]

            await until(refused, 30, "the fixture says the journal's disk is full")
            assert proc.returncode is None
            async with http.get(f"{url}/healthz") as resp:
                assert resp.status == 503
            ballast.unlink()  # room again

            await until(lambda: len(verified_units(journal)) >= len(before) + 3, 30,
                        "3 more units verified once there is room")
            assert proc.returncode is None
        after = verified_units(journal)
        assert before.items() <= after.items()  # nothing verified before was lost
        assert "OK" in run_cli(config, "journal", "verify").stdout
