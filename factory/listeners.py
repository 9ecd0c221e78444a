"""Who holds a TCP port: so "address in use" can name the other program (Linux /proc; None
where it cannot be known, e.g. another user's process without the rights to look); and the
one-line error of every long-running command that cannot have its listening address."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from pathlib import Path

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp{,6}


def _listening_inodes(port: int, proc: Path) -> set[str]:
    inodes = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (proc / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == _LISTEN and \
                        int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    return inodes


def holder(port: int, proc: Path = Path("/proc")) -> str | None:
    """`pid N (command line)` of a process listening on TCP `port`, if it can be seen."""
    inodes = {f"socket:[{inode}]" for inode in _listening_inodes(port, proc)}
    if not inodes:
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    raw = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip()
                    return f"pid {entry.name} ({raw.decode(errors='replace')[:120]})"
    return None


class ListenError(Exception):
    """A server cannot have its listening address; the message is the whole story, one line."""


def cannot_listen(host: str, port: int, exc: OSError, option: str) -> ListenError:
    """"Address in use" and its kin in one line: where, why, who holds it if it can be seen,
    and `option`, the setting that chooses another address."""
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        who = holder(port)
        return ListenError(f"cannot listen on {where}: the address is in use"
                           f"{f' by {who}' if who else ''}; stop that program or choose "
                           f"another address ({option})")
    # An address not on this machine, a port below 1024 without the right, a name that does
    # not resolve: the OS says which. asyncio wraps the first two in a longer text of its own.
    if isinstance(exc, socket.gaierror) or not exc.errno or exc.errno < 0:
        reason = exc.strerror or str(exc) or type(exc).__name__
    else:
        reason = os.strerror(exc.errno)
    return ListenError(f"cannot listen on {where}: {reason}; choose another address ({option})")
