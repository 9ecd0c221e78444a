#!/usr/bin/env python3
"""Load and soak the whole station: a real `factory serve` (with the reference registry as
upstream) under API clients issuing UCIs, status-page viewers on the event stream and
fixtures provisioning simulated units that keep arriving, all at once.

    .venv/bin/python scripts/load.py          # 60 s, 16 clients, 50 viewers, 8 fixtures
    .venv/bin/python scripts/load.py --soak --duration 1800   # samples RSS and fds, verdict
    .venv/bin/python scripts/load.py --duration 5 --clients 2 --viewers 3 --fixtures 2 --json

Reports UCIs/s issued and their p50/p99 latency, units/min provisioned by the fixtures, SSE
events/s delivered and their lag, the station's peak RSS and open descriptors, and every
error; then checks that every UCI a client received is in the journal and the chain verifies.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from load_line import FACTORY, PRODUCT, Line, running_line
from load_report import fd_kinds, flatness, print_report, sample_process
from tqdm import tqdm

MAX_BATCH = 10_000  # factory.issuing.MAX_BATCH
COOKIE = "factory_status_token"  # factory.web.status_routes.COOKIE: what a browser's page sends


@dataclass
class Stats:
    """What the load saw, filled in by the tasks as they go."""

    ucis: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=lambda: {
        "single": [], "hardware_id": [], "batch": []})
    errors: Counter[str] = field(default_factory=Counter)
    viewer_events: list[int] = field(default_factory=list)
    viewer_connects: list[int] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    last_counts: dict[str, Any] = field(default_factory=dict)
    samples: list[dict[str, float]] = field(default_factory=list)
    end: float = 0.0  # loop time the load stops at (moved up by SIGINT or SIGTERM)


async def client(line: Line, number: int, stats: Stats, interval: float,
                 batch: int) -> None:
    """One API client: single UCIs, hardware ids (new ones, and each asked for again, which
    must give the same UCI back) and batches, one request at a time."""
    loop = asyncio.get_running_loop()
    headers = {"Authorization": f"Bearer {line.device_token}"}
    due = loop.time() + interval * number / max(1, 16)  # clients start spread out
    last_hw: tuple[str, str] | None = None
    n = 0
    async with aiohttp.ClientSession(headers=headers) as session:
        while loop.time() < stats.end:
            if interval:
                due = max(due + interval, loop.time() - interval)  # no burst after a stall
                await asyncio.sleep(max(0.0, due - loop.time()))
            n += 1
            body: dict[str, Any] = {"product": PRODUCT}
            kind = "single"
            if n % 5 == 0:
                body["count"], kind = batch, "batch"
            elif n % 3 == 0:
                kind = "hardware_id"
                if last_hw is not None and n % 2 == 0:
                    body["hardware_id"] = last_hw[0]  # again: must be the same UCI
                else:
                    body["hardware_id"] = f"LOAD-{number}-{n}"
            started = time.perf_counter()
            try:
                async with session.post(f"{line.url}/api/v1/ucis", json=body) as resp:
                    data = await resp.json(content_type=None)
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                stats.errors[f"issue: {type(exc).__name__}"] += 1
                await asyncio.sleep(0.1)
                continue
            stats.latencies[kind].append(time.perf_counter() - started)
            if status not in (200, 201):
                stats.errors[f"issue: HTTP {status}"] += 1
                continue
            got = data["ucis"] if kind == "batch" else [data["uci"]]
            if kind == "hardware_id" and last_hw is not None and \
                    body["hardware_id"] == last_hw[0]:
                if got[0] != last_hw[1] or status != 200:
                    stats.errors["issue: a hardware id got a second UCI"] += 1
                last_hw = None
                continue  # the same UCI again: counted once, when it was issued
            if kind == "hardware_id":
                last_hw = (body["hardware_id"], got[0])
            stats.ucis.extend(got)


async def viewer(line: Line, number: int, stats: Stats, reconnect: float) -> None:
    """One status page: reads the event stream until the end (or, with `reconnect`, drops
    and reopens it that often, as a screen that is switched off and on). Even viewers send
    the viewer token as a bearer token, odd ones as the page's cookie."""
    loop = asyncio.get_running_loop()
    auth = ({"Authorization": f"Bearer {line.viewer_token}"} if number % 2 == 0
            else {"Cookie": f"{COOKIE}={line.viewer_token}"})
    timeout = aiohttp.ClientTimeout(total=None, sock_read=60)
    async with aiohttp.ClientSession(headers=auth, timeout=timeout) as session:
        while loop.time() < stats.end:
            until = stats.end if not reconnect else min(stats.end, loop.time() + reconnect)
            stats.viewer_connects[number] += 1
            try:
                async with asyncio.timeout_at(until):
                    async with session.get(f"{line.url}/api/v1/status/events") as resp:
                        if resp.status != 200:
                            stats.errors[f"events: HTTP {resp.status}"] += 1
                            await asyncio.sleep(1)
                            continue
                        async for raw in resp.content:
                            if raw.startswith(b"data: "):
                                _event(raw[6:], number, stats)
                        stats.errors["events: stream ended by the station"] += 1
            except TimeoutError:
                pass  # our own deadline: end of run, or time to reconnect
            except (aiohttp.ClientError, ValueError) as exc:
                stats.errors[f"events: {type(exc).__name__}"] += 1
                await asyncio.sleep(0.5)


def _event(data: bytes, number: int, stats: Stats) -> None:
    snapshot = json.loads(data)
    stats.viewer_events[number] += 1
    made = datetime.fromisoformat(snapshot["now"].replace("Z", "+00:00")).timestamp()
    stats.lags.append(max(0.0, time.time() - made))  # built -> read by this page
    if number == 0:
        stats.last_counts = snapshot["counts"]["today"]


async def watch(line: Line, stats: Stats, start: float, every: float,
                periodic_lines: bool) -> None:
    """Samples the station process every `every` seconds; shows progress meanwhile."""
    loop = asyncio.get_running_loop()
    pid = line.station.pid
    total = round(stats.end - start)
    bar = tqdm(total=total, unit="s", disable=not sys.stderr.isatty(),
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} s {postfix}")
    next_sample = start
    with bar:
        while (now := loop.time()) < stats.end + 0.5:
            if now >= next_sample:
                sample = sample_process(pid)
                sample.update(t=round(now - start, 1), ucis=len(stats.ucis),
                              events=sum(stats.viewer_events),
                              labelled=stats.last_counts.get("labelled", 0))
                stats.samples.append(sample)
                next_sample += every
                if periodic_lines and not sys.stderr.isatty():
                    print(f"t={sample['t']:>6.0f}s rss={sample['rss_kib'] / 1024:7.1f} MiB "
                          f"fds={sample['fds']:4.0f} ucis={len(stats.ucis):>9,} "
                          f"events={sample['events']:>8,.0f} "
                          f"labelled(today)={sample['labelled']}", file=sys.stderr,
                          flush=True)
            bar.n = min(total, round(now - start))
            bar.set_postfix_str(f"{len(stats.ucis):,} UCIs, {sum(stats.viewer_events):,} "
                                f"events, errors {sum(stats.errors.values())}")
            await asyncio.sleep(min(1.0, max(0.05, stats.end + 0.5 - now)))


async def prefill(line: Line, count: int) -> list[str]:
    """Issue `count` UCIs in big batches before the clock starts, so the journal is already
    larger than the writer's page cache (64 MiB, about 170,000 units): a soak then sees the
    station's memory, not SQLite's cache filling up to its bound."""
    headers = {"Authorization": f"Bearer {line.device_token}"}
    got: list[str] = []
    async with aiohttp.ClientSession(headers=headers) as session:
        while len(got) < count:
            body = {"product": PRODUCT, "count": min(MAX_BATCH, count - len(got))}
            async with session.post(f"{line.url}/api/v1/ucis", json=body) as resp:
                resp.raise_for_status()
                got += (await resp.json())["ucis"]
    return got


async def first_look(line: Line) -> None:
    """One status snapshot, as a page opened before the load would ask for."""
    headers = {"Authorization": f"Bearer {line.viewer_token}"}
    async with aiohttp.ClientSession(headers=headers) as session, \
            session.get(f"{line.url}/api/v1/status") as resp:
        resp.raise_for_status()
        await resp.read()


def journal_facts(line: Line, received: list[str], since: str, until: str) -> dict[str, Any]:
    """What the journal says after the run (read once the station has stopped)."""
    with contextlib.closing(sqlite3.connect(f"file:{line.journal}?mode=ro", uri=True)) as db:
        in_journal = {row[0] for row in db.execute("SELECT uci FROM units")}
        labelled = dict(db.execute(
            "SELECT actor, count(*) FROM events WHERE kind = 'labelled' "
            "AND at >= ? AND at < ? GROUP BY actor", (since, until)).fetchall())
        labelled_all = dict(db.execute(
            "SELECT actor, count(*) FROM events WHERE kind = 'labelled' GROUP BY actor"))
        registered = db.execute(
            "SELECT count(*) FROM events WHERE kind = 'registered'").fetchone()[0]
        outbox = dict(db.execute("SELECT state, count(*) FROM outbox GROUP BY state"))
        failed = db.execute("SELECT count(*) FROM events WHERE kind IN "
                            "('failed', 'fixture_failed')").fetchone()[0]
    missing = set(received) - in_journal
    return {
        "missing_in_journal": len(missing),
        "duplicates_received": len(received) - len(set(received)),
        "labelled_in_window": {f: labelled.get(f"fixture:{f}", 0) for f in line.fixtures},
        "labelled_total": {f: labelled_all.get(f"fixture:{f}", 0) for f in line.fixtures},
        "registered": registered,
        "outbox": outbox,
        "unit_failures": failed,
        "label_pdfs": len(list(line.labels.glob("*.pdf"))) if line.labels.is_dir() else 0,
    }


def journal_time(moment: float) -> str:
    """As the journal writes `at` (UTC, milliseconds, Z)."""
    return datetime.fromtimestamp(moment, UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    stats = Stats(viewer_events=[0] * args.viewers, viewer_connects=[0] * args.viewers)
    loop = asyncio.get_running_loop()
    async with running_line(folder, args.fixtures, args.arrive_every,
                            not args.no_registry) as line:
        await asyncio.sleep(args.warmup)  # fixtures open their ports, first units arrive
        prefilled: list[str] = []
        if args.prefill:
            print(f"prefilling the journal with {args.prefill:,} UCIs ...", file=sys.stderr,
                  flush=True)
            prefilled = await prefill(line, args.prefill)
        await first_look(line)  # what a first page opens (a reader) is not counted as growth
        before = sample_process(line.station.pid)
        before_kinds = fd_kinds(line.station.pid, line.port)
        own_cpu = _own_cpu()
        start = loop.time()
        wall_start = time.time()
        stats.end = start + args.duration
        interval = args.clients / args.rate if args.rate else 0.0
        tasks = [asyncio.create_task(client(line, i, stats, interval, args.batch))
                 for i in range(args.clients)]
        viewers = [asyncio.create_task(viewer(line, i, stats, args.reconnect))
                   for i in range(args.viewers)]

        def stop_early() -> None:  # Ctrl-C or kill: end the run now, still report it
            stats.end = min(stats.end, loop.time())
            for task in viewers:
                task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop_early)
        await watch(line, stats, start, args.sample_every, args.soak)
        await asyncio.gather(*tasks, *viewers, return_exceptions=True)
        elapsed = loop.time() - start
        wall_end = time.time()
        await asyncio.sleep(args.settle)  # the station notices the closed connections
        after = sample_process(line.station.pid)
        after_kinds = fd_kinds(line.station.pid, line.port)
    exit_code = line.station.returncode
    verify = await asyncio.to_thread(_verify, line)
    facts = journal_facts(line, stats.ucis + prefilled, journal_time(wall_start),
                          journal_time(wall_end))
    if args.folder:
        (folder / "received.txt").write_text("".join(u + "\n" for u in stats.ucis))
    all_latencies = [x for xs in stats.latencies.values() for x in xs]
    provisioned = sum(facts["labelled_in_window"].values())
    series = stats.samples
    return {
        "command": " ".join(sys.argv),
        "duration_s": round(elapsed, 1),
        "clients": args.clients, "viewers": args.viewers, "fixtures": args.fixtures,
        "arrive_every_s": args.arrive_every, "rate_limit_req_s": args.rate or None,
        "registry": not args.no_registry, "cpus": os.cpu_count(),
        "prefilled_ucis": args.prefill,
        "issue": {
            "requests": len(all_latencies), "ucis": len(stats.ucis),
            "ucis_per_s": len(stats.ucis) / elapsed,
            "requests_per_s": len(all_latencies) / elapsed,
            "p50_ms": _ms(percentile(all_latencies, 0.50)),
            "p99_ms": _ms(percentile(all_latencies, 0.99)),
            "by_kind": {k: {"requests": len(v), "p50_ms": _ms(percentile(v, 0.5)),
                            "p99_ms": _ms(percentile(v, 0.99))}
                        for k, v in stats.latencies.items()},
        },
        "events": {
            "delivered": sum(stats.viewer_events),
            "per_s": sum(stats.viewer_events) / elapsed,
            "per_viewer_min": min(stats.viewer_events, default=0),
            "per_viewer_max": max(stats.viewer_events, default=0),
            "per_viewer": stats.viewer_events,
            "connects": sum(stats.viewer_connects),
            "lag_p50_ms": _ms(percentile(stats.lags, 0.5)),
            "lag_p99_ms": _ms(percentile(stats.lags, 0.99)),
        },
        "fixtures_result": {
            "provisioned": provisioned,
            "units_per_min": provisioned / elapsed * 60,
            **facts,
        },
        "station": {
            "before": {**before, "fd_kinds": before_kinds},
            "after": {**after, "fd_kinds": after_kinds},
            "peak_rss_kib": max([s["hwm_kib"] for s in series] + [after["hwm_kib"]]),
            "max_fds": max(s["fds"] for s in [*series, after]),
            "cpu_s": after["cpu_s"] - before["cpu_s"],
            "load_generator_cpu_s": _own_cpu() - own_cpu,
            "exit_code": exit_code,
            "journal_verify": verify,
        },
        "errors": dict(stats.errors),
        "series": series,
        "flatness": flatness(series, before, after, before_kinds, after_kinds,
                             args.fixtures),
    }


def _own_cpu() -> float:
    """CPU seconds this process (the clients and viewers) has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def _verify(line: Line) -> str:
    import subprocess

    from load_line import ENV
    done = subprocess.run([*FACTORY, "-c", str(line.config), "journal", "verify"],
                          capture_output=True, text=True, env=ENV, check=False)
    return (done.stdout or done.stderr).strip().splitlines()[-1] if done.returncode == 0 \
        else f"FAILED ({done.returncode}): {(done.stdout + done.stderr).strip()}"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=60, help="seconds of load (default 60)")
    p.add_argument("--clients", type=int, default=16, help="concurrent API clients")
    p.add_argument("--viewers", type=int, default=50, help="status pages on the event stream")
    p.add_argument("--fixtures", type=int, default=8, help="fixtures, each with units arriving")
    p.add_argument("--arrive-every", type=float, default=3.0,
                   help="seconds each simulated unit stays before the next arrives")
    p.add_argument("--batch", type=int, default=20, help="UCIs per batch request")
    p.add_argument("--rate", type=float, default=None,
                   help="requests/s across all clients (default: as fast as they can; "
                        "--soak: 25)")
    p.add_argument("--reconnect", type=float, default=None,
                   help="viewers reopen the stream this often (default: never; --soak: 60)")
    p.add_argument("--prefill", type=int, default=None,
                   help="UCIs issued before the clock starts (default 0; --soak: 250000, "
                        "more than the writer's 64 MiB page cache holds)")
    p.add_argument("--no-registry", action="store_true", help="no upstream, no outbox")
    p.add_argument("--soak", action="store_true",
                   help="sample RSS and fds through the run and judge whether they stay flat")
    p.add_argument("--sample-every", type=float, default=None,
                   help="seconds between samples (default 5; --soak: 30)")
    p.add_argument("--warmup", type=float, default=2.0, help=argparse.SUPPRESS)
    p.add_argument("--settle", type=float, default=3.0, help=argparse.SUPPRESS)
    p.add_argument("--folder", type=Path,
                   help="keep the line's files here (journal, logs, labels, received.txt)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    if args.prefill is None:
        args.prefill = 250_000 if args.soak else 0
    if args.rate is None:
        args.rate = 25.0 if args.soak else 0.0
    if args.reconnect is None:
        args.reconnect = 60.0 if args.soak else 0.0
    if args.sample_every is None:
        args.sample_every = 30.0 if args.soak else 5.0
    return args


async def main() -> int:
    args = parse()
    with contextlib.ExitStack() as stack:
        if args.folder:
            args.folder.mkdir(parents=True, exist_ok=True)
            folder = args.folder.resolve()
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="load-")))
        result = await run(args, folder)
        if args.folder:
            (folder / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result, soak=args.soak)
    ok = (not result["errors"] and result["station"]["exit_code"] == 0
          and result["fixtures_result"]["missing_in_journal"] == 0
          and not result["station"]["journal_verify"].startswith("FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
