"""Long schemathesis runs against a real `factory serve` and `factory registry serve`.

    .venv/bin/python scripts/fuzz_api.py [--examples 500] [--seed 7] [--only station|registry]

Each operation gets EXAMPLES positive and EXAMPLES negative cases; prints a table per API
(operation x examples x failures x statuses) and each failure's report; exits 1 on any.
tests/test_api_fuzz.py runs the same checks with 30 cases in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.api_fuzz import Outcome, fuzz, table  # noqa: E402
from tests.conftest import FACTORY, run_cli, write_config  # noqa: E402
from tests.test_api_fuzz import REGISTRY_DOC, station_schema  # noqa: E402
from tests.test_durability import station_process  # noqa: E402

REGISTRY_LISTENING = re.compile(r"registry listening on (http://[\d.]+:\d+)/")


@asynccontextmanager
async def registry_process(db: Path) -> AsyncIterator[str]:
    """`factory registry serve` on a free port; yields its base URL once it listens."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        *FACTORY, "registry", "serve", "--db", str(db), "--listen", "127.0.0.1:0", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    try:
        async with asyncio.timeout(20):
            while not (match := REGISTRY_LISTENING.search(
                    line := (await proc.stderr.readline()).decode())):
                if not line:
                    raise RuntimeError("the registry exited before listening")
        drain = asyncio.create_task(proc.stderr.read())
        yield match[1]
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
    await drain


async def fuzz_station(folder: Path, examples: int, seed: int) -> list[Outcome]:
    config = write_config(folder)
    token = run_cli(config, "token", "new", "--role", "operator", "--name", "fuzz").stdout
    from factory.config import load

    schema = station_schema([p.id for p in load(config).products])
    async with station_process(config) as (_, url):
        return await asyncio.to_thread(fuzz, schema, url, lambda _: token.strip(),
                                       examples=examples, seed=seed)


async def fuzz_registry(folder: Path, examples: int, seed: int) -> list[Outcome]:
    import schemathesis

    db = folder / "registry.db"
    tokens = {kind: run_cli(None, "registry", "token", "--db", str(db), "--kind", kind,
                            "--name", f"fuzz-{kind}").stdout.strip()
              for kind in ("product", "account")}
    schema = schemathesis.openapi.from_path(REGISTRY_DOC)
    async with registry_process(db) as url:
        return await asyncio.to_thread(
            fuzz, schema, url,
            lambda op: tokens["account" if op.path.startswith("/v1/claims") else "product"],
            examples=examples, seed=seed)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=500,
                        help="cases per operation and mode (default %(default)s)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", choices=("station", "registry"))
    args = parser.parse_args()
    failed = 0
    for name, run in (("station", fuzz_station), ("registry", fuzz_registry)):
        if args.only not in (None, name):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            started = time.monotonic()
            outcomes = await run(Path(tmp), args.examples, args.seed)
            took = time.monotonic() - started
        print(f"\n== {name}: {args.examples} cases per operation and mode, seed {args.seed}, "
              f"{took:.0f} s")
        print(table(outcomes))
        for outcome in outcomes:
            for report in outcome.failures.values():
                failed += 1
                print(f"\n-- {outcome.operation}\n{report}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
