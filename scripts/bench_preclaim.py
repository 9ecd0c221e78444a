#!/usr/bin/env python3
"""Batch pre-claim benchmark: `factory preclaim`'s run (keys on every core, requests in
parallel through the journal's outbox, bundles) against the reference registry on this same
machine, compared with a plain sequential loop in the same run (key, register, pre-claim,
write the bundle, one unit after another, no journal). Also RSA-2048 key generation with
`cryptography` against OpenSSL's own command line on the same machine.

    .venv/bin/python scripts/bench_preclaim.py                # 10,000 units
    .venv/bin/python scripts/bench_preclaim.py --units 2000 --baseline-units 200

Targets (issue 5): 10,000 units in < 20 s, registry included, and >= 5x the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from factory import certs
from factory.batch.preclaim import (
    PreclaimRun,
    bundle_path,
    key_path,
    make_bundle,
)
from factory.config import load
from factory.files import write_private
from factory.journal import open_journal
from factory.upstream.kinds import upstream_client
from factory.upstream.outbox import OutboxWorker

PRODUCT = "01H4R15D3Q7K9M2X8Z5V6W4T0P"
ACCOUNT = "acme-retail"
FACTORY = [sys.executable, "-m", "factory.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_token(db: Path, kind: str, name: str) -> str:
    return subprocess.run([*FACTORY, "registry", "token", "--db", str(db), "--kind", kind,
                           "--name", name], capture_output=True, text=True,
                          check=True).stdout


@contextlib.asynccontextmanager
async def registry(folder: Path) -> AsyncIterator[tuple[str, str]]:
    """`factory registry serve` as its own process; yields its URL and a product token."""
    db = folder / "registry.db"
    token = (await asyncio.to_thread(make_token, db, "product", "bench")).strip()
    await asyncio.to_thread(make_token, db, "account", ACCOUNT)
    port = free_port()
    server = await asyncio.create_subprocess_exec(
        *FACTORY, "registry", "serve", "--db", str(db), "--listen", f"127.0.0.1:{port}",
        stderr=asyncio.subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{url}v1/devices/X") as resp:
                        if resp.status:
                            break
                await asyncio.sleep(0.1)
        yield url, token
    finally:
        server.terminate()
        await server.wait()


async def baseline(url: str, token: str, count: int, out: Path) -> float:
    """One unit after another: key and CSR, register, pre-claim, bundle. Units per second."""
    headers = {"Authorization": f"Bearer {token}"}
    started = time.perf_counter()
    async with aiohttp.ClientSession(headers=headers) as session:
        for i in range(count):
            uci = f"{i:016d}".translate(str.maketrans("0123456789", "ABCDEFGHJK"))
            made = certs.key_and_csr(uci)
            body = {"id": uci, "product": PRODUCT, "hardware_id": "", "model": "HB-2",
                    "name": "Acme Hub", "created": "2026-11-23T00:00:00Z"}
            async with session.post(f"{url}v1/devices", json=body) as resp:
                assert resp.status in (200, 201), await resp.text()
            async with session.post(f"{url}v1/devices/{uci}/preclaim",
                                    json={"account": ACCOUNT, "csr": made.csr_pem}) as resp:
                assert resp.status in (200, 201), await resp.text()
                answer = await resp.json()
            write_private(key_path(out, uci), made.key_pem)
            granted = {"account": ACCOUNT, "endpoint": answer["endpoint"],
                       "certificate": answer["certificate"], "ca_chain": answer["ca_chain"]}
            write_private(bundle_path(out, uci), make_bundle(uci, made.key_pem.decode(),
                                                             granted))
    return count / (time.perf_counter() - started)


async def batch(folder: Path, url: str, token: str, count: int,
                concurrency: int) -> tuple[float, int]:
    """The `factory preclaim --count` run, timed from issuing to the last bundle."""
    (folder / "registry.token").write_text(token)
    (folder / "station.toml").write_text(f"""
[station]
id = "bench"
journal = "journal.sqlite"
[[products]]
id = "{PRODUCT}"
name = "Acme Hub"
model = "HB-2"
claim = "pre"
account = "{ACCOUNT}"
[upstream]
kind = "http"
url = "{url}"
token_file = "registry.token"
""")
    config = load(folder / "station.toml")
    product = config.product(PRODUCT)
    assert product is not None
    async with contextlib.AsyncExitStack() as stack:
        journal = await open_journal(config.journal, config.station_id)
        stack.push_async_callback(journal.close)
        started = time.perf_counter()
        run = PreclaimRun(journal, product, ACCOUNT, folder / "run", actor="bench",
                          progress=sys.stderr.isatty())
        ucis = await run.units(count)
        worker = OutboxWorker(journal, await upstream_client(config, stack),
                              concurrency=concurrency)
        result = await run.run(ucis, worker)
        elapsed = time.perf_counter() - started
    return elapsed, result.preclaimed


def rsa_rates(samples: int) -> tuple[float, str]:
    """RSA-2048 keys/s with `cryptography` (one core), and what OpenSSL's CLI manages."""
    started = time.perf_counter()
    for _ in range(samples):
        certs.new_key("rsa-2048")
    ours = samples / (time.perf_counter() - started)
    started = time.perf_counter()
    for _ in range(samples):
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-out", os.devnull], check=True,
                       capture_output=True)
    cli = samples / (time.perf_counter() - started)
    speed = subprocess.run(["openssl", "speed", "-seconds", "2", "rsa2048"],
                           capture_output=True, text=True, check=False).stdout
    line = next((x for x in speed.splitlines() if re.match(r"^rsa\s+2048", x)), "")
    return ours, (f"openssl genpkey (new process per key) {cli:.1f} keys/s; "
                  f"openssl speed rsa2048: {' '.join(line.split())}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=10_000)
    parser.add_argument("--baseline-units", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rsa-samples", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-preclaim-") as tmp:
        folder = Path(tmp)
        async with registry(folder) as (url, token):
            base = await baseline(url, token, args.baseline_units, folder / "baseline")
            print(f"baseline, sequential: {args.baseline_units} units, {base:.0f} units/s "
                  f"(10,000 would take {10_000 / base:.0f} s)")
        (folder / "batch").mkdir()
        async with registry(folder / "batch") as (url, token):
            elapsed, done = await batch(folder / "batch", url, token, args.units,
                                        args.concurrency)
        rate = done / elapsed
        print(f"factory preclaim: {done} of {args.units} units pre-claimed in {elapsed:.1f} s "
              f"= {rate:.0f} units/s (target: 10,000 in < 20 s)")
        print(f"ratio to the sequential baseline: {rate / base:.1f}x (target >= 5x)")
    ours, openssl = rsa_rates(args.rsa_samples)
    print(f"RSA-2048 key generation, cryptography, one core: {ours:.1f} keys/s; {openssl}")


if __name__ == "__main__":  # the key processes are spawned: they import this module
    asyncio.run(main())
