"""The `particle` upstream: a verified unit's Particle device ID is imported into the Particle
product its station product maps to (`POST /v1/products/:product/devices`), as a product creator
does at manufacture (docs/upstream-particle.md).

The unit's hardware id is its Particle device ID (24 hex digits): the fixture identifies such
units by it. Importing is safe to repeat: a device already in the product is success.
Claim codes are not made here: Particle makes a product's claim codes only for a customer's
token, and they last about an hour, so none can be printed on a label at manufacture.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from factory.upstream.adapter import (
    Certificate,
    ClaimStatus,
    ConflictError,
    DeviceStatus,
    PermanentError,
    RegisterResult,
    Registration,
    RetryableError,
    canonical_uci,
)
from factory.upstream.answers import snippet
from factory.upstream.particle_api import ParticleApi

_DEVICE_ID = re.compile(r"^[0-9A-Fa-f]{24}\Z")
# The lists of Particle's import answer, in the order they are consulted.
Outcome = Literal["updated", "existing", "nonmember", "invalid", "protected"]
_LISTS: tuple[tuple[str, Outcome], ...] = (
    ("updatedDeviceIds", "updated"), ("existingDeviceIds", "existing"),
    ("nonmemberDeviceIds", "nonmember"), ("protectedDeviceIds", "protected"),
    ("invalidDeviceIds", "invalid"))


def device_id(hardware_id: str) -> str | None:
    """The Particle device ID a unit's hardware id stands for (lower case, as Particle writes
    them), or None when it is not one (24 hex digits)."""
    return hardware_id.lower() if _DEVICE_ID.match(hardware_id) else None


@dataclass(frozen=True)
class ImportAnswer:
    """What Particle's answer to importing device IDs says about one of them."""

    outcome: Outcome | None  # None: the answer does not mention the device at all

    @classmethod
    def read(cls, answer: Any, device: str) -> ImportAnswer:
        """Where `device` appears in the answer's lists (compared without case)."""
        if not isinstance(answer, Mapping):
            return cls(None)
        for key, outcome in _LISTS:
            ids = answer.get(key)
            if isinstance(ids, Sequence) and not isinstance(ids, str) and any(
                    isinstance(i, str) and i.lower() == device for i in ids):
                return cls(outcome)
        return cls(None)


class ParticleUpstream:
    """Imports units into Particle products through `api`. `products` maps a station product
    id to its Particle product (numeric id or slug)."""

    def __init__(self, api: ParticleApi, *, products: Mapping[str, str]) -> None:
        self._api, self._products = api, dict(products)

    async def register(self, device: Registration) -> RegisterResult:
        """Import the unit's device ID into its product (created False when it was there
        already); a device Particle will not put there is a ConflictError for a person."""
        uci = canonical_uci(device.uci)
        particle_id = device_id(device.hardware_id)
        if particle_id is None:
            raise PermanentError(
                f"register {uci}: its hardware id {device.hardware_id!r} is not a Particle "
                f"device ID (24 hex digits); a particle product's fixture must identify each "
                f"unit by its device ID (particle identify, or the USB serial number)",
                status=400)
        product = self._products.get(device.product)
        if product is None:
            raise PermanentError(f"register {uci}: station product {device.product} has no "
                                 f"Particle product; add it to [upstream.particle_products]",
                                 status=400)
        step = f"adding device {particle_id} (unit {uci}) to Particle product {product}"
        answer = await self._api.call("POST", f"v1/products/{product}/devices",
                                      body={"id": particle_id}, what=step)
        outcome = ImportAnswer.read(answer, particle_id).outcome
        if outcome is None:
            raise RetryableError(f"{step}: Particle's answer does not list the device: "
                                 f"{snippet(repr(answer).encode())}")
        if outcome not in ("updated", "existing"):
            raise ConflictError(f"{step}: {_REFUSALS[outcome]}", status=409,
                                problem={"particle": outcome, "device_id": particle_id})
        return RegisterResult(created=outcome == "updated", device=DeviceStatus(
            uci=uci, product=device.product, hardware_id=particle_id, model=device.model,
            name=device.name, created=device.created, registered=datetime.now(UTC),
            has_claim_secret=False, claim_expires=None, claim=ClaimStatus("unclaimed"),
            certificate=None))

    async def preclaim(self, uci: str, account: str, csr_pem: str) -> Certificate:
        """Particle devices carry Particle's own keys and are claimed by their users."""
        raise PermanentError(f"pre-claim {uci}: the particle upstream cannot pre-claim units "
                             f"(Particle certifies its devices itself; customers claim them "
                             f"with claim codes); make the product claim = \"user\"",
                             status=400)

    async def lookup(self, uci: str) -> DeviceStatus:
        """Particle knows devices by device ID, not by UCI: the journal holds the mapping."""
        raise PermanentError(f"lookup {canonical_uci(uci)}: Particle knows devices by their "
                             f"device ID, not by UCI; find the unit's hardware id in the "
                             f"journal (factory unit …) and look it up in Particle's console",
                             status=400)


_REFUSALS: dict[Outcome, str] = {
    "nonmember": ("Particle lists it as a non-member: the device is owned by an account that "
                  "is not a member of this product. Have its owner release it (unclaim it), "
                  "then send it again with `factory outbox retry UCI`"),
    "protected": ("Particle lists it as protected: Device Protection keeps it where it is. "
                  "Whoever owns it must unprotect or release it, then send it again with "
                  "`factory outbox retry UCI`"),
    "invalid": ("Particle lists it as invalid: it does not know the device ID, or (as "
                "particle-cli notes) the device is in another product already. Check the ID "
                "read from the unit; if it is in another product, remove it there, then send "
                "it again with `factory outbox retry UCI`"),
}
