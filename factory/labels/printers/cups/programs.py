"""Running the CUPS programs (`lp`, `ipptool`): never through a shell, arguments as a list,
in the C locale, each call bounded in time; and which CUPS server they talk to."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from factory.labels.printers.interface import PrinterUnavailable

CALL_TIMEOUT = 10.0  # seconds for one lp/ipptool call; a healthy local cupsd answers in ms


async def run(argv: Sequence[str], stdin: bytes | None = None) -> tuple[int, str, str]:
    """Run one CUPS program (never a shell) in the C locale, so its messages are parseable."""
    env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise PrinterUnavailable(f"{argv[0]} is not installed",
                                 "install the Debian packages cups-client and cups-ipp-utils"
                                 ) from exc
    try:
        async with asyncio.timeout(CALL_TIMEOUT + 2):
            out, err = await proc.communicate(stdin)
    except TimeoutError:
        raise PrinterUnavailable(f"{argv[0]} got no answer from CUPS in {CALL_TIMEOUT:g} s",
                                 "check CUPS is running and not overloaded") from None
    finally:
        if proc.returncode is None:  # timed out or cancelled: do not leave it running
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def server_address(server: str | None) -> str:
    """host:port or a socket path: the argument, else $CUPS_SERVER, else localhost:631."""
    return server or os.environ.get("CUPS_SERVER") or "localhost:631"
