"""API tokens: random, shown once, stored as a SHA-256 hash, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

PREFIX = "fst_"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")  # \Z: `$` lets "name\n" in


def new_token() -> str:
    """A fresh bearer token (256 bits); the prefix makes a leaked one easy to grep for."""
    return PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the journal stores instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def same_hash(a: str, b: str) -> bool:
    """Compare two token hashes without leaking where they differ."""
    return hmac.compare_digest(a.encode(), b.encode())


def valid_name(name: str) -> bool:
    """Token names end up in journal events as the actor, so they stay plain."""
    return bool(_NAME.match(name))
