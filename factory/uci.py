"""Unique Claim IDs: 80 random bits in Crockford base32, with a mod-37 check symbol for people.

The canonical form (16 symbols, no check) is what machines see. The human form groups the
symbols in fours and appends the check symbol: ``7KQ2-M9XD-3FHT-0W5R-W``.
"""

from __future__ import annotations

import base64
import re
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Crockford's check alphabet: the 32 symbols plus five more, because the check is mod 37.
CHECK_ALPHABET = ALPHABET + "*~$=U"
BITS = 80
LENGTH = BITS // 5  # 16 symbols

_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
_CHECK_VALUE = {ch: i for i, ch in enumerate(CHECK_ALPHABET)}
# Look-alikes people type for 1 and 0.
_ALIASES = str.maketrans({"I": "1", "L": "1", "O": "0"})
_SEPARATORS = str.maketrans("", "", "- \t")
# RFC 4648 base32 packs bits the same way; only the symbols differ.
_FROM_RFC4648 = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", ALPHABET.encode())
# What separates a UCI from the rest of a URL or a scanned code.
_PARTS = re.compile(r"[/?#=&:;,\s]+")


class UciError(ValueError):
    """A string that is not a UCI; the message says what is wrong with it."""


def new_uci() -> str:
    """Return a fresh canonical UCI from the OS CSPRNG."""
    return new_ucis(1)[0]


def new_ucis(count: int) -> list[str]:
    """`count` fresh canonical UCIs, drawn and encoded in one go (10 bytes -> 16 symbols,
    so the blocks never straddle)."""
    text = base64.b32encode(secrets.token_bytes(count * BITS // 8)).translate(_FROM_RFC4648)
    return [text[i : i + LENGTH].decode() for i in range(0, count * LENGTH, LENGTH)]


def encode(value: int) -> str:
    """Write an 80-bit integer as 16 Crockford symbols."""
    if not 0 <= value < 1 << BITS:
        raise UciError(f"a UCI is an {BITS}-bit number; {value} is out of range")
    out = []
    for _ in range(LENGTH):
        out.append(ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def decode(canonical: str) -> int:
    """The integer behind a canonical UCI."""
    value = 0
    for ch in canonical:
        value = (value << 5) | _VALUE[ch]
    return value


def check_symbol(canonical: str) -> str:
    """Crockford's check symbol: the UCI's value mod 37."""
    return CHECK_ALPHABET[decode(canonical) % 37]


def human(canonical: str) -> str:
    """The form printed on labels: groups of four and the check symbol."""
    groups = [canonical[i : i + 4] for i in range(0, LENGTH, 4)]
    return "-".join([*groups, check_symbol(canonical)])


def parse(text: str) -> str:
    """Parse a UCI in any accepted form and return its canonical form.

    Accepts lower case, hyphens and spaces, I/L for 1 and O for 0, with or without the
    check symbol; a check symbol, when present, must match.
    """
    if not isinstance(text, str):
        raise UciError("a UCI must be a string")
    if not text.isascii():  # upper() maps 'ı' to I and 'ſ' to S: never from a label
        bad = next(ch for ch in text if not ch.isascii())
        raise UciError(f"{bad!r} is not an ASCII letter or digit, so not a UCI symbol")
    cleaned = text.translate(_SEPARATORS).upper().translate(_ALIASES)
    if len(cleaned) not in (LENGTH, LENGTH + 1):
        raise UciError(
            f"a UCI has {LENGTH} symbols ({LENGTH + 1} with the check symbol); "
            f"got {len(cleaned)} in {text!r}"
        )
    body = cleaned[:LENGTH]
    for pos, ch in enumerate(body, start=1):
        if ch not in _VALUE:
            raise UciError(f"{ch!r} at position {pos} is not a Crockford base32 symbol")
    if len(cleaned) == LENGTH + 1:
        given = cleaned[LENGTH]
        if given not in _CHECK_VALUE:
            raise UciError(f"{given!r} is not a Crockford check symbol")
        expected = check_symbol(body)
        if given != expected:
            raise UciError(
                f"wrong check symbol {given!r} (expected {expected!r}): "
                "a symbol was mistyped or two were swapped"
            )
    return body


def find(text: str) -> str:
    """The canonical UCI that `text` names: a UCI in any form, or a URL (a claim URL) or
    other text with one as a part of it (the last such part). UciError says why the whole
    text is not a UCI when no part is one."""
    text = text.strip()
    try:
        return parse(text)
    except UciError as exc:
        first = exc
    for part in reversed(_PARTS.split(text)):
        try:
            return parse(part)
        except UciError:
            continue
    raise first
