"""The simulated ThingsBoard's settings and typed app keys, apart from the app factory so the
handlers import them without a circle."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from factory.testbed.clouds.thingsboard.auth import TokenSettings
from factory.testbed.clouds.thingsboard.store import Store


@dataclass(frozen=True)
class Settings:
    """What `factory sim-cloud thingsboard` is told; building it does no I/O."""

    db: Path
    host: str = "127.0.0.1"
    port: int = 8080
    tokens: TokenSettings = field(default_factory=TokenSettings)
    # ThingsBoard's security.claim.allowClaimingByDefault (true in its thingsboard.yml).
    allow_claiming_by_default: bool = True


SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
