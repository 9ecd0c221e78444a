"""The unit's end of a pseudo-terminal, paced to a baud rate, able to misbehave.

The station opens `SimPty.path` like any serial port: a link to the pty (`device`) that goes
when the unit is unplugged, as a USB adapter's /dev/serial/by-id/ name does. A pty's number is
free again once it is closed, and the next pty anyone opens may get it: a station polling the
bare /dev/pts/N of an unplugged unit could open another program's (another test's) unit.

A pty moves bytes instantly whatever the baud rate, so the wire's timing comes from here:
bytes are delivered in both directions no faster than baud / 10 per second (8N1: ten bits a
byte).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import random
import tempfile
import tty
from dataclasses import dataclass, field


@dataclass
class Misbehaviour:
    """Faults a simulated unit can be told to show (each maps to a fault test)."""

    silent: bool = False  # never answer anything
    drop_rate: float = 0.0  # probability of dropping each byte the unit sends
    garbage: bool = False  # answer with random bytes
    corrupt_next: int = 0  # corrupt this many of the unit's next answers (bad CRC / byte)
    hangup_after_bytes: int | None = None  # unplugged once it has received this many bytes
    corrupt_storage: bool = False  # store a different byte than it was sent (read-back fails)
    rng: random.Random = field(default_factory=random.Random)


class Unplugged(Exception):
    """The simulated unit hung up (its pty is closed)."""


class SimPty:
    """A pty pair: the station gets `path`, the simulator reads and writes the master."""

    def __init__(self, baud: int | None = None, misbehaviour: Misbehaviour | None = None) -> None:
        self._master, self._slave = pty.openpty()
        tty.setraw(self._master)
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.device = os.ttyname(self._slave)
        self._folder = tempfile.mkdtemp(prefix="simpty-")
        self.path = os.path.join(self._folder, "tty")
        os.symlink(self.device, self.path)
        self.baud = baud
        self.misbehaviour = misbehaviour or Misbehaviour()
        self.received = 0
        self.sent = 0
        self._inbox = bytearray()
        self._readable = asyncio.Event()
        self._closed = False
        self._read_clock: float | None = None
        asyncio.get_running_loop().add_reader(self._master, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: no process has the station's end open right now
            data = b""
        if data:
            self._inbox += data
            self._readable.set()

    def _pace(self, count: int, started: float) -> float:
        """Seconds to wait so `count` bytes since `started` took their wire time."""
        if not self.baud:
            return 0.0
        due = started + count * 10 / self.baud
        return max(0.0, due - asyncio.get_running_loop().time())

    async def read(self, limit: int = 4096) -> bytes:
        """The next bytes from the station, delivered at the wire's pace."""
        idle = not self._inbox
        while not self._inbox:
            if self._closed:
                raise Unplugged("the simulated unit is unplugged")
            self._readable.clear()
            await self._readable.wait()
        chunk = bytes(self._inbox[:limit])
        del self._inbox[:limit]
        loop = asyncio.get_running_loop()
        # The wire's clock restarts only after a pause; bytes that were already waiting
        # follow on from the previous ones (a late wake-up must not stretch the line).
        if self._read_clock is None or (idle and self._read_clock < loop.time()):
            self._read_clock = loop.time()
        self._read_clock += len(chunk) * 10 / self.baud if self.baud else 0.0
        await asyncio.sleep(max(0.0, self._read_clock - loop.time()))
        self.received += len(chunk)
        limit_bytes = self.misbehaviour.hangup_after_bytes
        if limit_bytes is not None and self.received >= limit_bytes:
            self.hangup()
            raise Unplugged(f"the simulated unit was unplugged after {self.received} bytes")
        return chunk

    async def write(self, data: bytes) -> None:
        """Send bytes to the station at the wire's pace (and with any misbehaviour)."""
        m = self.misbehaviour
        if m.silent or self._closed:
            return
        if m.drop_rate:
            data = bytes(b for b in data if m.rng.random() >= m.drop_rate)
        started = asyncio.get_running_loop().time()
        # Slices of about 1 ms of line time, each sent when the wire would have carried it.
        step = max(1, self.baud // 10_000) if self.baud else max(1, len(data))
        for offset in range(0, len(data), step):
            piece = data[offset:offset + step]
            while piece:
                try:
                    written = os.write(self._master, piece)
                except BlockingIOError:
                    await asyncio.sleep(0.001)
                    continue
                except OSError as exc:
                    raise Unplugged(f"the station's side is gone ({exc})") from exc
                piece = piece[written:]
                self.sent += written
            delay = self._pace(min(offset + step, len(data)), started)
            if delay:
                await asyncio.sleep(delay)

    def hangup(self) -> None:
        """Unplug: close both ends, so the station's reads fail like a pulled cable."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(OSError):  # the link first: see the module's docstring
            os.unlink(self.path)
            os.rmdir(self._folder)
        self._readable.set()
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._master)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    @property
    def closed(self) -> bool:
        return self._closed
