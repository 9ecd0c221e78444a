"""The simulated RainMaker claiming service on 127.0.0.1 for tests: a user with a quota, an
access token for them, and the fault switch at hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from factory.testbed.clouds.rainmaker.app import FAULTS, Faults, Settings, make_app
from factory.testbed.clouds.rainmaker.store import Store

EMAIL, PASSWORD = "maker@example.com", "Passw0rd!"


@dataclass
class Cloud:
    url: str  # the claiming base URL, ending in /
    token: str  # the user's access token
    user_id: str
    faults: Faults
    db: Path

    async def nodes(self) -> dict[str, str]:
        """MAC → node id of the user's nodes, as the service keeps them."""
        store = await Store.open(self.db)
        try:
            return await store.nodes(self.user_id)
        finally:
            await store.close()


@asynccontextmanager
async def rainmaker_cloud(root: Path, quota: int = 5) -> AsyncIterator[Cloud]:
    root.mkdir(parents=True, exist_ok=True)
    db = root / "rainmaker.db"
    store = await Store.open(db)
    try:
        user = await store.add_user(EMAIL, PASSWORD, quota)
        token = (await store.new_tokens(user.id, 3600)).accesstoken
    finally:
        await store.close()
    app = make_app(Settings(db=db))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Cloud(f"http://127.0.0.1:{port}/", token, user.id, app[FAULTS], db)
    finally:
        await runner.cleanup()
