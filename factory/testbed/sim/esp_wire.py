"""The ESP ROM bootloader's serial protocol as the simulated chip speaks it (pure, no I/O).

Written from esptool's source (esptool/loader.py, v5), not with its code, so that esptool
referees the simulator: SLIP frames (0xC0 ends a frame; 0xDB 0xDC and 0xDB 0xDD stand for
0xC0 and 0xDB inside one); a request is `<BBHI` (0x00, command, data length, checksum) then
the data; a response is `<BBHI` (0x01, command, data length, value) then the data, whose
last bytes are the status (4 bytes from the ROM, 2 from the flasher stub).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
HEADER = struct.Struct("<BBHI")
CHECKSUM_SEED = 0xEF  # the ROM's initial value of the XOR checksum of a data block


class Command(IntEnum):
    FLASH_BEGIN = 0x02
    FLASH_DATA = 0x03
    FLASH_END = 0x04
    MEM_BEGIN = 0x05
    MEM_END = 0x06
    MEM_DATA = 0x07
    SYNC = 0x08
    WRITE_REG = 0x09
    READ_REG = 0x0A
    SPI_SET_PARAMS = 0x0B
    SPI_ATTACH = 0x0D
    CHANGE_BAUDRATE = 0x0F
    FLASH_DEFL_BEGIN = 0x10
    FLASH_DEFL_DATA = 0x11
    FLASH_DEFL_END = 0x12
    SPI_FLASH_MD5 = 0x13
    GET_SECURITY_INFO = 0x14
    ERASE_FLASH = 0xD0  # the stub's
    ERASE_REGION = 0xD1
    READ_FLASH = 0xD2


class Error(IntEnum):
    """The second status byte of a failed command (ROM values, then the stub's)."""

    INVALID_MESSAGE = 0x05  # the ROM's answer to a command it does not know
    FAILED = 0x06
    INVALID_CRC = 0x07
    FLASH_WRITE = 0x08
    FLASH_READ = 0x09
    DEFLATE = 0x0B
    BAD_DATA_LEN = 0xC0
    BAD_DATA_CHECKSUM = 0xC1
    INVALID_COMMAND = 0xC3
    FAILED_SPI_OP = 0xC4
    NOT_IN_FLASH_MODE = 0xC6
    INFLATE_ERROR = 0xC7
    TOO_MUCH_DATA = 0xC9


def slip(payload: bytes) -> bytes:
    """One SLIP frame holding `payload`."""
    escaped = payload.replace(bytes([ESC]), bytes([ESC, ESC_ESC]))
    escaped = escaped.replace(bytes([END]), bytes([ESC, ESC_END]))
    return bytes([END]) + escaped + bytes([END])


class SlipDecoder:
    """Bytes in, whole frames out. Bytes between frames (noise, a boot log) are skipped;
    an invalid escape spoils its frame, which is dropped (`dropped` counts them)."""

    def __init__(self) -> None:
        self._frame: bytearray | None = None
        self._escape = False
        self._bad = False
        self.dropped = 0

    def feed(self, data: bytes) -> list[bytes]:
        frames: list[bytes] = []
        for byte in data:
            if self._frame is None:
                if byte == END:
                    self._frame, self._escape, self._bad = bytearray(), False, False
                continue
            if self._escape:
                self._escape = False
                if byte in (ESC_END, ESC_ESC):
                    self._frame.append(END if byte == ESC_END else ESC)
                else:
                    self._bad = True
            elif byte == ESC:
                self._escape = True
            elif byte == END:
                if self._frame and not self._bad:
                    frames.append(bytes(self._frame))
                elif self._bad:
                    self.dropped += 1
                # An END right after an END starts the next frame (esptool sends C0 C0).
                self._frame, self._bad = bytearray(), False
            else:
                self._frame.append(byte)
        return frames


@dataclass(frozen=True)
class Request:
    command: int
    data: bytes
    checksum: int


class WireError(ValueError):
    """A frame that is no request."""


def parse_request(frame: bytes) -> Request:
    """A request frame's command, data and checksum field."""
    if len(frame) < HEADER.size:
        raise WireError(f"{len(frame)} bytes: shorter than a request header")
    direction, command, length, checksum = HEADER.unpack_from(frame)
    if direction != 0x00:
        raise WireError(f"direction byte {direction:#04x}: not a request")
    data = frame[HEADER.size:]
    if len(data) != length:
        raise WireError(f"header says {length} data bytes, the frame holds {len(data)}")
    return Request(command, data, checksum)


def response(command: int, value: int = 0, data: bytes = b"", *, error: int = 0,
             status_bytes: int = 4) -> bytes:
    """A response frame's payload (not yet SLIP-framed): data, then the status bytes
    (failed = 1 and the error code when `error` is set)."""
    status = bytes([1 if error else 0, error]) + bytes(status_bytes - 2)
    body = data + status
    return HEADER.pack(0x01, command, len(body), value) + body


def checksum(data: bytes) -> int:
    """The XOR checksum FLASH_DATA and MEM_DATA carry in their header."""
    state = CHECKSUM_SEED
    for byte in data:
        state ^= byte
    return state


def words(data: bytes, count: int) -> tuple[int, ...]:
    """The first `count` little-endian 32-bit words of a request's data."""
    if len(data) < 4 * count:
        raise WireError(f"{len(data)} data bytes, the command takes {4 * count}")
    return struct.unpack_from(f"<{count}I", data)
