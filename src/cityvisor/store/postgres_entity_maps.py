"""PostgreSQL persistence of entity maps (clause 5.2.39): table ``entity_maps`` of every tenant
schema, one row per map, its Entity ids as a ``text[]``; index ``entity_maps_expiry`` serves
the deletion of the expired ones.

Writes are side records of ``PostgresStore.stage``; the read sees staged changes (the open
group transaction), so that a map staged by one request is seen by the next at once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from cityvisor.store.postgres_connections import TenantSchemas
from cityvisor.store.records import (
    EntityMapDelete,
    EntityMapPut,
    EntityMapsExpired,
    StoredEntityMap,
)


async def _put(conn: asyncpg.Connection, schema: str, items: list[EntityMapPut]) -> None:
    await conn.executemany(
        f"INSERT INTO {schema}.entity_maps (id, expires_at, entity_ids, created_at) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO UPDATE SET "
        "expires_at = excluded.expires_at, entity_ids = excluded.entity_ids",
        [(i.entity_map.id, i.entity_map.expires_at, list(i.entity_map.entity_ids),
          i.entity_map.created_at) for i in items])


async def _delete(conn: asyncpg.Connection, schema: str, items: list[EntityMapDelete]) -> None:
    await conn.execute(f"DELETE FROM {schema}.entity_maps WHERE id = ANY($1)",
                       [i.id for i in items])


async def _expired(conn: asyncpg.Connection, schema: str, items: list[EntityMapsExpired]
                   ) -> None:
    await conn.execute(f"DELETE FROM {schema}.entity_maps WHERE expires_at <= $1",
                       max(i.until for i in items))


WRITERS: dict[type, Callable[[asyncpg.Connection, str, list[Any]], Awaitable[None]]] = {
    EntityMapPut: _put, EntityMapDelete: _delete, EntityMapsExpired: _expired}


class EntityMapTables(TenantSchemas):
    """The entity map read of ``PostgresStore``."""

    async def entity_map(self, tenant: str | None, map_id: str) -> StoredEntityMap | None:
        schema = await self._schema(tenant)
        if schema is None:
            return None
        async with self._reading(tenant, True) as conn:
            row = await conn.fetchrow(
                f"SELECT id, expires_at, entity_ids, created_at FROM {schema}.entity_maps "
                "WHERE id = $1", map_id)
        if row is None:
            return None
        return StoredEntityMap(row["id"], row["expires_at"], tuple(row["entity_ids"]),
                               row["created_at"])
