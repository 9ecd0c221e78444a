"""The registry app's typed keys and settings, apart from the app factory so handlers and app
import them without a circle (as the station's web/keys.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from factory.testbed.registry.ca import CertificateAuthority
from factory.testbed.registry.store import Store


@dataclass(frozen=True)
class Settings:
    """What `factory registry serve` is told; building it does no I/O."""

    db: Path
    host: str = "127.0.0.1"
    port: int = 8700
    endpoint: str = "mqtts://localhost:8883"
    poll_delay: int = 10

    @property
    def ca_key(self) -> Path:
        return self.db.with_name(self.db.name + ".ca-key.pem")

    @property
    def ca_cert(self) -> Path:
        return self.db.with_name(self.db.name + ".ca.pem")


SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
CA = web.AppKey("ca", CertificateAuthority)
