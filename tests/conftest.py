"""Shared fixtures: a station config in a tmp dir, a real SQLite journal, a real HTTP server."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from factory.config import StationConfig, load
from factory.journal.records import Role
from factory.journal.sqlite import Journal
from factory.tokens import new_token, token_hash
from factory.web.app import make_app

PRODUCT = "01H4R15D3Q7K9M2X8Z5V6W4T0N"
OTHER_PRODUCT = "01H4R15D3Q7K9M2X8Z5V6W4T0P"
ROOT = Path(__file__).resolve().parent.parent
FACTORY = [sys.executable, "-m", "factory.cli"]

CONFIG_TEXT = f"""
[station]
id = "test-station"
listen = "127.0.0.1:0"
journal = "journal.sqlite"
max_body_bytes = 4096

[ioto]
networks = ["127.0.0.0/8", "::1/128"]

[[products]]
id = "{PRODUCT}"
name = "Acme Air Sensor"
model = "AQ-100"

[[products]]
id = "{OTHER_PRODUCT}"
name = "Acme Hub"
claim = "pre"
account = "acme-retail"
"""


def write_config(folder: Path, text: str = CONFIG_TEXT) -> Path:
    path = folder / "station.toml"
    path.write_text(text)
    return path


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def config(config_path: Path) -> StationConfig:
    return load(config_path)


@pytest.fixture
async def journal(config: StationConfig) -> AsyncIterator[Journal]:
    j = await Journal.open(config.journal, config.station_id)
    yield j
    await j.close()


@dataclasses.dataclass
class Station:
    """A running station app on 127.0.0.1 with one token per role."""

    client: TestClient[Any, Any]
    journal: Journal
    config: StationConfig
    tokens: dict[Role, str]

    def auth(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


@pytest.fixture
async def station(config: StationConfig, journal: Journal) -> AsyncIterator[Station]:
    tokens: dict[Role, str] = {}
    for role in ("device", "operator", "viewer"):
        tokens[role] = new_token()
        await journal.add_token(f"test-{role}", role, token_hash(tokens[role]))
    async with TestClient(TestServer(make_app(config, journal), host="127.0.0.1")) as client:
        yield Station(client, journal, config, tokens)


def run_cli(config_path: Path | None, *args: str, check: bool = True,
            input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real `factory` command line in a subprocess."""
    cmd = [*FACTORY, *(["-c", str(config_path)] if config_path else []), *args]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("FACTORY_CONFIG", None)
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, input=input_text,
                            timeout=60, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{cmd} exited {result.returncode}: {result.stderr}")
    return result
