"""Long schemathesis runs against a real `factory serve` and `factory registry serve`.

    .venv/bin/python scripts/fuzz_api.py [--examples 500] [--seed 7] [--only station|registry]

Each operation gets EXAMPLES positive and EXAMPLES negative cases; prints a table per API
(operation x examples x failures x statuses) and each failure's report; exits 1 on any.
tests/test_api_fuzz.py runs the same checks with 30 cases in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.api_fuzz import Outcome, fuzz, table  # noqa: E402
from tests.conftest import run_cli, write_config  # noqa: E402
from tests.processes import registry_process, station_process  # noqa: E402
from tests.test_api_fuzz import REGISTRY_DOC, station_schema  # noqa: E402


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

    schema = schemathesis.openapi.from_path(REGISTRY_DOC)
    async with registry_process(folder) as registry:
        account = run_cli(None, "registry", "token", "--db", str(registry.db), "--kind",
                          "account", "--name", "fuzz").stdout.strip()
        return await asyncio.to_thread(
            fuzz, schema, registry.url,
            lambda op: account if op.path.startswith("/v1/claims") else registry.token,
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
