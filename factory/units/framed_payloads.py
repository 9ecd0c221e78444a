"""The framed protocol's command payloads (docs/framed-protocol.md): what HELLO, PUT, COMMIT,
GET and HASH carry, encoded and parsed. Pure: no I/O."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self, TypeVar

from factory.units.framed_protocol import MAX_TEXT

_T = TypeVar("_T")


class PayloadError(ValueError):
    """A payload that does not parse the way its command says."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data, self._at = data, 0

    def take(self, count: int) -> bytes:
        if self._at + count > len(self._data):
            raise PayloadError(f"payload ends after {len(self._data)} bytes, expected more")
        chunk = self._data[self._at:self._at + count]
        self._at += count
        return chunk

    def number(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def text(self) -> str:
        try:
            return self.take(self.number(1)).decode()
        except UnicodeDecodeError as exc:
            raise PayloadError(f"text is not UTF-8: {exc}") from exc

    def rest(self) -> bytes:
        chunk, self._at = self._data[self._at:], len(self._data)
        return chunk


def _parse(payload: bytes, parse: Callable[[_Reader], _T]) -> _T:
    reader = _Reader(payload)
    value = parse(reader)
    if extra := reader.rest():
        raise PayloadError(f"{len(extra)} unexpected bytes after the payload")
    return value


def _text(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > MAX_TEXT:
        raise PayloadError(f"{value[:40]!r}... is {len(raw)} bytes; at most {MAX_TEXT} fit")
    return bytes([len(raw)]) + raw


def _u32(value: int) -> bytes:
    return value.to_bytes(4, "big")


@dataclass(frozen=True)
class Hello:
    """HELLO's reply: who the unit is and what it accepts."""

    version: int
    max_chunk: int
    model: str
    hardware_id: str
    firmware: str

    def encode(self) -> bytes:
        return (struct.pack(">BH", self.version, self.max_chunk) + _text(self.model)
                + _text(self.hardware_id) + _text(self.firmware))

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        return _parse(payload, lambda r: cls(version=r.number(1), max_chunk=r.number(2),
                                             model=r.text(), hardware_id=r.text(),
                                             firmware=r.text()))


@dataclass(frozen=True)
class Put:
    """PUT: `data` belongs at `offset` of the upload to `path` (offset 0 starts it afresh)."""

    path: str
    offset: int
    data: bytes

    def encode(self) -> bytes:
        return _u32(self.offset) + _text(self.path) + self.data

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        return _parse(payload, lambda r: cls(offset=r.number(4), path=r.text(), data=r.rest()))


@dataclass(frozen=True)
class Commit:
    """COMMIT: make the upload to `path`, `size` bytes long, appear atomically."""

    path: str
    size: int

    def encode(self) -> bytes:
        return _u32(self.size) + _text(self.path)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        return _parse(payload, lambda r: cls(size=r.number(4), path=r.text()))


@dataclass(frozen=True)
class Get:
    """GET: up to `length` bytes of `path` from `offset` (fewer at the end of the file)."""

    path: str
    offset: int
    length: int

    def encode(self) -> bytes:
        return struct.pack(">IH", self.offset, self.length) + _text(self.path)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        return _parse(payload, lambda r: cls(offset=r.number(4), length=r.number(2),
                                             path=r.text()))


@dataclass(frozen=True)
class PathOnly:
    """HASH's request: just a path."""

    path: str

    def encode(self) -> bytes:
        return _text(self.path)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        return _parse(payload, lambda r: cls(path=r.text()))


@dataclass(frozen=True)
class Keygen:
    """KEYGEN's request: where the unit keeps its private key, and the CSR's subject CN."""

    path: str
    common_name: str

    def encode(self) -> bytes:
        return _text(self.path) + _text(self.common_name)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        return _parse(payload, lambda r: cls(path=r.text(), common_name=r.text()))


@dataclass(frozen=True)
class Digest:
    """COMMIT's and HASH's reply: the file's SHA-256 (raw 32 bytes) and size."""

    sha256: bytes
    size: int

    def encode(self) -> bytes:
        return self.sha256 + _u32(self.size)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        return _parse(payload, lambda r: cls(sha256=r.take(32), size=r.number(4)))


@dataclass(frozen=True)
class Count:
    """PUT's reply: how many bytes of the upload the unit holds."""

    received: int

    def encode(self) -> bytes:
        return _u32(self.received)

    @classmethod
    def decode(cls, payload: bytes) -> Self:
        return _parse(payload, lambda r: cls(received=r.number(4)))
