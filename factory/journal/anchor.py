"""The journal's anchor: its chain head (seq and hash) kept in a small local file
(`<journal>.anchor`), synced after each commit and before anyone is told, so a journal that
lost its newest events (a cut WAL, a deleted -shm, an old copy put back; for a PostgreSQL
journal, the database restored from an old backup) is caught at start.

The file holds two fixed-size slots, each a checksummed line `factory-anchor EPOCH SEQ HASH
AT CHECK`. A write goes to the slot that does not hold the best value, so a torn write can
only lose the value being written, never the previous good one. The best value is the valid
slot with the highest (epoch, seq); accepting a loss starts a new epoch. Writers (the station
and the CLI) flock the file while reading and writing it and never lower it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from factory.files import open_private_update

ACCEPT = ("the station refuses to issue until a person acts: put back the journal's backup "
          "if there is one, or run `factory journal accept-loss` to accept it and go on")
MAGIC = "factory-anchor"
SLOT = 192
TRIES = 10  # times another process may move the anchor under one commit's advance


@dataclass(frozen=True)
class Mark:
    """A point of the chain: event `seq` has hash `hash` (seq 0: the empty journal)."""

    seq: int
    hash: str
    epoch: int = 0
    at: str = ""  # when it was written (journal time)

    def same_point(self, other: Mark | None) -> bool:
        return other is not None and (self.seq, self.hash) == (other.seq, other.hash)


@dataclass(frozen=True)
class Reading:
    """What the file holds: its best value, or none (`empty`: nothing written yet)."""

    mark: Mark | None
    empty: bool


def anchor_path(journal: Path) -> Path:
    return journal.with_name(journal.name + ".anchor")


def encode(mark: Mark) -> bytes:
    body = f"{MAGIC} {mark.epoch} {mark.seq} {mark.hash} {mark.at or '-'}"
    line = f"{body} {_check(body)}\n".encode()
    return line.ljust(SLOT, b" ")


def decode(raw: bytes) -> Mark | None:
    """The slot's value, or None for a slot never written, torn or damaged."""
    parts = raw.decode("ascii", "replace").split()
    if len(parts) != 6 or parts[0] != MAGIC or _check(" ".join(parts[:5])) != parts[5]:
        return None
    try:
        return Mark(int(parts[2]), parts[3], int(parts[1]), "" if parts[4] == "-" else parts[4])
    except ValueError:
        return None


def _check(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()[:16]


class AnchorFile:
    """The anchor file of one journal, open for the journal's lifetime."""

    def __init__(self, path: Path, *, create: bool) -> None:
        self.path = path
        self._fd = open_private_update(path, create=create)

    def close(self) -> None:
        os.close(self._fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _slots(self) -> tuple[Reading, int]:
        """The best value and the slot to write next (the other one)."""
        raw = os.pread(self._fd, 2 * SLOT, 0)
        marks = [decode(raw[:SLOT]), decode(raw[SLOT:2 * SLOT])]
        valid = [(m.epoch, m.seq, i) for i, m in enumerate(marks) if m is not None]
        if not valid:
            return Reading(None, not raw.strip(b"\x00 \n")), 0
        best = max(valid)[2]
        return Reading(marks[best], False), 1 - best

    def read(self) -> Reading:
        with self._locked():
            return self._slots()[0]

    def advance(self, mark: Mark, expected: Mark | None) -> Mark | None:
        """Write `mark` if the file still holds `expected` (what this journal wrote or checked
        last) and `mark` is newer; returns what the file holds afterwards. A value another
        process wrote is returned unchanged, for the caller to check against its chain."""
        with self._locked():
            reading, free = self._slots()
            held = reading.mark
            if held != expected and not (held is None and reading.empty):
                return held
            if held is not None and held.seq >= mark.seq:  # never lowered
                return held
            new = Mark(mark.seq, mark.hash, held.epoch if held else 0, mark.at)
            self._write(free, new)
            return new

    def reset(self, mark: Mark) -> Mark:
        """Anchor at `mark` in a new epoch, whatever the file held (a person accepted a loss)."""
        with self._locked():
            reading, free = self._slots()
            epoch = reading.mark.epoch + 1 if reading.mark else 0
            new = Mark(mark.seq, mark.hash, epoch, mark.at)
            self._write(free, new)
            return new

    def _write(self, slot: int, mark: Mark) -> None:
        os.pwrite(self._fd, encode(mark), slot * SLOT)
        os.fdatasync(self._fd)


async def advance_after_commit(anchor: AnchorFile, head: Mark, anchored: Mark | None,
                               in_chain: Callable[[Mark], Awaitable[bool]],
                               ) -> tuple[Mark | None, str]:
    """Anchor `head`, this journal's newest commit; `anchored`: what it wrote or checked last.
    Another process of the station (the CLI) may move the anchor meanwhile: its mark must be
    in this chain (`in_chain`), and one at or past `head` anchors this commit too. Returns
    what the anchor holds as far as this journal knows, and "" once `head` is anchored, or
    why not: "split" (the anchor holds a head this chain does not) or "moving" (another
    process kept moving it below `head`)."""
    for _ in range(TRIES):
        held = await asyncio.to_thread(anchor.advance, head, anchored)
        if held is not None and (held.same_point(head) or held == anchored):
            return held, ""
        if held is None or not await in_chain(held):
            return anchored, "split"
        anchored = held
        if held.seq >= head.seq:
            return held, ""
    return anchored, "moving"


async def check(anchor: AnchorFile, head: Mark, hash_at: Callable[[int], Awaitable[str | None]],
                *, writable: bool) -> tuple[Mark | None, str]:
    """The anchor checked against the chain whose newest event is `head` (`hash_at(seq)`: the
    chain's hash of event seq, None if it has none): (the mark both agree on, '') or (None,
    why the journal must hold). A journal with no anchor yet starts one (`writable`)."""
    reading = await asyncio.to_thread(anchor.read)
    mark = reading.mark
    if mark is None:
        if not reading.empty:
            return None, (f"the anchor {anchor.path} is unreadable (both copies damaged), so "
                          f"the journal's completeness cannot be checked; {ACCEPT}")
        if writable:
            mark = await asyncio.to_thread(anchor.advance, head, None)
        return mark, ""
    if mark.seq > head.seq:
        return None, (f"events {head.seq + 1}..{mark.seq} are missing (the anchor, written "
                      f"{mark.at}, says the journal reached event {mark.seq}); {ACCEPT}")
    if await hash_at(mark.seq) != mark.hash:
        return None, (f"event {mark.seq} is not the one the anchor (written {mark.at}) "
                      "recorded: the journal was replaced or rewritten since; " + ACCEPT)
    if writable and mark.seq < head.seq:  # the newest commit's anchor write was cut short
        mark = await asyncio.to_thread(anchor.advance, head, mark)
    return mark, ""
