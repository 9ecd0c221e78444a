"""Kill PostgreSQL again and again under a mode-1 station's issuance: the long version of
tests/test_fleet_faults.py's test_postgres_killed_mid_transaction_loses_and_repeats_nothing.

Each cycle issues from `--callers` callers without pause, SIGKILLs the server (and every
backend) at a random batch's `journal.commit` failpoint, or at a random moment, restarts it on
the same data directory, issues on, and checks: every acknowledged UCI stored exactly once, no
gap in the chain (count = highest seq), `journal verify` passes. One private server for the
whole campaign (killed every cycle), one database per cycle.

    .venv/bin/python scripts/pg_kill_campaign.py --cycles 20 --seed 1
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psycopg

from factory import failpoints
from factory.journal import open_journal
from factory.journal.errors import JournalError
from factory.journal.records import IssueRequest
from tests.postgres import PrivatePostgres

PRODUCT = "01H4R15D3Q7K9M2X8Z5V6W4T0N"


async def cycle(server: PrivatePostgres, rng: random.Random, callers: int) -> tuple[int, int]:
    """One kill and restart; returns (UCIs acknowledged, requests refused meanwhile)."""
    url = server.new_database()
    journal = await open_journal(url, "campaign")
    at_commit = rng.random() < 0.5
    kill_at = rng.randint(2, 30)
    seen, killed = 0, asyncio.Event()
    real_hit = failpoints.hit

    def hit(name: str) -> None:
        nonlocal seen
        if at_commit and name == "journal.commit" and not killed.is_set():
            seen += 1
            if seen == kill_at:
                server.kill()
                killed.set()
        real_hit(name)

    failpoints.hit = hit
    acknowledged: list[str] = []
    refused = 0
    back = asyncio.Event()

    async def caller() -> None:
        nonlocal refused
        while not back.is_set() or len(acknowledged) < 300:
            try:
                acknowledged.extend((await journal.issue(
                    IssueRequest(product=PRODUCT, actor="campaign",
                                 count=rng.choice((1, 1, 3, 50))))).ucis)
            except JournalError:
                refused += 1
                await asyncio.sleep(0.02)

    try:
        tasks = [asyncio.create_task(caller()) for _ in range(callers)]
        if not at_commit:  # a random moment instead
            await asyncio.sleep(rng.uniform(0.05, 0.5))
            server.kill()
            killed.set()
        await killed.wait()
        await asyncio.sleep(0.2)
        await asyncio.to_thread(server.run)
        back.set()
        await asyncio.gather(*tasks)
        verify = await journal.verify()
    finally:
        failpoints.hit = real_hit
        await journal.close()
    with psycopg.connect(url) as db:
        stored = [row[0] for row in db.execute("SELECT uci FROM units")]
        row = db.execute("SELECT count(*), coalesce(max(seq), 0) FROM events").fetchone()
    count, top = row if row is not None else (0, 0)
    problems = []
    if not set(acknowledged) <= set(stored):
        problems.append(f"{len(set(acknowledged) - set(stored))} acknowledged UCIs lost")
    if len(stored) != len(set(stored)) or len(acknowledged) != len(set(acknowledged)):
        problems.append("a UCI twice")
    if (count, top) != (len(stored), len(stored)):
        problems.append(f"events {count}, highest seq {top}, units {len(stored)}: a gap")
    if not verify.ok:
        problems.append(f"verify: {verify}")
    if problems:
        raise SystemExit("; ".join(problems))
    return len(acknowledged), refused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--callers", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)  # each kill's refusals are expected
    rng = random.Random(args.seed)  # a reproducible campaign
    server = PrivatePostgres()
    server.start()
    total = refused_total = 0
    try:
        for n in range(args.cycles):
            acknowledged, refused = asyncio.run(cycle(server, rng, args.callers))
            total += acknowledged
            refused_total += refused
            print(f"cycle {n + 1}: {acknowledged} UCIs acknowledged, {refused} requests "
                  "refused while the server was away; all held")
    finally:
        server.stop()
    print(f"{args.cycles} kills: {total} UCIs acknowledged, none lost, none twice, no gap; "
          f"{refused_total} requests refused (never answered with UCIs)")


if __name__ == "__main__":
    main()
