"""Each driver's settings, as parsed from a fixture's config table (frozen, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConsoleSettings:
    """A unit whose serial console is a POSIX shell."""

    prompt: str = r"[#$] ?$"  # regex the shell's prompt matches (end of what it printed)
    login_user: str = ""  # answered to a `login:` prompt when set
    login_password: str = ""  # never logged or journaled
    identify_command: str = "cat /sys/class/net/eth0/address"
    timeout: float = 5.0  # seconds for one command's answer
    chunk_size: int = 768  # base64 characters per line sent (the tty's line buffer is 4 KiB)


@dataclass(frozen=True)
class FramedSettings:
    """A unit running the framed factory protocol (docs/framed-protocol.md)."""

    timeout: float = 2.0  # seconds for one reply frame
    retries: int = 3  # resends of a frame that got no reply or a corrupt one
    chunk_size: int = 1024  # payload bytes per PUT/GET frame
