"""The framed factory protocol's frames (docs/framed-protocol.md): layout, ops and statuses,
and an incremental decoder that resynchronises after garbage. Pure: no I/O. The commands'
payloads are in framed_payloads.py."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

MAGIC = b"\xa5\x5a"
VERSION = 1
REPLY = 0x80  # set in a reply's op byte
HEADER = struct.Struct(">2sHBBHH")  # magic, seq, op, status, length, length ^ 0xFFFF
CRC = struct.Struct(">I")
MIN_FRAME = HEADER.size + CRC.size
MAX_PAYLOAD = 8192  # longer lengths are taken for a false start, so garbage cannot stall us
MAX_TEXT = 255  # paths and identity strings carry a one-byte length
MAX_CHUNK = MAX_PAYLOAD - 4 - 1 - MAX_TEXT  # the most file bytes one PUT can carry



class Op(IntEnum):
    HELLO = 0x01
    PUT = 0x02
    COMMIT = 0x03
    GET = 0x04
    HASH = 0x05
    KEYGEN = 0x06


class Status(IntEnum):
    OK = 0
    BAD_CRC = 1
    BAD_REQUEST = 2
    UNKNOWN_COMMAND = 3
    BAD_PATH = 4
    NOT_FOUND = 5
    NO_SPACE = 6
    BAD_OFFSET = 7
    SIZE_MISMATCH = 8
    TOO_LARGE = 9
    IO_ERROR = 10


STATUS_WORDS = {
    Status.OK: "ok",
    Status.BAD_CRC: "the request reached the unit damaged (bad CRC)",
    Status.BAD_REQUEST: "the request's payload was malformed",
    Status.UNKNOWN_COMMAND: "the unit does not know this command",
    Status.BAD_PATH: "the path is not allowed on the unit",
    Status.NOT_FOUND: "no such file (or no upload in progress) on the unit",
    Status.NO_SPACE: "no space left on the unit",
    Status.BAD_OFFSET: "the chunk's offset does not follow what the unit has received",
    Status.SIZE_MISMATCH: "the committed size differs from what the unit received",
    Status.TOO_LARGE: "the chunk is larger than the unit accepts",
    Status.IO_ERROR: "the unit's storage failed",
}


def status_words(status: int) -> str:
    """A status code in plain words (unknown codes included)."""
    try:
        return STATUS_WORDS[Status(status)]
    except ValueError:
        return f"unknown status {status:#04x}"


@dataclass(frozen=True)
class Frame:
    """One frame: a request (op without REPLY, status 0) or the reply to one."""

    seq: int
    op: int
    status: int = 0
    payload: bytes = b""

    def encode(self) -> bytes:
        if len(self.payload) > MAX_PAYLOAD:
            raise ValueError(f"payload of {len(self.payload)} bytes exceeds {MAX_PAYLOAD}")
        n = len(self.payload)
        body = HEADER.pack(MAGIC, self.seq, self.op, self.status, n, n ^ 0xFFFF) + self.payload
        return body + CRC.pack(zlib.crc32(body))


@dataclass(frozen=True)
class Corrupt:
    """A frame whose header was sound but whose CRC failed; seq and op are only a hint."""

    seq: int
    op: int
    reason: str


class FrameDecoder:
    """Feed it bytes as they come; it returns whole frames and corrupt ones, skipping garbage."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.skipped = 0  # garbage bytes thrown away so far

    def feed(self, data: bytes) -> list[Frame | Corrupt]:
        self._buf += data
        events: list[Frame | Corrupt] = []
        while (event := self._next()) is not None:
            events.append(event)
        return events

    @property
    def wanted(self) -> int:
        """How many more bytes the frame in progress needs (never more than it needs)."""
        have = len(self._buf)
        if have < HEADER.size:
            return MIN_FRAME - have
        return HEADER.size + self._length() + CRC.size - have

    def skip_partial(self) -> list[Frame | Corrupt]:
        """Give up on the frame in progress (a false start that never completed) and rescan."""
        if not self._buf:
            return []
        self._drop(1)
        return self.feed(b"")

    def _length(self) -> int:
        return int.from_bytes(self._buf[6:8], "big")

    def _drop(self, count: int) -> None:
        self.skipped += count
        del self._buf[:count]

    def _next(self) -> Frame | Corrupt | None:
        while True:
            start = self._buf.find(MAGIC)
            if start < 0:
                # Keep a last byte that may be the first half of the next magic.
                self._drop(len(self._buf) - (1 if self._buf.endswith(MAGIC[:1]) else 0))
                return None
            self._drop(start)
            if len(self._buf) < HEADER.size:
                return None
            _, seq, op, status, length, check = HEADER.unpack_from(self._buf)
            if length ^ check != 0xFFFF or length > MAX_PAYLOAD:
                self._drop(1)  # not a frame start after all
                continue
            end = HEADER.size + length
            if len(self._buf) < end + CRC.size:
                return None
            body = bytes(self._buf[:end])
            (crc,) = CRC.unpack_from(self._buf, end)
            del self._buf[:end + CRC.size]
            if zlib.crc32(body) != crc:
                return Corrupt(seq, op, f"frame {seq} failed its CRC check")
            return Frame(seq, op, status, body[HEADER.size:])
