"""The station's parts as real processes for end-to-end tests: `factory serve` and the
reference registry (`factory registry serve`), each yielded once it listens."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import FACTORY, ROOT

LISTENING = re.compile(r"listening on http://([\d.]+):(\d+)/")


@asynccontextmanager
async def _listening(*args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """`factory ARGS` as a process; yields it and the base URL its log says it listens on."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        *FACTORY, *args, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    log: list[str] = []
    drain: asyncio.Task[bytes] | None = None
    try:
        async with asyncio.timeout(20):
            while True:
                line = (await proc.stderr.readline()).decode()
                if not line:
                    raise AssertionError(f"{args[0]} exited before listening: {''.join(log)}")
                log.append(line)
                if match := LISTENING.search(line):
                    break
        drain = asyncio.create_task(proc.stderr.read())
        yield proc, f"http://{match[1]}:{match[2]}"
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        if drain is not None:
            await drain


@asynccontextmanager
async def station_process(config: Path) -> AsyncIterator[tuple[asyncio.subprocess.Process,
                                                                 str]]:
    """`factory serve` as a real process; yields it and its base URL once it listens."""
    async with _listening("-c", str(config), "serve", "--no-access-log") as running:
        yield running


@dataclass
class RegistryProcess:
    url: str  # no trailing slash
    token: str  # a product token, as a station holds
    db: Path


@asynccontextmanager
async def registry_process(folder: Path) -> AsyncIterator[RegistryProcess]:
    """The reference registry (`factory registry serve`) on 127.0.0.1 with a product token."""
    db = folder / "registry.sqlite"
    made = await asyncio.create_subprocess_exec(
        *FACTORY, "registry", "token", "--db", str(db), "--kind", "product", "--name",
        "line-1", env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE)
    out, _ = await made.communicate()
    assert made.returncode == 0
    async with _listening("registry", "serve", "--db", str(db), "--listen",
                          "127.0.0.1:0") as (_, url):
        yield RegistryProcess(url, out.decode().strip(), db)


@asynccontextmanager
async def arriving_units(root: Path, link: Path, every: float,
                         driver: str = "framed") -> AsyncIterator[asyncio.subprocess.Process]:
    """`factory sim-unit --arrive-every`: a new simulated unit (new MAC, empty storage) on
    `link` every `every` seconds, unpaced, until the block ends."""
    proc = await asyncio.create_subprocess_exec(
        *FACTORY, "sim-unit", "--driver", driver, "--root", str(root), "--link", str(link),
        "--baud", "0", "--arrive-every", str(every),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def until(check: Callable[[], bool | Awaitable[bool]], seconds: float,
                what: str) -> None:
    """Poll `check` (plain or async) until it holds; fail saying `what` did not happen."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                done = check()
                if done is True or (done is not False and await done):
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not within {seconds} s: {what}") from None
