"""The outbox's requests for the upstream as typed values: each names its action, its
dedupe key and its JSON, which is stored as it is and read back by the outbox worker."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from factory.config import Product


@dataclass(frozen=True)
class RegisterRequest:
    """Register a unit upstream. A unit with a claim secret has `claim_expires`; its secret
    is derived again when sent, never stored."""

    uci: str
    product: str
    hardware_id: str  # "" for a unit without one
    model: str
    name: str
    created: str
    claim_expires: str | None = None

    @property
    def action(self) -> str:
        return "register"

    @property
    def key(self) -> str:
        """Once per unit."""
        return f"register:{self.uci}"

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values, as the outbox stores them."""
        payload = {"uci": self.uci, "product": self.product, "hardware_id": self.hardware_id,
                   "model": self.model, "name": self.name, "created": self.created}
        if self.claim_expires is not None:
            payload["claim_expires"] = self.claim_expires
        return payload

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> RegisterRequest:
        """The request a stored payload stands for; KeyError if a field is missing."""
        return cls(uci=payload["uci"], product=payload["product"],
                   hardware_id=payload["hardware_id"], model=payload["model"],
                   name=payload["name"], created=payload["created"],
                   claim_expires=payload.get("claim_expires"))


def registration_for(product: Product, uci: str, hardware_id: str | None,
                     created: str | None) -> RegisterRequest:
    """What registering a unit of `product` asks upstream. A unit with a claim secret (on its
    label; upstream gets its hash) has it valid for the product's claim_secret_days from now."""
    request = RegisterRequest(uci, product.id, hardware_id or "", product.model, product.name,
                              created or datetime.now(UTC).isoformat(timespec="seconds"))
    if product.claim_secret_days:
        expires = datetime.now(UTC) + timedelta(days=product.claim_secret_days)
        request = replace(request, claim_expires=expires.isoformat(timespec="seconds"))
    return request


@dataclass(frozen=True)
class PreclaimRequest:
    """Register a unit and pre-claim it: the account, and the CSR with its key's hash."""

    registration: RegisterRequest
    account: str
    csr: str
    spki_sha256: str

    @property
    def action(self) -> str:
        return "preclaim"

    @property
    def uci(self) -> str:
        return self.registration.uci

    @property
    def key(self) -> str:
        """Once per unit and key: a unit given a new key asks again, and a unit asked twice
        for one key does not."""
        return f"preclaim:{self.uci}:{self.spki_sha256}"

    def to_json(self) -> dict[str, Any]:
        """The registration's fields beside the pre-claim's, in one flat object."""
        return {**self.registration.to_json(), "account": self.account, "csr": self.csr,
                "spki_sha256": self.spki_sha256}

    @classmethod
    def from_json(cls, payload: dict[str, Any]) -> PreclaimRequest:
        """The request a stored payload stands for; KeyError if a field is missing."""
        return cls(RegisterRequest.from_json(payload), account=payload["account"],
                   csr=payload["csr"], spki_sha256=payload["spki_sha256"])


UpstreamRequest = RegisterRequest | PreclaimRequest


def read_request(action: str, payload: dict[str, Any]) -> UpstreamRequest | None:
    """The typed request of a stored outbox entry; None for an action this station does not
    know."""
    if action == "register":
        return RegisterRequest.from_json(payload)
    if action == "preclaim":
        return PreclaimRequest.from_json(payload)
    return None
