"""The reference simulated unit for the framed protocol: serves HELLO, PUT, COMMIT, GET and
HASH over a SimPty, storing files under a root folder, and misbehaves when told to.

`FramedUnit` is the unit's command handling (a request frame in, a reply frame out);
`run_framed_unit` is the wire: bytes from the pty through the decoder and replies back.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from factory import certs
from factory.testbed.sim.pty import Misbehaviour, SimPty, Unplugged
from factory.units.driver import Identity
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
    HEADER,
    REPLY,
    VERSION,
    Corrupt,
    Frame,
    FrameDecoder,
    Op,
    Status,
)

MAX_CHUNK = 2048  # what the simulated unit announces in HELLO
CAPACITY = 1 << 20  # bytes one upload may hold before the unit answers NO_SPACE


class Refused(Exception):
    """A request the unit answers with an error status (and `detail` as the payload)."""

    def __init__(self, status: Status, detail: str) -> None:
        super().__init__(detail)
        self.status, self.detail = status, detail


@dataclass
class _Upload:
    target: Path
    data: bytearray


class FramedUnit:
    """The unit's side of the protocol, without the wire: `handle` answers one request."""

    def __init__(self, root: Path, identity: Identity, misbehaviour: Misbehaviour,
                 capacity: int = CAPACITY, *, keygen: bool = True) -> None:
        self.root, self.identity, self.misbehaviour = root.resolve(), identity, misbehaviour
        self.capacity = capacity
        self._upload: _Upload | None = None
        self._last: tuple[Frame, Frame] | None = None  # the last request and its reply
        self._handlers: dict[int, Callable[[bytes], bytes]] = {
            Op.HELLO: self._hello, Op.PUT: self._put, Op.COMMIT: self._commit,
            Op.GET: self._get, Op.HASH: self._hash}
        if keygen:  # firmware without it answers UNKNOWN_COMMAND: the station makes the key
            self._handlers[Op.KEYGEN] = self._keygen

    def handle(self, event: Frame | Corrupt) -> Frame | None:
        """The reply to a request frame (None for frames a unit ignores)."""
        if isinstance(event, Corrupt):  # not cached: the resend must be carried out
            return Frame(event.seq, (event.op & ~REPLY) | REPLY, Status.BAD_CRC)
        if event.op & REPLY:
            return None
        if self._last is not None and self._last[0] == event:
            return self._last[1]  # a resend after a lost reply: answer, do not act again
        handler = self._handlers.get(event.op)
        try:
            if handler is None:
                raise Refused(Status.UNKNOWN_COMMAND, f"command {event.op:#04x}")
            status, payload = Status.OK, handler(event.payload)
        except PayloadError as exc:
            status, payload = Status.BAD_REQUEST, str(exc).encode()
        except Refused as exc:
            status, payload = exc.status, exc.detail.encode()
        reply = Frame(event.seq, event.op | REPLY, status, payload)
        self._last = (event, reply)
        return reply

    def _hello(self, payload: bytes) -> bytes:
        self._upload = None  # a new conversation: an unfinished upload is abandoned
        i = self.identity
        return Hello(VERSION, MAX_CHUNK, i.model, i.hardware_id, i.firmware).encode()

    def _put(self, payload: bytes) -> bytes:
        put = Put.decode(payload)
        target = self._resolve(put.path)
        if len(put.data) > MAX_CHUNK:
            raise Refused(Status.TOO_LARGE, f"{len(put.data)} bytes, at most {MAX_CHUNK}")
        if put.offset == 0:
            self._upload = _Upload(target, bytearray())
        upload = self._upload
        if upload is None or upload.target != target or put.offset > len(upload.data):
            held = len(upload.data) if upload and upload.target == target else 0
            raise Refused(Status.BAD_OFFSET, f"offset {put.offset}, the unit holds {held}")
        end = put.offset + len(put.data)
        if end > self.capacity:
            self._upload = None
            raise Refused(Status.NO_SPACE, f"{end} bytes, the unit has room for "
                                           f"{self.capacity}")
        upload.data[put.offset:end] = put.data  # a chunk sent twice lands in the same place
        return Count(len(upload.data)).encode()

    def _commit(self, payload: bytes) -> bytes:
        commit = Commit.decode(payload)
        target = self._resolve(commit.path)
        upload = self._upload
        if upload is None or upload.target != target:
            raise Refused(Status.NOT_FOUND, f"no upload in progress for {commit.path}")
        if commit.size != len(upload.data):
            raise Refused(Status.SIZE_MISMATCH,
                          f"commit says {commit.size} bytes, the unit holds {len(upload.data)}")
        self._upload = None
        stored = bytearray(upload.data)
        if self.misbehaviour.corrupt_storage and stored:  # a bad flash cell
            stored[self.misbehaviour.rng.randrange(len(stored))] ^= 0x01
        self._store(target, bytes(stored))
        # The digest of the file as stored, so a storage fault shows at once.
        return Digest(hashlib.sha256(stored).digest(), len(stored)).encode()

    def _get(self, payload: bytes) -> bytes:
        get = Get.decode(payload)
        if get.length > MAX_CHUNK:
            raise Refused(Status.TOO_LARGE, f"{get.length} bytes, at most {MAX_CHUNK}")
        data = self._read(get.path)
        return data[get.offset:get.offset + get.length]

    def _hash(self, payload: bytes) -> bytes:
        data = self._read(PathOnly.decode(payload).path)
        return Digest(hashlib.sha256(data).digest(), len(data)).encode()

    def _keygen(self, payload: bytes) -> bytes:
        """Keep the key at `path` (made first, P-256, 0600, if there is none) and answer the
        CSR for it; the key itself never leaves the unit."""
        request = Keygen.decode(payload)
        target = self._resolve(request.path)
        try:
            key = certs.load_key(target.read_bytes())
        except FileNotFoundError:
            key = certs.new_key()
            self._store(target, certs.csr_for(key, request.common_name).key_pem)
        except (OSError, certs.CertError) as exc:
            raise Refused(Status.IO_ERROR, f"{request.path}: {exc}") from exc
        return certs.csr_for(key, request.common_name).csr_pem.encode()

    def _resolve(self, path: str) -> Path:
        """`path` under the root (absolute paths too); never anywhere outside it."""
        parts = [p for p in PurePosixPath(path).parts if p not in ("/", ".")]
        if not parts or ".." in parts or "\x00" in path:
            raise Refused(Status.BAD_PATH, f"{path!r} is empty or leaves the unit's storage")
        target = self.root.joinpath(*parts)
        if not target.resolve().is_relative_to(self.root):  # a symlink pointing out
            raise Refused(Status.BAD_PATH, f"{path!r} leads outside the unit's storage")
        return target

    def _read(self, path: str) -> bytes:
        target = self._resolve(path)
        try:
            return target.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise Refused(Status.NOT_FOUND, path) from exc
        except OSError as exc:
            raise Refused(Status.IO_ERROR, str(exc)) from exc

    def _store(self, target: Path, data: bytes) -> None:
        """Write `data` to a 0600 temp file beside `target`, then rename it into place."""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                    file.flush()
                    os.fchmod(file.fileno(), 0o600)
                    os.fsync(file.fileno())
                os.replace(temp, target)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
                raise
        except OSError as exc:
            status = Status.NO_SPACE if exc.errno == errno.ENOSPC else Status.IO_ERROR
            raise Refused(status, str(exc)) from exc


def _damage(frame: bytes, m: Misbehaviour) -> bytes:
    """The reply as the misbehaving unit sends it."""
    if m.garbage:
        return m.rng.randbytes(len(frame))
    if m.corrupt_next > 0:
        m.corrupt_next -= 1
        # Past the header, so the frame still parses and fails its CRC (rather than vanish).
        damaged = bytearray(frame)
        damaged[m.rng.randrange(HEADER.size, len(frame))] ^= 0xFF
        return bytes(damaged)
    return frame


async def run_framed_unit(sim: SimPty, root: Path, identity: Identity, *,
                          capacity: int = CAPACITY, keygen: bool = True) -> None:
    """Serve the framed protocol on `sim` until it is unplugged. Silence, dropped bytes and
    hang-ups are SimPty's doing; garbage, corrupt replies and bad storage are done here."""
    unit = FramedUnit(root, identity, sim.misbehaviour, capacity, keygen=keygen)
    decoder = FrameDecoder()
    try:
        while True:
            for event in decoder.feed(await sim.read()):
                reply = unit.handle(event)
                if reply is not None:
                    await sim.write(_damage(reply.encode(), sim.misbehaviour))
    except Unplugged:
        return
