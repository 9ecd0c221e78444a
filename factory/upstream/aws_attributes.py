"""How a unit's registration is kept in AWS IoT thing attributes, and read back. Pure.

AWS allows attribute values of at most 800 characters from `[A-Za-z0-9_.,@/:#=[]-]` — no
spaces, no `+`. So a value is stored as is when it keeps to that set, and otherwise every byte
of its UTF-8 outside the set becomes `#XX` (upper-case hex); `#` itself is `#23`. "Acme Air
Sensor" is stored as `Acme#20Air#20Sensor`. Empty values are left out (AWS drops them) and read
back as "". Times are UTC ISO 8601 with a `Z` (`2026-11-20T09:14:03Z`), which need no escapes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime

from factory.upstream.adapter import Registration

MAX_VALUE = 800
# The registration's own attributes: these decide whether a repeat is the same unit.
REGISTERED = ("product", "model", "hardware_id", "name", "station", "created",
              "claim_secret_hash", "claim_expires")
# Written once, not compared: when the thing was made, and who pre-claimed it when.
REGISTERED_AT, CLAIM_ACCOUNT, CLAIMED_AT = "registered", "claim_account", "claimed_at"

_PLAIN = re.compile(r"[A-Za-z0-9_.,@/:=\[\]-]")
_ESCAPE = re.compile(r"#([0-9A-F]{2})")


def encode(value: str) -> str:
    """`value` in AWS's attribute character set, reversibly (see the module docstring)."""
    out = []
    for ch in value:
        if _PLAIN.fullmatch(ch):
            out.append(ch)
        else:
            out.extend(f"#{byte:02X}" for byte in ch.encode())
    return "".join(out)


def decode(value: str) -> str:
    """The text `encode` made `value` from."""
    raw = bytearray()
    last = 0
    for match in _ESCAPE.finditer(value):
        raw += value[last:match.start()].encode()
        raw.append(int(match.group(1), 16))
        last = match.end()
    raw += value[last:].encode()
    return raw.decode(errors="replace")


def timestamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def attributes(device: Registration, station: str) -> dict[str, str]:
    """The thing attributes that say who the unit is (without `registered`).
    Raises ValueError naming an attribute that does not fit in 800 characters."""
    values = {"product": device.product, "model": device.model,
              "hardware_id": device.hardware_id, "name": device.name, "station": station,
              "created": timestamp(device.created),
              "claim_secret_hash": device.claim_secret_hash or "",
              "claim_expires": "" if device.claim_expires is None
              else timestamp(device.claim_expires)}
    return stored(values)


def stored(values: Mapping[str, str]) -> dict[str, str]:
    """`values` encoded, empty ones left out; ValueError for one that is too long."""
    out = {}
    for key, value in values.items():
        if not value:
            continue
        encoded = encode(value)
        if len(encoded) > MAX_VALUE:
            raise ValueError(f"attribute {key} is {len(encoded)} characters once escaped for "
                             f"AWS IoT; at most {MAX_VALUE} fit (shorten the {key})")
        out[key] = encoded
    return out


def differing(held: Mapping[str, str], wanted: Mapping[str, str]) -> list[str]:
    """The registration attributes whose values differ between two stored sets."""
    return [key for key in REGISTERED if held.get(key, "") != wanted.get(key, "")]


def read(held: Mapping[str, str], key: str) -> str:
    """One attribute's text ("" when absent)."""
    return decode(held.get(key, ""))


def read_time(held: Mapping[str, str], key: str) -> datetime | None:
    """One time attribute, or None when absent or not a time with a zone."""
    text = held.get(key, "")
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.utcoffset() is not None else None
