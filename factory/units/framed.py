"""The driver for units running the framed factory protocol (docs/framed-protocol.md).

Stop-and-wait: one request, one reply with the same sequence number. A reply that is lost,
garbled or fails its CRC gets the identical request (same sequence number) sent again; the
unit answers a repeat from its cache, so a resent PUT or COMMIT never acts twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from typing import TypeVar

from factory import failpoints
from factory.config.drivers import FramedSettings
from factory.units.driver import Identity, Verification
from factory.units.errors import (
    ProtocolError,
    UnitError,
    UnitGone,
    UnitRefused,
    UnitTimeout,
    VerifyMismatch,
)
from factory.units.framed_payloads import (
    Commit,
    Count,
    Digest,
    Get,
    Hello,
    Keygen,
    PathOnly,
    PayloadError,
    Put,
)
from factory.units.framed_protocol import (
    MAX_CHUNK,
    MAX_PAYLOAD,
    MIN_FRAME,
    REPLY,
    VERSION,
    Corrupt,
    Frame,
    FrameDecoder,
    Op,
    Status,
    status_words,
)
from factory.units.port import Port

PRESENT_TIMEOUT = 0.5  # seconds a present unit takes at most to answer HELLO
# Bytes without a frame in them that one request may meet before the unit is taken for one
# that speaks no framed protocol: a few frames' worth, so a burst of line noise is survived,
# while a unit printing a console or noise costs a bounded read, not a fixture stuck waiting.
MAX_NOISE = 4 * (MAX_PAYLOAD + MIN_FRAME)
NO_PROTOCOL = "the unit speaks no framed protocol on this port"
_P = TypeVar("_P", Hello, Count, Digest)


class _Garbled(Exception):
    """This try's reply was damaged; resend."""


class FramedDriver:
    """One unit speaking the framed protocol on one open port."""

    def __init__(self, port: Port, settings: FramedSettings) -> None:
        self._port, self._settings = port, settings
        self._decoder = FrameDecoder()
        # A random start keeps a new driver's requests from matching an old reply in the
        # unit's cache (the station may have restarted mid-conversation).
        self._seq = int.from_bytes(os.urandom(2), "big")
        self._hello: Hello | None = None
        self.resends = 0  # requests sent again after a lost or damaged reply

    async def wake(self) -> None:
        """HELLO: the unit answers, speaks our protocol version, and says how much it takes."""
        await self._greet()

    async def identify(self) -> Identity:
        hello = await self._greet()
        return Identity(hardware_id=hello.hardware_id, model=hello.model,
                        firmware=hello.firmware)

    async def write_file(self, path: str, data: bytes) -> None:
        """PUT the data in chunks, then COMMIT: the file appears whole with mode 0600, and the
        unit's digest of what it stored must be ours (VerifyMismatch if not)."""
        chunk = await self._chunk_size()
        offset = 0
        while True:  # at least one PUT, so an empty file is an upload too
            piece = data[offset:offset + chunk]
            reply = await self._call(Op.PUT, Put(path, offset, piece).encode(), path)
            held = self._parse(Count, reply, Op.PUT).received
            if held != offset + len(piece):
                raise ProtocolError(f"the unit holds {held} bytes of {path} after PUT, "
                                    f"expected {offset + len(piece)}")
            offset += len(piece)
            failpoints.hit("serial.write")
            if offset >= len(data):
                break
        reply = await self._call(Op.COMMIT, Commit(path, len(data)).encode(), path)
        digest = self._parse(Digest, reply, Op.COMMIT)
        ours = hashlib.sha256(data).digest()
        if (digest.sha256, digest.size) != (ours, len(data)):
            raise VerifyMismatch(
                f"the unit stored {path} with SHA-256 {digest.sha256.hex()} "
                f"({digest.size} bytes); we sent {ours.hex()} ({len(data)} bytes)")

    async def verify_file(self, path: str, data: bytes) -> Verification:
        """HASH: the unit reads the stored file back and reports its SHA-256."""
        reply = await self._call(Op.HASH, PathOnly(path).encode(), path)
        digest = self._parse(Digest, reply, Op.HASH)
        ours = hashlib.sha256(data).hexdigest()
        theirs = digest.sha256.hex()
        if (theirs, digest.size) != (ours, len(data)):
            raise VerifyMismatch(f"the unit holds {path} with SHA-256 {theirs} "
                                 f"({digest.size} bytes); we wrote {ours} ({len(data)} bytes)")
        return Verification("sha256", theirs, digest.size)

    async def make_key(self, path: str, common_name: str) -> str | None:
        """KEYGEN: the unit makes (or keeps) its key at `path` and answers its CSR; None from
        a unit whose firmware has no KEYGEN (the station then makes the key)."""
        reply = await self._call(Op.KEYGEN, Keygen(path, common_name).encode(), path,
                                 allow=(Status.UNKNOWN_COMMAND,))
        if reply.status == Status.UNKNOWN_COMMAND:
            return None
        try:
            return reply.payload.decode("ascii")
        except UnicodeDecodeError as exc:
            raise ProtocolError("the unit's KEYGEN reply is not a PEM CSR") from exc

    async def read_file(self, path: str) -> bytes:
        """GET the whole file back, chunk by chunk."""
        chunk = await self._chunk_size()
        data = bytearray()
        while True:
            reply = await self._call(Op.GET, Get(path, len(data), chunk).encode(), path)
            data += reply.payload
            if len(reply.payload) < chunk:
                return bytes(data)

    async def present(self) -> bool:
        """Whether a HELLO is answered within a short timeout. A port that is gone raises
        UnitGone (the fixture reopens it) rather than answering False."""
        try:
            await self._call(Op.HELLO, b"", timeout=min(self._settings.timeout,
                                                        PRESENT_TIMEOUT), retries=0)
        except UnitGone:
            raise
        except ProtocolError:
            return True  # something talks on the line: identifying it says what is wrong
        except UnitError:
            return False
        return True

    async def _greet(self) -> Hello:
        hello = self._parse(Hello, await self._call(Op.HELLO, b""), Op.HELLO)
        if hello.version != VERSION:
            raise ProtocolError(f"the unit speaks framed protocol version {hello.version}; "
                                f"this station speaks version {VERSION}")
        if hello.max_chunk < 1:
            raise ProtocolError("the unit says it accepts chunks of 0 bytes")
        self._hello = hello
        return hello

    async def _chunk_size(self) -> int:
        hello = self._hello or await self._greet()
        return max(1, min(self._settings.chunk_size, hello.max_chunk, MAX_CHUNK))

    @staticmethod
    def _parse(kind: type[_P], reply: Frame, op: Op) -> _P:
        try:
            return kind.decode(reply.payload)
        except PayloadError as exc:
            raise ProtocolError(f"the unit's reply to {op.name} is malformed: {exc}") from exc

    async def _call(self, op: Op, payload: bytes, path: str = "", *,
                    timeout: float | None = None, retries: int | None = None,
                    allow: tuple[Status, ...] = ()) -> Frame:
        """Send one request until a sound reply comes back; its status must be OK (or one of
        `allow`, which the caller looks at)."""
        timeout = self._settings.timeout if timeout is None else timeout
        tries = 1 + (self._settings.retries if retries is None else retries)
        self._seq = (self._seq + 1) & 0xFFFF
        request = Frame(self._seq, op, payload=payload).encode()
        garbled = 0
        noise_from = self._decoder.skipped
        for attempt in range(tries):
            if attempt:
                self.resends += 1
            skipped = self._decoder.skipped
            await self._port.write(request)
            try:
                reply = await self._reply(self._seq, op, timeout, noise_from)
            except _Garbled:
                garbled += 1
                continue
            except UnitTimeout:
                # A frame still incomplete at the deadline was a false start; bytes that never
                # made a frame are noise on the line, not silence.
                self._decoder.skip_partial()
                if self._decoder.skipped > skipped:
                    garbled += 1
                self._check_noise(noise_from, op)
                continue
            if reply.status == Status.BAD_CRC:
                garbled += 1
                continue
            if reply.status != Status.OK and reply.status not in allow:
                target = f" {path}" if path else ""
                raise UnitRefused(f"the unit refused {op.name}{target}: "
                                  f"{status_words(reply.status)}"
                                  + (f" ({reply.payload.decode(errors='replace')})"
                                     if reply.payload else ""))
            return reply
        if garbled:
            raise ProtocolError(f"the unit's answers to {op.name} were garbled {garbled} of "
                                f"{tries} times (bad CRC or noise on the line)")
        raise UnitTimeout(f"the unit did not answer {op.name} within {timeout:g} s "
                          f"({tries} tries)")

    def _check_noise(self, noise_from: int, op: Op) -> None:
        noise = self._decoder.skipped - noise_from
        if noise > MAX_NOISE:
            raise ProtocolError(f"{NO_PROTOCOL}: {noise} bytes without a frame in answer to "
                                f"{op.name} (check the fixture's driver and the unit's "
                                "firmware)")

    async def _reply(self, seq: int, op: Op, timeout: float, noise_from: int) -> Frame:
        """The reply to request `seq`; older replies (to requests sent again) are dropped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = max(0.0, deadline - loop.time())
            data = await self._port.read_exactly(self._decoder.wanted, remaining)
            events = self._decoder.feed(data)
            self._check_noise(noise_from, op)
            for event in events:
                if isinstance(event, Corrupt):
                    raise _Garbled(event.reason)
                if event.seq == seq and event.op == op | REPLY:
                    return event
