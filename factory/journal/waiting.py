"""Waiting on the journal without polling it: look again only after a commit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from factory.journal.interface import Changes

T = TypeVar("T")


async def wait_for(journal: Changes, check: Callable[[], Awaitable[T | None]],
                   timeout: float) -> T | None:
    """`check()` now and after each write the journal commits, until it returns something;
    None once `timeout` seconds have passed without."""
    changed = asyncio.Event()
    stop = journal.on_change(changed.set)  # before the first look, so no commit slips by
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            changed.clear()
            found = await check()
            if found is not None:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                # One last look: another process's writes on the same journal (a second
                # station, the CLI) notify no one here.
                continue
    finally:
        stop()
