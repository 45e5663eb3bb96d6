"""Bearer tokens: created once, stored hashed, revocable (security by default, ADR 0003).

A token reads ``cvt_<id>_<secret>``: ``id`` finds the row, ``secret`` (32 random bytes) is
checked against its SHA-256 with a constant-time comparison. A fast hash is right here
because the secret is random and long; a password hash would only slow every request. The
clear token is shown once, at creation, and never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from cityvisor.store.base import SystemStore
from cityvisor.store.records import StoredToken

ROLES = ("reader", "writer", "admin")
ALL_TENANTS = "*"
DEFAULT_TENANT = ""  # the tenant used when no NGSILD-Tenant header is sent



@dataclass(frozen=True)
class Principal:
    """Who is calling: the token id, its role and the tenant it may use ('*' for all)."""

    token_id: str
    role: str
    tenant: str
    name: str = ""  # the token's label (who acts, in audit trails)

    def may_use(self, tenant: str | None) -> bool:
        return self.tenant == ALL_TENANTS or self.tenant == (tenant or DEFAULT_TENANT)

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    role: str
    tenant: str
    name: str
    created_at: str
    revoked_at: str | None


class TokenStore:
    """Tokens in the system database; verification results are cached for ``cache_s``."""

    def __init__(self, system: SystemStore, *, cache_s: float = 2.0) -> None:
        self.system = system
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self.cache_s = cache_s
        #: called after a revocation is stored (the change feed tells the other workers,
        #: which ``forget`` at once instead of within ``cache_s``); None: one worker alone
        self.on_revoke: Callable[[], None] | None = None

    async def create(self, role: str, tenant: str = DEFAULT_TENANT, name: str = "") -> tuple[str, TokenInfo]:
        """A new token: returns the clear token (show it once) and its record."""
        if role not in ROLES:
            raise ValueError(f"Unknown role {role!r}: choose one of {', '.join(ROLES)}")
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        await self.system.add_token(StoredToken(token_id, _digest(secret), role, tenant, name, now))
        return f"cvt_{token_id}_{secret}", TokenInfo(token_id, role, tenant, name, now, None)

    async def verify(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked token, else None."""
        now = time.monotonic()
        cached = self._cache.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        principal = await self._lookup(token)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = (now + self.cache_s, principal)
        return principal

    async def _lookup(self, token: str) -> Principal | None:
        prefix, _, rest = token.partition("_")
        token_id, _, secret = rest.partition("_")
        if prefix != "cvt" or not token_id or not secret:
            return None
        stored = await self.system.token(token_id)
        if (stored is None or stored.revoked_at is not None
                or not hmac.compare_digest(stored.secret_sha256, _digest(secret))):
            return None
        return Principal(token_id, stored.role, stored.tenant, stored.name or "")

    async def revoke(self, token_id: str) -> bool:
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        changed = await self.system.revoke_token(token_id, now)
        self._cache.clear()
        if changed and self.on_revoke is not None:
            self.on_revoke()
        return changed

    def forget(self) -> None:
        """Drop the cached verifications (another worker revoked a token)."""
        self._cache.clear()

    async def list(self) -> list[TokenInfo]:
        return [TokenInfo(t.token_id, t.role, t.tenant, t.name, t.created_at, t.revoked_at)
                for t in await self.system.tokens()]

    def close(self) -> None:
        """Nothing to release: the system store is closed by its owner."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
