"""Acknowledged means durable: the station is killed with SIGKILL under load and restarted."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from factory.journal.interface import Journal
from tests.conftest import PRODUCT, OpenJournal, run_cli, write_config
from tests.processes import station_process

pytestmark = pytest.mark.slow


async def _load(url: str, token: str, received: list[str], hardware: dict[str, str],
                worker: int, stop: asyncio.Event) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    n = 0
    async with aiohttp.ClientSession(headers=headers) as session:
        while not stop.is_set():
            n += 1
            body: dict[str, Any] = {"product": PRODUCT}
            if n % 5 == 0:
                body["count"] = 25
            elif n % 3 == 0:
                body["hardware_id"] = f"W{worker}-UNIT-{n % 4}"
            try:
                async with session.post(f"{url}/api/v1/ucis", json=body) as resp:
                    if resp.status not in (200, 201):
                        raise AssertionError(f"{resp.status}: {await resp.text()}")
                    data = await resp.json()
            except (TimeoutError, aiohttp.ClientError):
                return  # the station died under us: what we were told is what counts
            got = data["ucis"] if "ucis" in data else [data["uci"]]
            received.extend(got)
            if "hardware_id" in body:
                known = hardware.setdefault(body["hardware_id"], got[0])
                assert known == got[0], "one hardware id got two UCIs"


async def _round(config: Path, token: str, received: list[str],
                 hardware: dict[str, str]) -> None:
    async with station_process(config) as (proc, url):
        stop = asyncio.Event()
        workers = [asyncio.create_task(_load(url, token, received, hardware, w, stop))
                   for w in range(24)]
        start = len(received)
        async with asyncio.timeout(30):
            while len(received) - start < 600:
                await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # mid-load, no warning
        await proc.wait()
        stop.set()
        await asyncio.gather(*workers)


async def _all_ucis(journal: Journal) -> list[str]:
    ucis: list[str] = []
    cursor = None
    while True:
        page, cursor = await journal.units(limit=5000, before=cursor)
        ucis += [unit.uci for unit in page]
        if cursor is None:
            return ucis


async def test_sigkill_under_load_loses_and_duplicates_nothing(
        config_path: Path, open_test_journal: OpenJournal) -> None:
    config = config_path
    token = run_cli(config, "token", "new", "--role", "device", "--name", "load").stdout.strip()
    received: list[str] = []
    hardware: dict[str, str] = {}
    for _ in range(3):
        await _round(config, token, received, hardware)

    journal = await open_test_journal()
    try:
        in_journal = await _all_ucis(journal)
        issued_events = [e.uci async for e in journal.events() if e.kind == "issued"]
    finally:
        await journal.close()
    assert len(in_journal) == len(set(in_journal)), "a UCI is in the journal twice"
    assert len(issued_events) == len(set(issued_events)), "a UCI was issued twice"
    missing = set(received) - set(in_journal)
    assert not missing, f"{len(missing)} acknowledged UCIs are not in the journal"
    assert len(set(received)) >= 1800
    assert "OK" in run_cli(config, "journal", "verify").stdout

    # After the crashes, each hardware id still gets the UCI it was given before.
    async with station_process(config) as (_, url), aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token}"}) as session:
        for hardware_id, uci in list(hardware.items())[:20]:
            async with session.post(f"{url}/api/v1/ucis", json={
                    "product": PRODUCT, "hardware_id": hardware_id}) as resp:
                assert resp.status == 200
                assert (await resp.json())["uci"] == uci


async def test_sigterm_finishes_and_exits_cleanly(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    token = run_cli(config, "token", "new", "--role", "device", "--name", "t").stdout.strip()
    async with station_process(config) as (proc, url):
        async with aiohttp.ClientSession() as session, session.post(
                f"{url}/api/v1/ucis", json={"product": PRODUCT},
                headers={"Authorization": f"Bearer {token}"}) as resp:
            uci = (await resp.json())["uci"]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert uci in run_cli(config, "unit", uci).stdout
