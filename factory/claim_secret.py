"""Per-unit claim secrets for user-claimed products: printed on the unit's label (a physical
channel, as Particle's claim codes), sent upstream only as a salted PBKDF2 hash.

A unit's secret is derived from the station's claim key (32 random bytes in a 0600 file
beside the journal) and the UCI, so nothing secret is journaled or kept per unit, a reprint
shows the same secret, and a resent registration carries the very same hash (its salt is
derived too). Losing the key file loses the ability to reprint secrets, not the units: the
upstream holds the hashes.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from pathlib import Path

from factory import uci as uci_codec
from factory.config import StationConfig
from factory.files import write_in_place
from factory.secret_hash import hash_secret

KEY_BYTES = 32
SECRET_SYMBOLS = 16  # 80 bits, Crockford base32, printed in groups of four


class ClaimSecrets:
    """Derives each unit's claim secret and its hash from the station's claim key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a claim key is {KEY_BYTES} bytes, got {len(key)}")
        self._key = key

    @classmethod
    def open(cls, path: Path) -> ClaimSecrets:
        """The station's claim key at `path`, made (0600) on first use."""
        with contextlib.suppress(FileExistsError):
            write_in_place(path, secrets.token_bytes(KEY_BYTES), exclusive=True, sync=True)
        return cls(path.read_bytes())

    def secret(self, uci: str) -> str:
        """The label's claim secret of unit `uci`, e.g. `7KQ2-M9XD-3FHT-0W5R`."""
        value = int.from_bytes(self._derive("claim-secret", uci)[:10], "big")
        text = uci_codec.encode(value)
        return "-".join(text[i:i + 4] for i in range(0, SECRET_SYMBOLS, 4))

    def secret_hash(self, uci: str) -> str:
        """The claim_secret_hash the upstream gets (CPU-bound, ~0.1 s: off the event loop)."""
        return hash_secret(self.secret(uci), salt=self._derive("claim-salt", uci)[:16])

    def _derive(self, purpose: str, uci: str) -> bytes:
        return hmac.new(self._key, f"{purpose}:{uci}".encode(), hashlib.sha256).digest()


def key_path(journal: Path) -> Path:
    """Where a station keeps its claim key: beside its journal."""
    return journal.with_name("claim-secrets.key")


def for_station(config: StationConfig) -> ClaimSecrets | None:
    """The station's claim secrets when any of its products uses them, else None."""
    if not any(p.claim_secret_days for p in config.products):
        return None
    return ClaimSecrets.open(key_path(config.journal))
