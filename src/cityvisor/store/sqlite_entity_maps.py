"""SQLite persistence of entity maps (clause 5.2.39): table ``entity_maps`` of every tenant
database, one row per map, its Entity ids as a JSON array; index ``entity_maps_expiry`` serves
the deletion of the expired ones.

Writes are side records of ``SqliteStore.stage``; the read goes through the write connection,
so that a map staged by one request is seen by the next at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import orjson

from cityvisor.store.records import (
    EntityMapDelete,
    EntityMapPut,
    EntityMapsExpired,
    StoredEntityMap,
)
from cityvisor.store.sqlite_connections import TenantDatabases

ENTITY_MAP_SCHEMA = """
CREATE TABLE IF NOT EXISTS entity_maps (
  id TEXT PRIMARY KEY,
  expires_at TEXT NOT NULL,
  entity_ids TEXT NOT NULL,   -- JSON array of Entity ids
  created_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entity_maps_expiry ON entity_maps(expires_at);
"""


def _put(conn: sqlite3.Connection, items: list[EntityMapPut]) -> None:
    conn.executemany(
        "INSERT INTO entity_maps (id, expires_at, entity_ids, created_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at, "
        "entity_ids = excluded.entity_ids",
        [(i.entity_map.id, i.entity_map.expires_at,
          orjson.dumps(list(i.entity_map.entity_ids)).decode(), i.entity_map.created_at)
         for i in items])


def _delete(conn: sqlite3.Connection, items: list[EntityMapDelete]) -> None:
    conn.executemany("DELETE FROM entity_maps WHERE id = ?", [(i.id,) for i in items])


def _expired(conn: sqlite3.Connection, items: list[EntityMapsExpired]) -> None:
    conn.execute("DELETE FROM entity_maps WHERE expires_at <= ?",
                 (max(i.until for i in items),))


WRITERS: dict[type, Callable[[sqlite3.Connection, list[Any]], None]] = {
    EntityMapPut: _put, EntityMapDelete: _delete, EntityMapsExpired: _expired}


class EntityMapTables(TenantDatabases):
    """The entity map read of ``SqliteStore``."""

    async def entity_map(self, tenant: str | None, map_id: str) -> StoredEntityMap | None:
        conn = self._read_staged(tenant)
        if conn is None:
            return None
        row = conn.execute("SELECT id, expires_at, entity_ids, created_at FROM entity_maps "
                           "WHERE id = ?", (map_id,)).fetchone()
        if row is None:
            return None
        return StoredEntityMap(row[0], row[1], tuple(orjson.loads(row[2])), row[3])
