"""Hardware identities: a unit's MAC or chip serial, normalised so one unit has one spelling."""

from __future__ import annotations

import re

_MAC = re.compile(
    r"^(?:[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}"  # aa:bb:cc:dd:ee:ff
    r"|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}"  # aabb.ccdd.eeff
    r"|[0-9A-Fa-f]{12})$"
)
_SERIAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")


class HardwareIdError(ValueError):
    """A hardware identity that is neither a MAC nor an acceptable chip serial."""


def normalise(text: str) -> str:
    """A MAC becomes 12 upper-case hex digits (as RainMaker's claim API wants); a chip serial
    is upper-cased. Anything else is refused so unit data cannot carry surprises."""
    if not isinstance(text, str):
        raise HardwareIdError("a hardware id must be a string")
    stripped = text.strip()
    if _MAC.match(stripped):
        return re.sub(r"[:.-]", "", stripped).upper()
    if _SERIAL.match(stripped):
        return stripped.upper()
    raise HardwareIdError(
        "a hardware id is a MAC (aa:bb:cc:dd:ee:ff) or a chip serial of 1-64 letters, digits "
        f"and . _ : / - ; got {text[:80]!r}"
    )
