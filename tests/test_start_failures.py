"""A station that cannot start says why in one line and exits at once (no traceback, no
process left hanging): the outside probe's B11 and its kin, against the real command line."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from factory.config import load
from factory.journal import open_journal
from tests.conftest import run_cli


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    return lines[0]


def test_a_listen_address_in_use_is_one_line_naming_its_holder(config_path: Path) -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:  # run_cli's time limit fails the test if the station lingers
        result = run_cli(config_path, "serve", "--listen", f"127.0.0.1:{port}", check=False)
    finally:
        holder.close()
    assert result.returncode == 2, result
    line = one_line_error(result.stderr)
    assert f"cannot listen on 127.0.0.1:{port}: the address is in use" in line
    assert f"by pid {os.getpid()} (" in line  # this test's own process holds it
    assert "station.listen" in line and str(config_path) in line


# Every long-running command that listens, as a user types it (without --listen); each is
# refused its address in one line too. The fleet page and the station read the config.
SERVERS = {
    "serve": ["serve"],
    "fleet serve": ["fleet", "serve", "--url", "postgresql://127.0.0.1:1/fleet"],
    "registry serve": ["registry", "serve", "--db", "{tmp}/registry.db"],
    "sim-cloud thingsboard": ["sim-cloud", "thingsboard", "--db", "{tmp}/tb.db"],
    "sim-cloud particle": ["sim-cloud", "particle", "--db", "{tmp}/particle.db"],
    "sim-cloud rainmaker": ["sim-cloud", "rainmaker", "--db", "{tmp}/rainmaker.db"],
}


async def refused(config_path: Path, name: str, listen: str) -> str:
    """Run the server `name` on `listen`; it must exit at once (run_cli's time limit fails
    the test otherwise) with status 2 and one line on stderr, which is returned."""
    if name == "fleet serve":  # the fleet page reads its tokens from an existing journal
        config = load(config_path)
        await (await open_journal(config.journal, config.station_id)).close()
    args = [arg.format(tmp=config_path.parent) for arg in SERVERS[name]]
    result = await asyncio.to_thread(run_cli, config_path, *args, "--listen", listen,
                                     check=False)
    assert result.returncode == 2, result
    return one_line_error(result.stderr)


@pytest.mark.parametrize("name", SERVERS)
async def test_every_server_says_its_address_is_in_use_in_one_line(config_path: Path,
                                                                   name: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        line = await refused(config_path, name, f"127.0.0.1:{port}")
    assert f"cannot listen on 127.0.0.1:{port}: the address is in use by pid {os.getpid()} " \
           in line
    assert "choose another address (--listen" in line


@pytest.mark.parametrize("name", SERVERS)
async def test_every_server_says_it_cannot_bind_an_address_in_one_line(config_path: Path,
                                                                       name: str) -> None:
    # 192.0.2.1 (TEST-NET-1) is no address of this machine: the kernel refuses the bind at once.
    line = await refused(config_path, name, "192.0.2.1:8123")
    assert "cannot listen on 192.0.2.1:8123: Cannot assign requested address; choose " \
           "another address (--listen" in line
