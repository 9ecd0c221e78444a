"""Benchmark the fleet: issuance on a PostgreSQL journal against SQLite in the same run; events
shipped per second from one station's SQLite journal to the fleet center, from `--stations` at
once against one, and the time to catch up `--catchup` queued events.

Run it from the repository root with the project's virtualenv::

    .venv/bin/python scripts/bench_fleet.py                       # a private PostgreSQL
    .venv/bin/python scripts/bench_fleet.py --url postgresql://user@host/db --requests 20000
    .venv/bin/python scripts/bench_fleet.py --only issuance       # only PG vs SQLite issuance

Without --url it starts a private PostgreSQL like the tests do (tests/postgres.py: Debian's
`postgresql`, fsync and synchronous_commit on). Issuance is `--concurrency` callers each
issuing one UCI at a time through the journal (no HTTP), so the numbers are the journal's:
requests per second and the transactions group commit needed for them. Each station ships
from a process of its own, as stations do; `--stations` journals are made first: the one
station's figure is the first journal's, "at once" is the others' together.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from factory.fleet import center
from factory.fleet.shipper import PAGE, Shipper
from factory.journal import open_journal
from factory.journal.records import IssueRequest
from tests.postgres import PrivatePostgres

PRODUCT = "01H4R15D3Q7K9M2X8Z5V6W4T0N"


async def issuance(location: str | Path, requests: int, concurrency: int,
                   anchor: Path | None = None) -> tuple[float, int]:
    journal = await open_journal(location, "bench", anchor=anchor)
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


async def build(path: Path, station: str, events: int) -> None:
    """A station's journal holding `events` issued events (not timed)."""
    journal = await open_journal(path, station)
    try:
        for start in range(0, events, 10_000):
            await journal.issue(IssueRequest(product=PRODUCT, actor="bench",
                                             count=min(10_000, events - start)))
    finally:
        await journal.close()


async def _ship(path: Path, station: str, url: str, page: int) -> tuple[int, float, float]:
    journal = await open_journal(path, station)
    try:
        shipper = Shipper(journal, station, url, page=page)
        begin = time.time()
        shipped = await shipper.ship_all()
        end = time.time()
        await shipper.close()
    finally:
        await journal.close()
    return shipped, begin, end


def ship_file(path: Path, station: str, url: str, page: int) -> tuple[int, float, float]:
    """Ship one station's journal in a process of its own (a station is one): how many
    events, and when it began and ended (wall clock, comparable across processes)."""
    return asyncio.run(_ship(path, station, url, page))


def shipping(journals: list[tuple[Path, str]], url: str, page: int) -> tuple[int, float]:
    """Ship every journal at once, each from its own process; (events, seconds) overall."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(journals), mp_context=context) as pool:
        results = list(pool.map(ship_file, *zip(*journals, strict=True),
                                [url] * len(journals), [page] * len(journals)))
    shipped = sum(r[0] for r in results)
    return shipped, max(r[2] for r in results) - min(r[1] for r in results)


async def without_at_index(url: str) -> str:
    """A center like `url`'s but without the `at` index of the fleet page: its name taken by a
    sequence, so the schema's CREATE INDEX IF NOT EXISTS skips it when the shipper connects."""
    conn = await center.connect(url)
    try:
        await conn.execute("DROP INDEX fleet.fleet_events_at")
        await conn.execute("CREATE SEQUENCE fleet.fleet_events_at")
    finally:
        await conn.close()
    return url


async def index_cost(journal: tuple[Path, str], new_url: Callable[[], str], page: int,
                     rounds: int) -> None:
    """What the `at` index costs shipping: one journal shipped into a fresh center with it and
    one without it, each round, the median ratio of the rates."""
    ratios = []
    for n in range(rounds):
        bare, indexed = await without_at_index(new_url()), new_url()
        if n % 2:  # in turn first: neither center always ships into a warmer server
            shipped, indexed_time = shipping([journal], indexed, page)
            shipped, bare_time = shipping([journal], bare, page)
        else:
            shipped, bare_time = shipping([journal], bare, page)
            shipped, indexed_time = shipping([journal], indexed, page)
        ratios.append(bare_time / indexed_time)
        print(f"  without the at index {shipped / bare_time:9.0f} events/s, with it "
              f"{shipped / indexed_time:9.0f} events/s, ratio {ratios[-1]:.3f}")
    print(f"  with / without the at index, median: {statistics.median(ratios):.3f} "
          "(target >= 0.95)")


async def run(args: argparse.Namespace, url: str, new_url: Callable[[], str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.only in (None, "issuance") and args.rounds:  # --rounds 0: none
            await issuance_rounds(args, folder, new_url)
        if args.only in (None, "shipping"):
            await shipping_runs(args, folder, url, new_url)


async def issuance_rounds(args: argparse.Namespace, folder: Path,
                          new_url: Callable[[], str]) -> None:
    """Issuance on PostgreSQL against SQLite. Rounds alternate (a fresh journal of each kind
    every round) and the median ratio is reported: two shared cores make any one round noisy."""
    print(f"issuance, {args.requests} requests, {args.concurrency} callers, "
          f"{args.rounds} rounds:")
    ratios = []
    for n in range(args.rounds):
        sqlite_rate, sqlite_commits = await issuance(folder / f"issue{n}.sqlite",
                                                     args.requests, args.concurrency)
        # With its local anchor, as a station runs (SQLite writes its own too).
        pg_rate, pg_commits = await issuance(new_url(), args.requests, args.concurrency,
                                             folder / f"issue{n}.postgresql.anchor")
        ratios.append(pg_rate / sqlite_rate)
        print(f"  sqlite {sqlite_rate:7.0f} req/s ({sqlite_commits} commits)  postgresql "
              f"{pg_rate:7.0f} req/s ({pg_commits} commits)  ratio {ratios[-1]:.2f}")
    print(f"  postgresql / sqlite, median: {statistics.median(ratios):.2f} (target >= 0.8)")


async def shipping_runs(args: argparse.Namespace, folder: Path, url: str,
                        new_url: Callable[[], str]) -> None:
    """Events/s shipped from one station, from many at once, and the catch-up time."""
    stations = [(folder / f"ship{n}.sqlite", f"bench-{n}") for n in range(args.stations + 1)]
    for path, station in stations:
        await build(path, station, args.events)
    print(f"shipping, {args.events} events a station, pages of {args.page}:")
    one, one_time = shipping(stations[:1], url, args.page)
    print(f"  one station        {one / one_time:9.0f} events/s  (target >= 20,000)")
    if args.index_rounds and not args.url:  # needs a fresh database for each center
        await index_cost(stations[0], new_url, args.page, args.index_rounds)
    if args.stations:
        many, many_time = shipping(stations[1:], url, args.page)
        print(f"  {len(stations) - 1} stations at once {many / many_time:9.0f} events/s,"
              f" {(many / many_time) / (one / one_time):.1f}x one (target >= 6x)")
    if args.catchup:
        catchup = (folder / "catchup.sqlite", "bench-catchup")
        await build(*catchup, args.catchup)
        shipped, seconds = shipping([catchup], url, args.page)
        print(f"  catch-up of {shipped} queued events: {seconds:.1f} s (target < 60 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a PostgreSQL database to use (default: a private one)")
    # 20,000: shorter runs measure a fresh database's warm-up (catalog caches, statements
    # not yet prepared) more than its steady rate; 5,000 halved the PostgreSQL figure.
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5, help="issuance rounds (0: none)")
    parser.add_argument("--events", type=int, default=50_000, help="events a station ships")
    parser.add_argument("--stations", type=int, default=8, help="stations shipping at once")
    parser.add_argument("--catchup", type=int, default=1_000_000,
                        help="events queued for the catch-up (0: none)")
    parser.add_argument("--page", type=int, default=PAGE)
    parser.add_argument("--index-rounds", type=int, default=5,
                        help="rounds of shipping with and without the at index (0: none)")
    parser.add_argument("--only", choices=("issuance", "shipping"),
                        help="run only this part (default: both)")
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
