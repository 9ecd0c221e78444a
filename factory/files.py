"""Private files: the one place the station chooses a file's mode. Whatever carries a claim ID,
a key or the journal is made 0600 at creation (never chmod-ed later, so it is not readable by
others even briefly), in a 0700 folder when the station makes the folder."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def private_folder(path: Path) -> None:
    """Make `path` (and its parents) 0700 where missing; an existing folder is left as it is."""
    path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)


def open_private(path: Path, *, exclusive: bool = False) -> int:
    """A write descriptor on `path`, created 0600: truncated if it exists, or, `exclusive`,
    FileExistsError if it does (a file made once, such as a key)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    return os.open(path, flags, FILE_MODE)


def open_private_update(path: Path, *, create: bool = True) -> int:
    """A read-write descriptor on `path`, kept as it is (created 0600 when `create`): for small
    files updated in place under a lock, such as the journal's anchor and lock files."""
    if create:
        private_folder(path.parent)
    return os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), FILE_MODE)


def create_private(path: Path) -> None:
    """An empty 0600 file at `path` unless one exists: SQLite databases, whose -wal and -shm
    files then get the same mode."""
    private_folder(path.parent)
    with contextlib.suppress(FileExistsError):
        os.close(open_private(path, exclusive=True))


@contextlib.contextmanager
def replacing(path: Path, mode: str = "wb", *, sync: bool = False,
              **options: Any) -> Iterator[IO[Any]]:
    """A file object on a 0600 temporary file beside `path` that replaces `path` whole when the
    block ends (synced first when `sync`), so readers see the old file or the new one."""
    private_folder(path.parent)
    temp = path.with_name(f".{path.name}.tmp")
    with os.fdopen(open_private(temp), mode, **options) as out:
        yield out
        if sync:
            out.flush()
            os.fsync(out.fileno())
    os.replace(temp, path)


def write_private(path: Path, data: bytes, *, sync: bool = True) -> None:
    """`data` at `path`, 0600 in a 0700 folder, appearing whole or not at all."""
    with replacing(path, sync=sync) as out:
        out.write(data)


def write_in_place(path: Path, data: bytes, *, exclusive: bool = False,
                   sync: bool = False) -> None:
    """`data` at `path`, 0600, written where it is: for files that can be made again if a crash
    cuts them short, or (`exclusive`) made once and never replaced."""
    with os.fdopen(open_private(path, exclusive=exclusive), "wb") as out:
        out.write(data)
        if sync:
            out.flush()
            os.fsync(out.fileno())
