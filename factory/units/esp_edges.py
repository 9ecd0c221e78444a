"""The esptool driver's edges with plain values: esptool's failures as the unit's errors
(with what to do), the port's device node (to tell a unit unplugged and another plugged in
between two looks), closing a session that may already be gone, and esptool's trace dumps
made cheap."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import serial
from esptool import loader

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
