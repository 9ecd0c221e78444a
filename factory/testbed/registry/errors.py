"""The registry's error family: each class carries its HTTP status and problem slug, and the
app's middleware turns any of them into an RFC 9457 body (see factory.web.problems)."""

from __future__ import annotations

from factory.web.problems import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Problem,
    Unauthorized,
    Unprocessable,
)

__all__ = ["BadRequest", "ClaimRefused", "Claimed", "Conflict", "Forbidden", "InvalidCsr",
           "NotFound", "Problem", "RegistryUnauthorized", "Unprocessable"]

# One text whatever the reason, so a refusal says nothing about whether the UCI exists.
REFUSAL = ("no unit can be claimed with this claim ID and secret; check both against the "
           "label, or ask the seller for a new secret")


class ClaimRefused(Problem):
    """Unknown UCI, wrong, missing or expired secret: deliberately indistinguishable."""

    status, title, slug = 403, "Claim refused", "claim-refused"

    def __init__(self) -> None:
        super().__init__(REFUSAL)


class Claimed(Problem):
    status, title, slug = 409, "Claimed", "claimed"


class InvalidCsr(Problem):
    status, title, slug = 422, "Invalid CSR", "invalid-csr"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, field="csr")


class RegistryUnauthorized(Unauthorized):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.headers["WWW-Authenticate"] = 'Bearer realm="factory-registry"'
