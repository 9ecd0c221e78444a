"""What the console driver types: command lines, a file as printf/base64 commands, the
verify command and its answer (pure: strings and bytes in, strings out; no port)."""

from __future__ import annotations

import base64
import hashlib
import itertools
import posixpath
import re
import shlex

from factory.units.driver import Verification
from factory.units.errors import ProtocolError, UnitRefused, VerifyMismatch

MAX_LINE = 4000  # characters per command line; a tty's canonical line holds at most 4095
_HEX = re.compile(r"[0-9a-f]+")


def marked(tag: int, command: str) -> str:
    """`command` as one line between the begin and end markers of `tag`."""
    return f"echo @FS''{tag}@;{command};echo @FS''{tag}@$?\n"


_PLAIN = re.compile(rb"[\x20-\x7e\n]*")


def write_commands(path: str, data: bytes, chunk_size: int,
                   max_line: int = MAX_LINE) -> list[str]:
    """The commands that store `data` at `path` atomically with mode 0600, each short enough
    to be `marked` into a line of at most `max_line` characters."""
    if _PLAIN.fullmatch(data):
        return _text_commands(path, data.decode("ascii"), chunk_size, max_line)
    _check_path(path)
    folder = posixpath.dirname(path) or "."
    tmp = shlex.quote(posixpath.join(folder, ".fs.b64"))
    new = shlex.quote(posixpath.join(folder, ".fs.new"))
    # Both files exist with mode 0600 before any byte of the payload is in them.
    first = f"mkdir -p {shlex.quote(folder)}&&:>{tmp}&&:>{new}&&chmod 600 {tmp} {new}"
    budget = max_line - _size(marked(10**9, ""))
    size = max(4, min(chunk_size, budget - _size(first) - _size(tmp) - 24) // 4 * 4)
    text = base64.b64encode(data).decode("ascii")
    chunks = [text[i:i + size] for i in range(0, len(text), size)]
    # Nothing moves into place unless every line arrived (an append that failed, a line the
    # tty cut short): the base64 file must be exactly as long as what we sent.
    last = (f"[ $(wc -c<{tmp}) -eq {len(text) + len(chunks)} ]&&base64 -d {tmp}>{new}"
            f"&&mv -f {new} {shlex.quote(path)}&&rm -f {tmp}")

    def printf(group: list[str]) -> str:  # base64 needs no quoting; quoted all the same
        return "printf '%s\\n' " + " ".join(f"'{c}'" for c in group) + f">>{tmp}"

    commands: list[str] = []
    parts: list[str] = [first]
    group: list[str] = []
    for chunk in chunks:
        if _size("&&".join([*parts, printf([*group, chunk])])) > budget:
            commands.append("&&".join([*parts, printf(group)] if group else parts))
            parts, group = [], []
        group.append(chunk)
    tail = [*parts, printf(group)] if group else parts
    if _size("&&".join([*tail, last])) <= budget:
        commands.append("&&".join([*tail, last]))
    else:
        commands += ["&&".join(tail), last]
    if max(map(_size, commands)) > budget:
        raise UnitRefused(f"the file path {path!r} is too long for the unit's command line")
    return commands


def _text_commands(path: str, text: str, chunk_size: int, max_line: int) -> list[str]:
    """Printable ASCII as itself: each piece a single-quoted printf argument, '%s\\n' for
    pieces that end a line, '%s' for the rest; sizes checked before the `mv`."""
    _check_path(path)
    folder = posixpath.dirname(path) or "."
    new = shlex.quote(posixpath.join(folder, ".fs.new"))
    first = f"mkdir -p {shlex.quote(folder)}&&:>{new}&&chmod 600 {new}"
    last = f"[ $(wc -c<{new}) -eq {len(text)} ]&&mv -f {new} {shlex.quote(path)}"
    budget = max_line - _size(marked(10**9, ""))
    size = max(16, min(chunk_size, budget - _size(first) - 64) // 2)
    pieces: list[tuple[str, bool]] = []  # (text, ends a line)
    lines = text.split("\n")
    for number, line in enumerate(lines):
        ends = number < len(lines) - 1
        cuts = [line[i:i + size] for i in range(0, len(line), size)] or [""]
        pieces += [(cut, ends and k == len(cuts) - 1) for k, cut in enumerate(cuts)]
    if pieces and pieces[-1] == ("", False):
        pieces.pop()  # the text ended with a newline: nothing after it

    def quoted(piece: str) -> str:
        return "'" + piece.replace("'", "'\\''") + "'"

    def printf(group: list[tuple[str, bool]]) -> str:
        fmt = "'%s\\n'" if group[0][1] else "'%s'"
        return f"printf {fmt} " + " ".join(quoted(p) for p, _ in group) + f">>{new}"

    commands: list[str] = []
    parts: list[str] = [first]
    group: list[tuple[str, bool]] = []
    for piece in pieces:
        if group and piece[1] != group[0][1]:  # the format changes: close this printf
            parts.append(printf(group))
            group = []
        candidate = "&&".join([*parts, printf([*group, piece])])
        if _size(candidate) > budget and (parts or group):
            if group:
                parts.append(printf(group))
            commands.append("&&".join(parts))
            parts, group = [], []
        group.append(piece)
    if group:
        parts.append(printf(group))
    if parts and _size("&&".join([*parts, last])) <= budget:
        commands.append("&&".join([*parts, last]))
    else:
        if parts:
            commands.append("&&".join(parts))
        commands.append(last)
    if max(map(_size, commands)) > budget:
        raise UnitRefused(f"the file path {path!r} is too long for the unit's command line")
    return commands


def read_command(path: str) -> str:
    """Print the file at `path` as base64 (the unit's own base64, which writing needs too)."""
    _check_path(path)
    return f"base64<{shlex.quote(path)}"


def read_answer(path: str, output: str) -> bytes:
    """The file's bytes from the unit's answer to `read_command`."""
    try:
        return base64.b64decode("".join(output.split()), validate=True)
    except ValueError as exc:
        raise ProtocolError(f"the unit's base64 of {path} does not decode: {exc}") from exc


def verify_command(path: str) -> str:
    """Print the best digest the unit has (sha256sum, md5sum, cksum) after its name."""
    _check_path(path)
    return ("if command -v sha256sum>/dev/null;then echo sha256;sha256sum;"
            "elif command -v md5sum>/dev/null;then echo md5;md5sum;"
            f"else echo cksum;cksum;fi<{shlex.quote(path)}")


def check_digest(path: str, data: bytes, output: str) -> Verification:
    """The unit's answer to `verify_command` against our own digest of `data`."""
    words = output.split()
    if len(words) < 2 or words[0] not in ("sha256", "md5", "cksum"):
        raise ProtocolError(f"the unit's checksum of {path} makes no sense: {output!r}")
    algorithm, theirs = words[0], words[1].lower()
    if algorithm == "cksum":
        ours = str(posix_cksum(data))
        if not theirs.isdigit():
            raise ProtocolError(f"the unit's cksum of {path} is not a number: {output!r}")
    else:
        ours = hashlib.new(algorithm, data, usedforsecurity=False).hexdigest()
        if not _HEX.fullmatch(theirs) or len(theirs) != len(ours):
            raise ProtocolError(f"the unit's {algorithm} of {path} is not one: {output!r}")
    if theirs != ours:
        raise VerifyMismatch(f"{path} on the unit has {algorithm} {theirs}, but the "
                             f"{len(data)} bytes we wrote have {algorithm} {ours}")
    return Verification(algorithm=algorithm, digest=theirs, size=len(data))


def posix_cksum(data: bytes) -> int:
    """The CRC that POSIX `cksum` prints: CRC-32 (0x04C11DB7, MSB first) over the data and
    then its length, complemented."""
    crc = 0
    length = len(data)
    tail = bytearray()
    while length:
        tail.append(length & 0xFF)
        length >>= 8
    for byte in itertools.chain(data, tail):
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[(crc >> 24) ^ byte]
    return crc ^ 0xFFFFFFFF


def _crc_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        crc = i << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def _check_path(path: str) -> None:
    if not path or path.endswith("/") or any(ord(c) < 32 or ord(c) == 127 for c in path):
        raise UnitRefused(f"the file path {path!r} is not a file name, or holds control "
                          "characters; fix the configured path")


def _size(text: str) -> int:
    """Bytes on the wire (a tty counts bytes, and paths may not be ASCII)."""
    return len(text.encode())
