"""PostgreSQL persistence of subscriptions and of the notification outbox (transactional outbox).

Two tables in every tenant schema (``postgres_migrations``), as in the SQLite backend:

- ``subscriptions``: one row per subscription: the validated document (``doc``, JSON text),
  the creator's ``@context`` (``context``) and the delivery status columns; ``seq`` keeps the
  creation order.
- ``outbox``: one row per notification to deliver: the subscription, the endpoint URI (the
  unit of isolation of the delivery workers), the delivery target (JSON text) and the ready
  payload. ``next_attempt_at`` is 0 for a row never tried, else the epoch second of its next
  attempt (partial index ``outbox_retry``); ids come from an identity column: they grow and
  are never reused.

Every write is a record staged with the entity changes (``Store.stage``), so a notification
exists if and only if the change that caused it was committed. Outbox readers use pooled
connections, which see committed rows only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from cityvisor.store.base import OutboxReader
from cityvisor.store.postgres_connections import TenantSchemas
from cityvisor.store.postgres_errors import outages_as_unavailable
from cityvisor.store.records import (
    OutboxDone,
    OutboxRecord,
    OutboxRetry,
    OutboxRow,
    StoredSubscription,
    SubscriptionDelete,
    SubscriptionPut,
    SubscriptionStatus,
)


async def _put(conn: asyncpg.Connection, schema: str, items: list[SubscriptionPut]) -> None:
    await conn.executemany(
        f"INSERT INTO {schema}.subscriptions (id, doc, context) VALUES ($1, $2, $3) "
        "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, context = excluded.context",
        [(i.id, i.doc, i.context) for i in items])


async def _delete(conn: asyncpg.Connection, schema: str, items: list[SubscriptionDelete]
                  ) -> None:
    ids = [i.id for i in items]
    await conn.execute(f"DELETE FROM {schema}.subscriptions WHERE id = ANY($1)", ids)
    await conn.execute(f"DELETE FROM {schema}.outbox WHERE subscription = ANY($1)", ids)


async def _status(conn: asyncpg.Connection, schema: str, items: list[SubscriptionStatus]
                  ) -> None:
    await conn.executemany(
        f"UPDATE {schema}.subscriptions SET times_sent = $1, last_notification = $2, "
        "last_success = $3, last_failure = $4, delivery = $5 WHERE id = $6",
        [(i.times_sent, i.last_notification, i.last_success, i.last_failure, i.delivery, i.id)
         for i in items])


async def _outbox(conn: asyncpg.Connection, schema: str, items: list[OutboxRecord]) -> None:
    await conn.execute(
        f"INSERT INTO {schema}.outbox (subscription, endpoint, target, payload, created_at) "
        "SELECT s, e, t, p, c FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[], "
        "$5::float8[]) "
        "WITH ORDINALITY AS u(s, e, t, p, c, n) ORDER BY n",
        [i.subscription for i in items], [i.endpoint for i in items],
        [i.target for i in items], [i.payload for i in items], [i.created_at for i in items])


async def _done(conn: asyncpg.Connection, schema: str, items: list[OutboxDone]) -> None:
    await conn.execute(f"DELETE FROM {schema}.outbox WHERE id = ANY($1)", [i.id for i in items])


async def _retry(conn: asyncpg.Connection, schema: str, items: list[OutboxRetry]) -> None:
    await conn.executemany(
        f"UPDATE {schema}.outbox SET attempts = $1, next_attempt_at = $2 WHERE id = $3",
        [(i.attempts, i.next_attempt_at, i.id) for i in items])


WRITERS: dict[type, Callable[[asyncpg.Connection, str, list[Any]], Awaitable[None]]] = {
    SubscriptionPut: _put,
    SubscriptionDelete: _delete,
    SubscriptionStatus: _status,
    OutboxRecord: _outbox,
    OutboxDone: _done,
    OutboxRetry: _retry,
}


class SubscriptionTables(TenantSchemas):
    """The subscription and outbox reads of ``PostgresStore``."""

    async def subscriptions(self, tenant: str | None) -> list[StoredSubscription]:
        schema = await self._schema(tenant)
        if schema is None:
            return []
        async with self._reading(tenant, True) as conn:
            rows = await conn.fetch(
                "SELECT id, doc, context, times_sent, last_notification, last_success, "
                f"last_failure, delivery FROM {schema}.subscriptions ORDER BY seq")
        return [StoredSubscription(*row) for row in rows]

    async def outbox_reader(self, tenant: str | None) -> OutboxReader:
        schema = await self._schema(tenant, create=True)
        assert schema is not None
        return PostgresOutboxReader(self.pool, schema)


_COLUMNS = "id, subscription, endpoint, target, payload, created_at, attempts"


@outages_as_unavailable
class PostgresOutboxReader(OutboxReader):
    """Reads one tenant's outbox on pooled connections: committed rows only."""

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.schema = schema

    async def fresh(self, after_id: int, limit: int) -> list[OutboxRow]:
        """Rows never tried, newer than ``after_id``, oldest first."""
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM {self.schema}.outbox WHERE id > $1 AND "
            "next_attempt_at = 0 ORDER BY id LIMIT $2", after_id, max(limit, 0))
        return [OutboxRow(*row) for row in rows]

    async def due(self, now: float, limit: int) -> list[OutboxRow]:
        """Rows to try again whose time has come (a first attempt after a restart included)."""
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM {self.schema}.outbox WHERE next_attempt_at > 0 AND "
            "next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2", now, max(limit, 0))
        return [OutboxRow(*row) for row in rows]

    async def max_id(self) -> int:
        return int(await self.pool.fetchval(
            f"SELECT coalesce(max(id), 0) FROM {self.schema}.outbox"))

    async def pending(self) -> int:
        return int(await self.pool.fetchval(f"SELECT count(*) FROM {self.schema}.outbox"))

    async def close(self) -> None:
        pass  # the connections belong to the store's pool
