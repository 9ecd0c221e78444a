"""Shared fixtures: a station config in a tmp dir, a real SQLite journal, a real HTTP server."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from factory.config import StationConfig, load
from factory.journal import open_journal
from factory.journal.interface import Journal
from factory.journal.records import Role
from factory.journal.sqlite import SQLiteJournal
from factory.tokens import new_token, token_hash
from factory.upstream.requests import RegisterRequest
from factory.web.app import make_app
from tests.postgres import PrivatePostgres

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


# A test opens a journal for its config as the station does, through `open_journal`.
OpenJournal = Callable[..., Awaitable[Journal]]


@pytest.fixture(scope="session")
def private_postgres() -> Iterator[PrivatePostgres]:
    """One private PostgreSQL server for the whole run (tests/postgres.py); each test that
    uses it makes a database of its own."""
    server = PrivatePostgres()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def journal_backend(request: pytest.FixtureRequest) -> str:
    """Every journal backend the journal's tests run against; a new backend adds its name
    here and its location in `open_test_journal`. Tests that test SQLite itself (file modes,
    WAL, pragmas, tampering with the file, a full disk) use `sqlite_journal` or the file."""
    return str(request.param)


@pytest.fixture
def open_test_journal(journal_backend: str, config: StationConfig, config_path: Path,
                      request: pytest.FixtureRequest) -> OpenJournal:
    """Opens the test's journal (again, as often as the test likes) on `journal_backend`. On
    PostgreSQL the journal is a new database, and station.toml is rewritten to name it, so a
    station or CLI the test starts shares it."""
    location: str | Path = config.journal
    if journal_backend == "postgresql":
        server: PrivatePostgres = request.getfixturevalue("private_postgres")
        location = server.new_database()
        text = config_path.read_text()
        assert 'journal = "journal.sqlite"' in text
        config_path.write_text(text.replace('journal = "journal.sqlite"',
                                            f'journal = "{location}"'))
    elif journal_backend != "sqlite":
        raise ValueError(f"no test location for a {journal_backend} journal")

    async def opener(**options: Any) -> Journal:
        return await open_journal(location, config.station_id, **options)

    return opener


@pytest.fixture
async def journal(open_test_journal: OpenJournal) -> AsyncIterator[Journal]:
    """The test's journal, opened through `open_journal` on each backend (ids [sqlite] and
    [postgresql])."""
    j = await open_test_journal()
    yield j
    await j.close()


@pytest.fixture
async def sqlite_journal(config: StationConfig) -> AsyncIterator[SQLiteJournal]:
    """A SQLite journal, for the tests of SQLite itself (pragmas, connections, the file)."""
    j = await open_journal(config.journal, config.station_id)
    assert isinstance(j, SQLiteJournal)
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


def register_request(uci: str) -> RegisterRequest:
    """An outbox request to register `uci`, for tests that only need one queued."""
    return RegisterRequest(uci, PRODUCT, "", "AQ-100", "Acme Air Sensor",
                           "2026-11-23T00:00:00+00:00")


def _journal_threads() -> set[threading.Thread]:
    """aiosqlite's connection threads: not daemons, so one left running keeps pytest (and CI)
    from ever exiting."""
    return {t for t in threading.enumerate() if "_connection_worker_thread" in t.name}


@pytest.fixture(autouse=True)
def _no_journal_left_open() -> Iterator[None]:
    """Fail the test that leaves a SQLite connection open (a journal or store not closed)."""
    before = _journal_threads()
    yield
    left = _journal_threads() - before
    for thread in left:
        thread.join(timeout=2.0)  # a closed connection's thread ends at once
    if still := [t for t in left if t.is_alive()]:
        pytest.fail(f"{len(still)} SQLite connection(s) left open by this test: close every "
                    "journal or store it opens (their threads keep the process alive)")

