"""How a user's claim is decided, apart from storage: which answers may reveal what."""

from __future__ import annotations

import datetime as dt

from factory.secret_hash import burn, verify_secret
from factory.testbed.registry.model import DeviceRow, parse_time


def proves_knowledge(device: DeviceRow | None, secret: str | None) -> bool:
    """Whether the caller showed what the label shows (the UCI and, if the unit has one, its
    secret). Unknown UCIs and missing secrets cost the same hashing as a real check, so the
    time of a refusal does not tell them apart. CPU-bound: run it off the event loop."""
    if device is None:
        burn()
        return False
    encoded = device.registration.claim_secret_hash
    if encoded is None:
        return True
    if secret is None:
        burn()
        return False
    return verify_secret(secret, encoded)


def secret_expired(device: DeviceRow, now: dt.datetime) -> bool:
    """Whether the unit's claim secret no longer claims it (units without one never expire)."""
    expires = device.registration.claim_expires
    return expires is not None and now >= parse_time(expires)
