"""Bearer tokens with roles. The token table is small, so it is cached and every presented
token is compared against every active hash in constant time."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Iterable
from typing import Literal

from aiohttp import web

from factory.config import Network
from factory.journal.interface import Journal
from factory.journal.records import Role
from factory.tokens import same_hash, token_hash
from factory.web.problems import Forbidden, Unauthorized

Action = Literal["issue", "read", "void", "scan"]
PERMISSIONS: dict[Action, frozenset[Role]] = {
    "issue": frozenset({"device", "operator"}),
    "read": frozenset({"operator", "viewer"}),
    "void": frozenset({"operator"}),
    "scan": frozenset({"operator"}),  # a label scan binds a UCI to a unit
}
# A revoked token stops working within this many seconds.
REFRESH_SECONDS = 2.0


class Principal:
    def __init__(self, name: str, role: Role) -> None:
        self.name, self.role = name, role

    @property
    def actor(self) -> str:
        return f"token:{self.name}"


class TokenCache:
    """The active tokens' hashes, reloaded from the journal at most every REFRESH_SECONDS."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal
        self._entries: list[tuple[str, str, Role]] = []
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    async def _entries_now(self) -> list[tuple[str, str, Role]]:
        if time.monotonic() - self._loaded_at > REFRESH_SECONDS:
            async with self._lock:
                if time.monotonic() - self._loaded_at > REFRESH_SECONDS:
                    self._entries = await self._journal.active_token_hashes()
                    self._loaded_at = time.monotonic()
        return self._entries

    async def lookup(self, token: str) -> Principal | None:
        if not token.isascii():  # no token is (a header's stray bytes arrive as surrogates)
            return None
        digest = token_hash(token)
        found: Principal | None = None
        for stored, name, role in await self._entries_now():
            # No early exit: the time taken does not depend on which entry matched.
            if same_hash(stored, digest):
                found = Principal(name, role)
        return found


async def authorize(request: web.Request, cache: TokenCache, action: Action) -> Principal:
    """The caller, if its bearer token may do `action`; otherwise a 401 or 403 problem."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthorized("this route needs a bearer token: send 'Authorization: Bearer "
                           "<token>' (make one with 'factory token new')")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    principal = await cache.lookup(token.strip())
    if principal is None:
        raise Unauthorized("the bearer token is unknown or revoked")
    allowed = PERMISSIONS[action]
    if principal.role not in allowed:
        raise Forbidden(f"a {principal.role} token may not {action}; this needs one of: "
                        f"{', '.join(sorted(allowed))}")
    return principal


def from_networks(request: web.Request, networks: Iterable[Network]) -> bool:
    """Whether the client's address is in one of `networks` (for callers without a token)."""
    remote = request.remote or ""
    try:
        address = ipaddress.ip_address(remote.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # a dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d
    return any(address in net for net in networks)
