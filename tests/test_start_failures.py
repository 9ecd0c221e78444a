"""A station that cannot start says why in one line and exits at once (no traceback, no
process left hanging): the outside probe's B11 and its kin, against the real command line."""

from __future__ import annotations

import os
import socket
from pathlib import Path

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
