"""The system store of the PostgreSQL backend: schema ``<namespace>_system``.

Two small tables shared by every tenant (``postgres_migrations``): ``contexts`` (JSON-LD
context documents hosted here or cached after a fetch or a preload) and ``tokens`` (bearer
tokens, their secret hashed), beside the tenant registry and ``schema_migrations``. Several
processes (workers, the ``cityvisor token`` commands) share them through the database.
"""

from __future__ import annotations

import asyncpg

from cityvisor.ngsild.errors import AlreadyExists
from cityvisor.store.base import SystemStore
from cityvisor.store.postgres_errors import outages_as_unavailable
from cityvisor.store.postgres_migrations import quote
from cityvisor.store.records import StoredContext, StoredToken

_CONTEXT_COLUMNS = "id, url, kind, document, created_at"
_TOKEN_COLUMNS = "id, secret_sha256, role, tenant, name, created_at, revoked_at"


@outages_as_unavailable
class PostgresSystemStore(SystemStore):
    """``SystemStore`` on the system schema (made by ``postgres_database.upgrade``)."""

    def __init__(self, pool: asyncpg.Pool, namespace: str = "ngsild", *,
                 owns_pool: bool = False) -> None:
        self.pool = pool
        self.schema = quote(f"{namespace}_system")
        self._owns_pool = owns_pool

    async def context(self, *, local_id: str | None = None, url: str | None = None
                      ) -> StoredContext | None:
        column, key = ("id", local_id) if local_id is not None else ("url", url)
        row = await self.pool.fetchrow(
            f"SELECT {_CONTEXT_COLUMNS} FROM {self.schema}.contexts WHERE {column} = $1", key)
        return None if row is None else StoredContext(*row)

    async def put_context(self, context: StoredContext) -> None:
        try:
            await self.pool.execute(
                f"INSERT INTO {self.schema}.contexts ({_CONTEXT_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (url) DO UPDATE SET "
                "document = excluded.document, kind = excluded.kind",
                context.local_id, context.url, context.kind, context.document,
                context.created_at)
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(
                f"A context with local id {context.local_id} already exists") from None

    async def contexts(self) -> list[StoredContext]:
        rows = await self.pool.fetch(
            f"SELECT {_CONTEXT_COLUMNS} FROM {self.schema}.contexts ORDER BY created_at, seq")
        return [StoredContext(*row) for row in rows]

    async def delete_context(self, local_id: str) -> bool:
        status = await self.pool.execute(f"DELETE FROM {self.schema}.contexts WHERE id = $1",
                                         local_id)
        return bool(status != "DELETE 0")

    async def add_token(self, token: StoredToken) -> None:
        try:
            await self.pool.execute(
                f"INSERT INTO {self.schema}.tokens ({_TOKEN_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7)", token.token_id, token.secret_sha256,
                token.role, token.tenant, token.name, token.created_at, token.revoked_at)
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"A token with id {token.token_id} already exists") from None

    async def token(self, token_id: str) -> StoredToken | None:
        row = await self.pool.fetchrow(
            f"SELECT {_TOKEN_COLUMNS} FROM {self.schema}.tokens WHERE id = $1", token_id)
        return None if row is None else StoredToken(*row)

    async def revoke_token(self, token_id: str, at: str) -> bool:
        status = await self.pool.execute(
            f"UPDATE {self.schema}.tokens SET revoked_at = $1 WHERE id = $2 AND "
            "revoked_at IS NULL", at, token_id)
        return bool(status != "UPDATE 0")

    async def tokens(self) -> list[StoredToken]:
        rows = await self.pool.fetch(
            f"SELECT {_TOKEN_COLUMNS} FROM {self.schema}.tokens ORDER BY created_at, seq")
        return [StoredToken(*row) for row in rows]

    async def close(self) -> None:
        if self._owns_pool:
            await self.pool.close()
