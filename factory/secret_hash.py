"""Claim secrets: only a salted PBKDF2 hash leaves the station, and the registry compares in
constant time. Format: ``pbkdf2-sha256$<iterations>$<salt>$<hash>`` (unpadded base64url)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

SCHEME = "pbkdf2-sha256"
DEFAULT_ITERATIONS = 100_000
MIN_ITERATIONS = 10_000
MAX_ITERATIONS = 10_000_000
_FORMAT = re.compile(r"^pbkdf2-sha256\$([0-9]{1,8})\$([A-Za-z0-9_-]{22,})\$([A-Za-z0-9_-]{43})$")
_DROP = str.maketrans("", "", " -\t")


class SecretFormatError(ValueError):
    """A claim_secret_hash that is not in the documented format."""


def normalize(secret: str) -> bytes:
    """What is hashed: the label's text without spaces or hyphens, upper case, UTF-8."""
    return secret.translate(_DROP).upper().encode()


def hash_secret(secret: str, iterations: int = DEFAULT_ITERATIONS,
                salt: bytes | None = None) -> str:
    """The claim_secret_hash for `secret`, with a fresh 16-byte salt (or the given one: the
    station derives a unit's salt, so a resent registration carries the very same hash)."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha256", normalize(secret), salt, iterations)
    return f"{SCHEME}${iterations}${_b64(salt)}${_b64(digest)}"


def check_format(encoded: str) -> None:
    """Raise SecretFormatError unless `encoded` is a usable claim_secret_hash."""
    m = _FORMAT.match(encoded)
    if not m:
        raise SecretFormatError(f"must be {SCHEME}$<iterations>$<salt>$<hash> with unpadded "
                                "base64url salt (>= 16 bytes) and hash (32 bytes)")
    iterations = int(m.group(1))
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise SecretFormatError(f"iterations must be {MIN_ITERATIONS}..{MAX_ITERATIONS}, "
                                f"got {iterations}")


def verify_secret(secret: str, encoded: str) -> bool:
    """Whether `secret` matches `encoded`; constant-time in where they differ."""
    m = _FORMAT.match(encoded)
    if not m:
        return False
    iterations, salt, want = int(m.group(1)), _unb64(m.group(2)), _unb64(m.group(3))
    got = hashlib.pbkdf2_hmac("sha256", normalize(secret), salt, iterations)
    return hmac.compare_digest(got, want)


def burn(iterations: int = DEFAULT_ITERATIONS) -> None:
    """Do the work of one verification and throw it away (for unknown UCIs)."""
    hashlib.pbkdf2_hmac("sha256", b"x", b"factory-registry", iterations)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
