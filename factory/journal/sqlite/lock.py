"""One station per journal: `factory serve` holds `<journal>.lock` (flock, with its pid in it)
while it serves, so a second one is refused at start, naming the first. The CLI does not take
it: its writes go beside the station's, each in its own transaction."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from factory.files import open_private_update
from factory.journal.errors import JournalInUse


def lock_path(journal: Path) -> Path:
    return journal.with_name(journal.name + ".lock")


def hold_serve_lock(journal: Path) -> int:
    """Take the serve lock of `journal` for this process; returns its descriptor (closing it
    lets go). JournalInUse, naming the holder, if another process serves the journal."""
    path = lock_path(journal)
    fd = open_private_update(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise JournalInUse(
            f"journal {journal} is already served by {holder}; stop that station first, or "
            f"give this one its own journal ([station] journal)") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _holder(fd: int) -> str:
    """'process PID (COMMAND LINE)' from the lock file and /proc, as far as they tell."""
    text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    if not text.isdigit():
        return "another process"
    command = ""
    with contextlib.suppress(OSError):
        raw = Path(f"/proc/{text}/cmdline").read_bytes()
        command = " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)
    return f"process {text} ({command})" if command else f"process {text}"
