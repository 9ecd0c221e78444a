"""Pure request checking and answer shaping for the registry: no I/O, plain values in and out."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from factory import uci as uci_codec
from factory.secret_hash import SecretFormatError, check_format
from factory.testbed.registry.errors import Unprocessable

REGISTRATION_FIELDS = ("id", "product", "hardware_id", "model", "name", "created",
                       "claim_secret_hash", "claim_expires")
_LIMITS = {"product": (1, 64), "hardware_id": (0, 128), "model": (0, 128), "name": (0, 128)}


@dataclass(frozen=True)
class Registration:
    """A POST /v1/devices body, normalised so equal meaning compares equal."""

    id: str
    product: str
    hardware_id: str
    model: str
    name: str
    created: str
    claim_secret_hash: str | None = None
    claim_expires: str | None = None

    def differences(self, other: Registration) -> list[str]:
        """Names of the fields whose values differ."""
        mine, theirs = asdict(self), asdict(other)
        return [k for k in REGISTRATION_FIELDS if mine[k] != theirs[k]]


def canonical_uci(text: str) -> str:
    """`text` if it is a canonical UCI; otherwise a 422 saying so."""
    try:
        parsed = uci_codec.parse(text)
    except uci_codec.UciError as exc:
        raise Unprocessable(f"id: {exc}", field="id") from exc
    if parsed != text:
        raise Unprocessable(f"id: send the canonical form {parsed!r} (16 symbols, upper case, "
                            "no hyphens or check symbol)", field="id")
    return parsed


def any_uci(text: Any) -> str:
    """A UCI in any form a label shows, as its canonical form; 422 if it is none."""
    try:
        return uci_codec.parse(text)
    except uci_codec.UciError as exc:
        raise Unprocessable(f"id: {exc}", field="id") from exc


def timestamp(field: str, value: Any) -> str:
    """An ISO 8601 time with an offset, as UTC `...Z` (seconds kept, micros when given)."""
    if not isinstance(value, str):
        raise Unprocessable(f"{field}: must be an ISO 8601 date-time string", field=field)
    try:
        when = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise Unprocessable(f"{field}: {value!r} is not an ISO 8601 date-time", field=field) \
            from exc
    if when.tzinfo is None:
        raise Unprocessable(f"{field}: give an offset (e.g. 'Z'), {value!r} has none",
                            field=field)
    return iso(when)


def iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def only(body: Any, allowed: tuple[str, ...], required: tuple[str, ...]) -> dict[str, Any]:
    """`body` as an object with no unknown and no missing fields, or a 422 naming them."""
    if not isinstance(body, dict):
        raise Unprocessable("the body must be a JSON object", field="body")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise Unprocessable(f"unknown field(s) {', '.join(unknown)}; allowed: "
                            f"{', '.join(allowed)}", field=unknown[0])
    for name in required:
        if name not in body:
            raise Unprocessable(f"{name}: required", field=name)
    return body


def text(body: dict[str, Any], field: str, low: int, high: int) -> str:
    value = body[field]
    if not isinstance(value, str) or not low <= len(value) <= high:
        raise Unprocessable(f"{field}: must be a string of {low}..{high} characters",
                            field=field)
    return value


def registration(body: Any) -> Registration:
    """Check a registration body; a 422 names the first bad field."""
    body = only(body, REGISTRATION_FIELDS, REGISTRATION_FIELDS[:6])
    if not isinstance(body["id"], str):
        raise Unprocessable("id: must be a string", field="id")
    fields = {name: text(body, name, *limits) for name, limits in _LIMITS.items()}
    secret_hash, expires = body.get("claim_secret_hash"), body.get("claim_expires")
    if (secret_hash is None) != (expires is None):
        raise Unprocessable("claim_secret_hash and claim_expires come together or not at all",
                            field="claim_expires" if expires is None else "claim_secret_hash")
    if secret_hash is not None:
        if not isinstance(secret_hash, str):
            raise Unprocessable("claim_secret_hash: must be a string", field="claim_secret_hash")
        try:
            check_format(secret_hash)
        except SecretFormatError as exc:
            raise Unprocessable(f"claim_secret_hash: {exc}", field="claim_secret_hash") from exc
    return Registration(
        id=canonical_uci(body["id"]), created=timestamp("created", body["created"]),
        claim_secret_hash=secret_hash,
        claim_expires=None if expires is None else timestamp("claim_expires", expires),
        **fields)


def certificate_answer(uci: str, account: str, pem: str, ca_pem: str, endpoint: str,
                       fingerprint: str, not_after: str) -> dict[str, Any]:
    """The body of a pre-claim or a successful provision."""
    return {"id": uci, "account": account, "certificate": pem, "ca_chain": [ca_pem],
            "endpoint": endpoint, "fingerprint": fingerprint, "not_after": not_after}


def not_yet(reason: str, delay: int) -> dict[str, Any]:
    """The Ioto-style `{error, delay}` answer to a unit polling too early."""
    what = "claimed" if reason == "not-claimed" else "registered"
    return {"error": reason, "delay": delay,
            "detail": f"the unit is not {what} yet; ask again in {delay} s"}


@dataclass(frozen=True)
class DeviceRow:
    """A registered unit as stored: its registration and who owns it."""

    registration: Registration
    registered: str
    owner: str | None
    claim_how: str | None
    claimed_at: str | None


@dataclass(frozen=True)
class CertRow:
    fingerprint: str
    device_id: str
    account: str
    pem: str
    not_after: str


def device_view(row: DeviceRow, cert: CertRow | None) -> dict[str, Any]:
    """The device representation of GET /v1/devices/{id} (never the secret hash)."""
    reg = row.registration
    claim: dict[str, Any] = {"status": "unclaimed"}
    if row.owner is not None:
        claim = {"status": "claimed", "account": row.owner, "how": row.claim_how,
                 "claimed_at": row.claimed_at}
    return {"id": reg.id, "product": reg.product, "hardware_id": reg.hardware_id,
            "model": reg.model, "name": reg.name, "created": reg.created,
            "registered": row.registered, "has_claim_secret": reg.claim_secret_hash is not None,
            "claim_expires": reg.claim_expires, "claim": claim,
            "certificate": None if cert is None else {"fingerprint": cert.fingerprint,
                                                      "not_after": cert.not_after}}
