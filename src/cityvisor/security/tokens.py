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
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROLES = ("reader", "writer", "admin")
ALL_TENANTS = "*"
DEFAULT_TENANT = ""  # the tenant used when no NGSILD-Tenant header is sent

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
  id TEXT PRIMARY KEY,
  secret_sha256 TEXT NOT NULL,
  role TEXT NOT NULL,
  tenant TEXT NOT NULL,
  name TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL,
  revoked_at TEXT
);
"""


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

    def __init__(self, database: Path | str, *, cache_s: float = 2.0) -> None:
        self._conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self.cache_s = cache_s

    def create(self, role: str, tenant: str = DEFAULT_TENANT, name: str = "") -> tuple[str, TokenInfo]:
        """A new token: returns the clear token (show it once) and its record."""
        if role not in ROLES:
            raise ValueError(f"Unknown role {role!r}: choose one of {', '.join(ROLES)}")
        token_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        with self._lock:
            self._conn.execute(
                "INSERT INTO tokens (id, secret_sha256, role, tenant, name, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (token_id, _digest(secret), role, tenant, name, now),
            )
        return f"cvt_{token_id}_{secret}", TokenInfo(token_id, role, tenant, name, now, None)

    def verify(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked token, else None."""
        now = time.monotonic()
        cached = self._cache.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        principal = self._lookup(token)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = (now + self.cache_s, principal)
        return principal

    def _lookup(self, token: str) -> Principal | None:
        prefix, _, rest = token.partition("_")
        token_id, _, secret = rest.partition("_")
        if prefix != "cvt" or not token_id or not secret:
            return None
        with self._lock:
            row = self._conn.execute(
                "SELECT secret_sha256, role, tenant, name FROM tokens "
                "WHERE id = ? AND revoked_at IS NULL",
                (token_id,),
            ).fetchone()
        if row is None or not hmac.compare_digest(row[0], _digest(secret)):
            return None
        return Principal(token_id, row[1], row[2], row[3] or "")

    def revoke(self, token_id: str) -> bool:
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        with self._lock:
            changed = self._conn.execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, token_id),
            ).rowcount
        self._cache.clear()
        return bool(changed)

    def list(self) -> list[TokenInfo]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, role, tenant, name, created_at, revoked_at FROM tokens ORDER BY created_at"
            ).fetchall()
        return [TokenInfo(*row) for row in rows]

    def close(self) -> None:
        self._conn.close()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
