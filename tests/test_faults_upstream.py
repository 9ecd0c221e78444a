"""The upstream misbehaves while the line runs: a real `factory serve` with two fixtures of
simulated units registers them through a fault-injecting proxy in front of a real
`factory registry serve`. The proxy is down, slow, answers 500, 429 with Retry-After, resets
connections half way through the answer, then heals. Nothing verified is lost or registered
twice, and no unit is sent again before its Retry-After is over."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter, defaultdict
from contextlib import AsyncExitStack
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CONFIG_TEXT, PRODUCT, run_cli, write_config
from tests.fault_proxy import FaultProxy, Mode
from tests.processes import arriving_units, registry_process, station_process, until

pytestmark = pytest.mark.slow
FAULTS: tuple[Mode, ...] = ("slow", "500", "429", "reset")
PER_FAULT = 4  # requests each fault answers before the next one starts


def config_text(proxy: FaultProxy) -> str:
    fixtures = "".join(f"""
[[fixtures]]
name = "line-{i}"
port = "unit{i}.tty"
driver = "framed"
product = "{PRODUCT}"
poll_interval = 0.1
""" for i in (1, 2))
    return CONFIG_TEXT + f"""
[upstream]
kind = "http"
url = "{proxy.url}/"
token_file = "registry.token"
concurrency = 4
timeout = 0.5
retry_base = 0.2
retry_cap = 1
""" + fixtures


def journal_rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute(sql).fetchall()


def verified_ucis(journal: Path) -> set[str]:
    return {r[0] for r in journal_rows(
        journal, "SELECT DISTINCT uci FROM events WHERE kind = 'verified'")}


async def test_registration_survives_every_upstream_fault(tmp_path: Path) -> None:
    journal = tmp_path / "journal.sqlite"
    async with AsyncExitStack() as stack:
        registry = await stack.enter_async_context(registry_process(tmp_path))
        (tmp_path / "registry.token").write_text(registry.token)
        proxy = FaultProxy(registry.url)
        stack.push_async_callback(proxy.close)
        config = write_config(tmp_path, config_text(proxy))
        await stack.enter_async_context(station_process(config))
        sims = AsyncExitStack()
        for i in (1, 2):
            await sims.enter_async_context(
                arriving_units(tmp_path / f"units{i}", tmp_path / f"unit{i}.tty", 0.8))

        # Down: units keep being verified; their registrations wait in the outbox.
        await until(lambda: len(verified_ucis(journal)) >= 3, 30, "3 units verified")
        await asyncio.sleep(1.5)  # the outbox tries, and is refused the connection
        waiting = journal_rows(journal, "SELECT count(*) FROM outbox WHERE state = "
                                        "'pending' AND attempts > 0")[0][0]
        assert waiting >= 3  # tried, refused, kept
        for fault in FAULTS:
            await proxy.set_mode(fault)
            await until(lambda f=fault: proxy.count(f) >= PER_FAULT, 30,  # type: ignore[misc]
                        f"{PER_FAULT} requests answered {fault}")
        await proxy.set_mode("healthy")
        await sims.aclose()  # the line stops; what was verified must all arrive

        def drained() -> bool:
            pending = journal_rows(journal, "SELECT count(*) FROM outbox WHERE state = "
                                            "'pending'")[0][0]
            return pending == 0 and verified_ucis(journal) <= registered_ucis()

        def registered_ucis() -> set[str]:
            return {r[0] for r in journal_rows(
                journal, "SELECT uci FROM events WHERE kind = 'registered'")}

        await until(drained, 60, "the outbox drained")
        verified = verified_ucis(journal)

    # Every verified unit: registered once in the journal, once at the registry, no other.
    registered = Counter(r[0] for r in journal_rows(
        journal, "SELECT uci FROM events WHERE kind = 'registered'"))
    assert set(registered) == verified and set(registered.values()) == {1}
    with sqlite3.connect(registry.db) as db:
        held = Counter(r[0] for r in db.execute("SELECT id FROM devices"))
    assert set(held) == verified and set(held.values()) == {1}
    states = Counter(r[0] for r in journal_rows(journal, "SELECT state FROM outbox"))
    assert states == {"done": len(verified)}

    # Each fault was met, by more than one unit, and some units met several.
    by_unit: dict[str, list[tuple[float, Mode]]] = defaultdict(list)
    for seen in sorted(proxy.seen, key=lambda s: s.at):
        assert seen.uci in verified, "the proxy saw a request for a unit never verified"
        by_unit[seen.uci].append((seen.at, seen.mode))
    for fault in FAULTS:
        assert len({s.uci for s in proxy.seen if s.mode == fault}) >= 2, fault
    assert max(len({m for _, m in times}) for times in by_unit.values()) >= 3

    # Retry-After honoured: after a 429 a unit's next request comes no sooner.
    for times in by_unit.values():
        for (at, mode), (again, _) in pairwise(times):
            if mode == "429":
                assert again - at >= proxy.retry_after, (at, again)

    # Where the registry acted but the station heard no answer, it learnt so on the retry.
    created: dict[str, int] = dict(journal_rows(
        journal, "SELECT uci, json_extract(data, '$.created') FROM events "
                 "WHERE kind = 'registered'"))
    lost_answers = {s.uci for s in proxy.seen if s.created and s.mode != "healthy"}
    assert lost_answers and all(created[uci] == 0 for uci in lost_answers)
    assert "OK" in run_cli(config, "journal", "verify").stdout
    # The figures for docs/reliability.md (shown with pytest -s).
    print(f"\n{len(verified)} units verified, each registered once; per fault:")
    print(f"  down       {waiting:3} units tried and refused a connection")
    for fault in (*FAULTS, "healthy"):
        units = {s.uci for s in proxy.seen if s.mode == fault}
        print(f"  {fault:8} {proxy.count(fault):3} requests  {len(units):3} units")
    print(f"  registry acted, station heard no answer: {len(lost_answers)} units")
