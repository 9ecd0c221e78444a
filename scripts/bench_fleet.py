"""Benchmark the fleet: issuance on a PostgreSQL journal against SQLite in the same run, and
events shipped per second from a SQLite journal to the fleet center.

Run it from the repository root with the project's virtualenv::

    .venv/bin/python scripts/bench_fleet.py                       # a private PostgreSQL
    .venv/bin/python scripts/bench_fleet.py --url postgresql://user@host/db --requests 20000

Without --url it starts a private PostgreSQL like the tests do (tests/postgres.py: Debian's
`postgresql`, fsync and synchronous_commit on). Issuance is `--concurrency` callers each
issuing one UCI at a time through the journal (no HTTP), so the numbers are the journal's:
requests per second and the transactions group commit needed for them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from factory.fleet.shipper import Shipper
from factory.journal import open_journal
from factory.journal.records import IssueRequest
from tests.postgres import PrivatePostgres

PRODUCT = "01H4R15D3Q7K9M2X8Z5V6W4T0N"


async def issuance(location: str | Path, requests: int, concurrency: int) -> tuple[float, int]:
    journal = await open_journal(location, "bench")
    left = requests

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await journal.issue(IssueRequest(product=PRODUCT, actor="bench"))

    try:
        start = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        return requests / (time.perf_counter() - start), journal.commits
    finally:
        await journal.close()


async def shipping(folder: Path, url: str, events: int, page: int) -> float:
    journal = await open_journal(folder / "ship.sqlite", "bench-ship")
    try:
        for start in range(0, events, 10_000):
            await journal.issue(IssueRequest(product=PRODUCT, actor="bench",
                                             count=min(10_000, events - start)))
        shipper = Shipper(journal, "bench-ship", url, page=page)
        begin = time.perf_counter()
        shipped = await shipper.ship_all()
        elapsed = time.perf_counter() - begin
        await shipper.close()
    finally:
        await journal.close()
    assert shipped == events, (shipped, events)
    return events / elapsed


async def run(args: argparse.Namespace, url: str, new_url: Callable[[], str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        # Rounds alternate (a fresh journal of each kind every round) and the median ratio is
        # reported: two shared cores make any one round noisy.
        print(f"issuance, {args.requests} requests, {args.concurrency} callers, "
              f"{args.rounds} rounds:")
        ratios = []
        for n in range(args.rounds):
            sqlite_rate, sqlite_commits = await issuance(folder / f"issue{n}.sqlite",
                                                         args.requests, args.concurrency)
            pg_rate, pg_commits = await issuance(new_url(), args.requests, args.concurrency)
            ratios.append(pg_rate / sqlite_rate)
            print(f"  sqlite {sqlite_rate:7.0f} req/s ({sqlite_commits} commits)  postgresql "
                  f"{pg_rate:7.0f} req/s ({pg_commits} commits)  ratio {ratios[-1]:.2f}")
        print(f"  postgresql / sqlite, median: {statistics.median(ratios):.2f} (target >= 0.8)")
        rate = await shipping(folder, url, args.events, args.page)
        print(f"shipping, {args.events} events, pages of {args.page}: {rate:.0f} events/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a PostgreSQL database to use (default: a private one)")
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--page", type=int, default=1000)
    args = parser.parse_args()
    if args.url:
        asyncio.run(run(args, args.url, lambda: args.url))
        return
    server = PrivatePostgres()
    server.start()
    try:
        asyncio.run(run(args, server.new_database(), server.new_database))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
