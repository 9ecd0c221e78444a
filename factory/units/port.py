"""A serial port as an asyncio byte stream: opened exclusively, with deadlines on every read.

Device paths (/dev/ttyUSB0, /dev/serial/by-id/..., a pty) go through pyserial-asyncio-fast;
`socket://HOST:PORT` through asyncio directly. Low-level errors become the unit errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
from typing import Any
from urllib.parse import urlsplit

import serial
import serial_asyncio_fast

from factory.units.errors import PortBusy, PortMissing, ProtocolError, UnitGone, UnitTimeout

MAX_LINE = 64 * 1024  # nothing a unit says in one answer is longer
# A burst a unit may send before it has to pause: a boot log or a login banner fits; more is a
# flood (a wrong baud rate, a runaway program) and reading it all would cost memory and CPU.
MAX_BURST = 256 * 1024
KEEP_DRAINED = 4096  # what drain_input returns of what it discarded: the last prompt is there
log = logging.getLogger("factory.port")


class Port:
    """One open port with its own input buffer. Every read has a deadline; a closed or
    vanished port raises UnitGone, a silent one UnitTimeout."""

    def __init__(self, url: str, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.url, self._reader, self._writer = url, reader, writer
        self._buffer = bytearray()
        self.bytes_out = 0
        self.bytes_in = 0
        self.writes = 0  # each command sent is one write: the round trips, for benchmarks

    async def write(self, data: bytes) -> None:
        """Send bytes and wait until the OS has taken them."""
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (OSError, serial.SerialException, ConnectionError) as exc:
            raise UnitGone(f"the unit went away while we were writing ({exc})") from exc
        if self._writer.transport.is_closing():  # a failed write aborts it; drain says nothing
            raise UnitGone("the unit went away while we were writing")
        self.bytes_out += len(data)
        self.writes += 1

    async def _fill(self, deadline: float, what: str) -> None:
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise UnitTimeout(f"the unit did not send {what} in time"
                              f" (last bytes: {bytes(self._buffer[-60:])!r})")
        try:
            async with asyncio.timeout(remaining):
                chunk = await self._reader.read(4096)
        except TimeoutError as exc:
            raise UnitTimeout(f"the unit did not send {what} in time"
                              f" (last bytes: {bytes(self._buffer[-60:])!r})") from exc
        except (OSError, serial.SerialException, ConnectionError) as exc:
            raise UnitGone(f"the unit went away ({exc})") from exc
        if not chunk:
            raise UnitGone("the unit closed the line")
        self.bytes_in += len(chunk)
        self._buffer += chunk

    async def read_exactly(self, count: int, timeout: float) -> bytes:
        """Exactly `count` bytes, or UnitTimeout / UnitGone."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self._buffer) < count:
            await self._fill(deadline, f"{count} bytes")
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    async def read_until(self, pattern: re.Pattern[bytes], timeout: float,
                         limit: int = MAX_LINE) -> bytes:
        """Everything up to the end of the first match of `pattern`."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            match = pattern.search(self._buffer)
            if match:
                data = bytes(self._buffer[:match.end()])
                del self._buffer[:match.end()]
                return data
            if len(self._buffer) > limit:
                raise ProtocolError(f"the unit sent {len(self._buffer)} bytes without the "
                                    "expected answer (garbage on the line?)")
            await self._fill(deadline, f"an answer matching {pattern.pattern!r}")

    async def drain_input(self, quiet: float = 0.05, limit: float = 2.0,
                          max_bytes: int = MAX_BURST) -> bytes:
        """Discard what is buffered and whatever the unit sends until it is quiet; returns the
        last KEEP_DRAINED bytes of it. A unit that sends more than `max_bytes`, or for longer
        than `limit` seconds, without a pause floods the line: a ProtocolError, after bounded
        memory and CPU (nothing more is read)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        kept = bytearray(self._buffer[-KEEP_DRAINED:])
        dropped = len(self._buffer)
        self._buffer.clear()
        while True:
            if dropped > max_bytes or loop.time() - started > limit:
                raise ProtocolError(
                    f"the unit does not stop sending: {dropped} bytes in "
                    f"{loop.time() - started:.1f} s without a pause (garbage on the line: "
                    "wrong baud rate, or a program flooding the console?)")
            try:
                await self._fill(loop.time() + quiet, "anything")
            except UnitTimeout:
                return bytes(kept)
            dropped += len(self._buffer)
            kept += self._buffer
            del kept[:-KEEP_DRAINED]
            self._buffer.clear()

    async def close(self) -> None:
        """Close the port; a port that is already gone is fine."""
        self._writer.close()
        with contextlib.suppress(OSError, serial.SerialException, ConnectionError):
            await self._writer.wait_closed()


def _quiet_unplugged_ports(loop: asyncio.AbstractEventLoop) -> None:
    """pyserial-asyncio-fast reports a write to an unplugged unit (EIO) to the loop, which
    logs it as an ERROR with a traceback, though the fixture gets UnitGone and carries on.
    asyncio's own socket transports keep such OSErrors out of the log; so does this handler,
    put once on the loop in front of whatever handler was there."""
    previous = loop.get_exception_handler()
    if getattr(previous, "quiets_unplugged_ports", False):
        return

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if (isinstance(context.get("exception"), OSError)
                and isinstance(context.get("transport"), serial_asyncio_fast.SerialTransport)):
            log.debug("%s: %s", context.get("message"), context["exception"])
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handler.quiets_unplugged_ports = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handler)


async def open_port(url: str, baud: int) -> Port:
    """Open a fixture's port exclusively."""
    _quiet_unplugged_ports(asyncio.get_running_loop())
    scheme = urlsplit(url).scheme if "://" in url else ""
    try:
        if scheme == "socket":
            parts = urlsplit(url)
            if parts.hostname is None or parts.port is None:
                raise PortMissing(f"{url}: a socket port is socket://HOST:PORT")
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        elif scheme:
            raise PortMissing(f"{url}: only device paths and socket:// ports are supported")
        else:
            reader, writer = await serial_asyncio_fast.open_serial_connection(
                url=url, baudrate=baud, exclusive=True)
    except serial.SerialException as exc:
        text = str(exc)
        if "exclusively lock" in text or f"[Errno {errno.EBUSY}]" in text:
            raise PortBusy(f"{url} is held by another program") from exc
        if f"[Errno {errno.ENOENT}]" in text:
            raise PortMissing(f"{url} does not exist (is the fixture's cable in?)") from exc
        raise PortMissing(f"{url} cannot be opened: {text}") from exc
    except OSError as exc:
        raise PortMissing(f"{url} cannot be opened: {exc}") from exc
    return Port(url, reader, writer)
