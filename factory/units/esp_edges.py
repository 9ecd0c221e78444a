"""The esptool driver's edges with plain values: esptool's failures as the unit's errors
(with what to do), the port's device node (to tell a unit unplugged and another plugged in
between two looks), closing a session that may already be gone; and two changes to how
esptool reads its port: trace dumps made cheap, and frames bounded in size."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import serial
from esptool import loader
from esptool.util import FatalError

from factory.units.errors import (
    NotInBootloader,
    ProtocolError,
    UnitError,
    UnitGone,
    UnitRefused,
    VerifyMismatch,
)


def unit_error(text: str, device: str) -> UnitError:
    first = text.strip().splitlines()[0] if text.strip() else "esptool failed"
    if "Could not open" in text and "No such file" in text:
        return UnitGone(f"{device} is gone: {first}")
    if "Could not open" in text:
        return UnitRefused(f"esptool cannot open {device}: {first}")
    if "Failed to connect" in text or "No serial data received" in text:
        return NotInBootloader(f"no chip answers its ROM bootloader on {device}: {first}")
    if "MD5" in text or "Digest mismatch" in text:
        return VerifyMismatch(first)
    return ProtocolError(f"esptool: {first}")


def device_node(device: str) -> tuple[int, ...] | None:
    """Which device node `device` is now, None when it is gone. Its creation time too: a pty
    whose number is used again has the same inode and device number."""
    try:
        found = os.stat(device)
    except OSError:
        return None
    return found.st_ino, found.st_rdev, found.st_ctime_ns


def quietly_close(esp: Any) -> None:
    with contextlib.suppress(OSError, serial.SerialException):
        esp._port.close()


def flash_bytes(size: str) -> int:
    """esptool's flash size name ("4MB", "512KB") in bytes."""
    unit = 1 << 20 if size.endswith("MB") else 1 << 10
    return int(size[:-2]) * unit


class _Length(loader.HexFormatter):
    """What a frame's trace dump becomes: its length."""

    def __str__(self) -> str:
        return f"<{len(self._s)} bytes>"


def untraced() -> None:
    """esptool (5.x) formats its trace dumps inside f-strings, so every frame it writes or
    reads becomes a hex dump, 16 bytes a line with their ASCII, even with tracing off: about
    a third of the station's CPU for an ESP unit (0.033 s a unit, 0.023 s without the dumps;
    README). The station never turns esptool's tracing on (it logs and journals itself), so
    a dump is only the frame's length."""
    loader.HexFormatter = _Length


MAX_FRAME = 64 * 1024  # bytes between two frame ends; the largest answer is a 4 KiB read block
_SLIP_READER = loader.slip_reader


class _FramedReads:
    """A serial port as esptool's SLIP reader reads it, refusing more than MAX_FRAME bytes
    without a frame end (0xC0)."""

    def __init__(self, port: Any) -> None:
        self._port, self._run = port, 0

    def read(self, size: int = 1) -> bytes:
        data: bytes = self._port.read(size)
        end = data.rfind(b"\xc0")
        self._run = len(data) - end - 1 if end >= 0 else self._run + len(data)
        if self._run > MAX_FRAME:
            raise FatalError(f"more than {MAX_FRAME} bytes without the end of a frame: serial "
                             "noise, or no ROM bootloader on the port")
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._port, name)


def _bounded_slip_reader(port: Any, trace_function: Any) -> Any:
    return _SLIP_READER(_FramedReads(port), trace_function)


def bounded_frames() -> None:
    """esptool's SLIP reader keeps whatever follows a frame start until the frame's end, one
    byte at a time into a growing bytes object: a device that sends 0xC0 and then never
    another (noise, a bridge gone wrong, a hostile port) held a fixture forever at full CPU,
    its memory growing. Past MAX_FRAME bytes the read fails as noise does (FatalError)."""
    loader.slip_reader = _bounded_slip_reader
