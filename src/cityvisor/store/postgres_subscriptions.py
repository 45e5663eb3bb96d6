"""PostgreSQL persistence of subscriptions and of the notification outbox (transactional outbox).

Two tables in every tenant schema (``postgres_migrations``), as in the SQLite backend:

- ``subscriptions``: one row per subscription: the validated document (``doc``, JSON text),
  the creator's ``@context`` (``context``) and the delivery status columns, which each
  ``SubscriptionStatus`` increments in SQL (counts added, times kept where later: several
  workers' deliveries add up); ``seq`` keeps the creation order.
- ``outbox``: one row per notification to deliver: the subscription, the endpoint URI (the
  unit of isolation of the delivery workers), the delivery target (JSON text) and the ready
  payload. ``next_attempt_at`` is 0 for a row never tried, else the epoch second of its next
  attempt (partial index ``outbox_retry``); ids come from an identity column: they grow and
  are never reused. ``claimed_by``/``claimed_until``: the reader that holds the row and until
  when (``PostgresOutboxReader``: several workers share the outbox).

Every write is a record staged with the entity changes (``Store.stage``), so a notification
exists if and only if the change that caused it was committed. Outbox readers use pooled
connections, which see committed rows only, and claim the rows they read.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg

from cityvisor.store.base import OutboxReader, StaleWrite
from cityvisor.store.postgres_connections import TenantSchemas
from cityvisor.store.postgres_errors import ACQUIRE_TIMEOUT_S, outages_as_unavailable
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
    # several workers share the table: a creation only where the id is free, a replacement
    # only where the document is still the one read (READ COMMITTED: a row another worker is
    # changing is waited for, then compared in its committed form)
    for item in items:
        if item.old is None:
            written = await conn.fetchval(
                f"INSERT INTO {schema}.subscriptions (id, doc, context) VALUES ($1, $2, $3) "
                "ON CONFLICT (id) DO NOTHING RETURNING id", item.id, item.doc, item.context)
        else:
            written = await conn.fetchval(
                f"UPDATE {schema}.subscriptions SET doc = $2, context = $3 "
                "WHERE id = $1 AND doc = $4 RETURNING id",
                item.id, item.doc, item.context, item.old)
        if written is None:
            raise StaleWrite(f"Subscription {item.id} "
                             + ("exists" if item.old is None else "changed since it was read "
                                "(or it is gone)") + ": it is not written")


async def _delete(conn: asyncpg.Connection, schema: str, items: list[SubscriptionDelete]
                  ) -> None:
    ids = [i.id for i in items]
    await conn.execute(f"DELETE FROM {schema}.subscriptions WHERE id = ANY($1)", ids)
    await conn.execute(f"DELETE FROM {schema}.outbox WHERE subscription = ANY($1)", ids)
    await conn.execute(f"DELETE FROM {schema}.subscription_deltas WHERE subscription = ANY($1)",
                       ids)


async def _status(conn: asyncpg.Connection, schema: str, items: list[SubscriptionStatus]
                  ) -> None:
    # increments, never absolute values: the records of several workers add up; appended
    # (one row per subscription and batch), so that no transaction waits on another's row
    summed: dict[str, SubscriptionStatus] = {}
    for item in items:
        held = summed.get(item.id)
        summed[item.id] = item if held is None else held.plus(item)
    rows = list(summed.values())
    await conn.execute(
        f"INSERT INTO {schema}.subscription_deltas (subscription, sent, failed, "
        "last_notification, last_success, last_failure) SELECT * FROM unnest($1::text[], "
        "$2::integer[], $3::integer[], $4::text[], $5::text[], $6::text[])",
        [i.id for i in rows], [i.sent for i in rows], [i.failed for i in rows],
        [i.last_notification for i in rows], [i.last_success for i in rows],
        [i.last_failure for i in rows])


#: a subscription's delivery state from its last success and failure ($ls, $lf: SQL)
_DELIVERY = ("CASE WHEN {ls} IS NULL AND {lf} IS NULL THEN {stored} "
             "WHEN {lf} IS NULL OR {ls} >= {lf} THEN 'ok' ELSE 'failed' END")
#: fold the increments into the subscriptions' rows (a transaction of its own, now and then)
_FOLD = """
WITH gone AS (DELETE FROM {s}.subscription_deltas RETURNING *),
d AS (SELECT subscription, sum(sent) AS sent, sum(failed) AS failed,
        max(last_notification) AS ln, max(last_success) AS ls, max(last_failure) AS lf
      FROM gone GROUP BY subscription)
UPDATE {s}.subscriptions s SET times_sent = s.times_sent + d.sent,
  times_failed = s.times_failed + d.failed,
  last_notification = greatest(s.last_notification COLLATE "C", d.ln),
  last_success = greatest(s.last_success COLLATE "C", d.ls),
  last_failure = greatest(s.last_failure COLLATE "C", d.lf),
  delivery = """ + _DELIVERY.format(ls='greatest(s.last_success COLLATE "C", d.ls)',
                                     lf='greatest(s.last_failure COLLATE "C", d.lf)',
                                     stored="s.delivery") + """
FROM d WHERE s.id = d.subscription"""


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
        f"UPDATE {schema}.outbox SET attempts = $1, next_attempt_at = $2, claimed_by = NULL, "
        "claimed_until = NULL WHERE id = $3",
        [(i.attempts, i.next_attempt_at, i.id) for i in items])


Writer = Callable[[asyncpg.Connection, str, list[Any]], Awaitable[None]]


def _deadlocks_stale(writer: Writer) -> Writer:
    """``writer``, a deadlock with another worker's transaction raised as ``StaleWrite``
    (nothing of the batch was written: the caller may stage it again)."""

    async def write(conn: asyncpg.Connection, schema: str, items: list[Any]) -> None:
        try:
            await writer(conn, schema, items)
        except asyncpg.DeadlockDetectedError as error:
            raise StaleWrite(f"The batch waited on another writer: {error}") from None

    return write


WRITERS: dict[type, Writer] = {record_type: _deadlocks_stale(writer) for record_type, writer in (
    (SubscriptionPut, _put),
    (SubscriptionDelete, _delete),
    (SubscriptionStatus, _status),
    (OutboxRecord, _outbox),
    (OutboxDone, _done),
    (OutboxRetry, _retry),
)}


#: a ``StoredSubscription``: its row with the increments not folded in yet
_SUBSCRIPTION = """
SELECT s.id, s.doc, s.context, s.times_sent + coalesce(d.sent, 0),
  greatest(s.last_notification COLLATE "C", d.ln), greatest(s.last_success COLLATE "C", d.ls),
  greatest(s.last_failure COLLATE "C", d.lf),
  """ + _DELIVERY.format(ls='greatest(s.last_success COLLATE "C", d.ls)',
                         lf='greatest(s.last_failure COLLATE "C", d.lf)',
                         stored="s.delivery") + """,
  s.times_failed + coalesce(d.failed, 0)
FROM {s}.subscriptions s LEFT JOIN LATERAL (
  SELECT sum(sent) AS sent, sum(failed) AS failed, max(last_notification) AS ln,
         max(last_success) AS ls, max(last_failure) AS lf
  FROM {s}.subscription_deltas x WHERE x.subscription = s.id) d ON TRUE"""
#: increments appended by this process before it folds them (``fold_status``)
FOLD_AFTER = 2_000


class SubscriptionTables(TenantSchemas):
    """The subscription and outbox reads of ``PostgresStore``."""

    async def subscriptions(self, tenant: str | None) -> list[StoredSubscription]:
        schema = await self._schema(tenant)
        if schema is None:
            return []
        async with self._reading(tenant, True) as conn:
            rows = await conn.fetch(_SUBSCRIPTION.format(s=schema) + " ORDER BY s.seq")
        return [StoredSubscription(*row) for row in rows]

    async def subscription(self, tenant: str | None, sub_id: str) -> StoredSubscription | None:
        schema = await self._schema(tenant)
        if schema is None:
            return None
        async with self._reading(tenant, True) as conn:
            row = await conn.fetchrow(_SUBSCRIPTION.format(s=schema) + " WHERE s.id = $1",
                                      sub_id)
        return None if row is None else StoredSubscription(*row)

    async def fold_status(self, schema: str) -> None:
        """Fold the delivery increments into the subscriptions' rows (own transaction)."""
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
            await conn.execute(_FOLD.format(s=schema))

    #: how long a reader holds the outbox rows it read (``PostgresOutboxReader``)
    outbox_lease_s: float = 60.0

    async def outbox_reader(self, tenant: str | None) -> OutboxReader:
        schema = await self._schema(tenant, create=True)
        assert schema is not None
        return PostgresOutboxReader(self.pool, schema, lease_s=self.outbox_lease_s)


_COLUMNS = "id, subscription, endpoint, target, payload, created_at, attempts"
#: claim (up to $4) rows picked by a condition, for $2 seconds, for reader $1
_CLAIM = """
UPDATE {s}.outbox SET claimed_by = $1, claimed_until = now() + make_interval(secs => $2)
WHERE id IN (SELECT id FROM {s}.outbox WHERE {where} ORDER BY {order} LIMIT $4
             FOR UPDATE SKIP LOCKED)
RETURNING next_attempt_at, """ + _COLUMNS
#: never tried, and free, or this reader's above ``after_id`` ($3)
_FRESH = "next_attempt_at = 0 AND (claimed_until IS NULL OR claimed_by = $1 AND id > $3)"
#: to try again by now ($3) and free (or this reader's), or held by a lease that expired
_DUE = ("next_attempt_at <= $3 AND (next_attempt_at > 0 AND (claimed_until IS NULL OR "
        "claimed_by = $1) OR claimed_until < now())")
#: extend the claims of reader $1 on rows $3 to $2 seconds from now; a row locked by a
#: transaction in flight (this worker's outcome being recorded) is skipped, never waited for
_RENEW = """
UPDATE {s}.outbox SET claimed_until = now() + make_interval(secs => $2)
WHERE id IN (SELECT id FROM {s}.outbox WHERE id = ANY($3::bigint[]) AND claimed_by = $1
             ORDER BY id FOR UPDATE SKIP LOCKED)"""


@outages_as_unavailable
class PostgresOutboxReader(OutboxReader):
    """Reads one tenant's outbox on pooled connections (committed rows only), claiming what
    it reads: several workers share the outbox, so each row goes to one reader at a time.

    ``fresh`` and ``due`` mark the rows they return as this reader's for ``lease_s`` seconds
    (``claimed_by``, ``claimed_until``, in one ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE
    SKIP LOCKED)``: two readers never wait on each other nor take the same row); a row comes
    back to this reader as long as it holds it, to no other before the lease expires.
    ``OutboxRetry`` ends the claim (``due`` claims the row again when its time comes),
    ``OutboxDone`` deletes the row. A reader that dies leaves its rows claimed: ``due``
    returns them to any reader once their lease has expired (a row delivered but not yet
    recorded as done is then delivered again: at-least-once). Lease times are the
    database's clock, one for all hosts. ``renew`` extends the leases of the rows the
    dispatcher is still working on (a slow endpoint, a long queue): only a reader that stops
    renewing (dead, or stalled longer than a lease) loses its rows.

    ``fresh`` returns every free never-tried row, whatever its id: rows of transactions of
    several processes commit out of id order, so an ``after_id`` cursor alone would skip a
    row committed late below it; ``after_id`` bounds only the rows this reader already holds.
    """

    def __init__(self, pool: asyncpg.Pool, schema: str, *, lease_s: float = 60.0) -> None:
        self.pool = pool
        self.schema = schema
        self.lease_s = lease_s
        self.claimant = uuid.uuid4().hex

    async def _claim(self, where: str, order: str, bound: float, limit: int
                     ) -> list[tuple[float, OutboxRow]]:
        rows = await self.pool.fetch(
            _CLAIM.format(s=self.schema, where=where, order=order), self.claimant,
            self.lease_s, bound, max(limit, 0))
        return [(row[0], OutboxRow(*row[1:])) for row in rows]

    async def fresh(self, after_id: int, limit: int) -> list[OutboxRow]:
        """Free rows never tried (and this reader's above ``after_id``), oldest first."""
        claimed = await self._claim(_FRESH, "id", after_id, limit)
        return sorted((row for _, row in claimed), key=lambda row: row.id)

    async def due(self, now: float, limit: int) -> list[OutboxRow]:
        """Rows to try again whose time has come (a first attempt after a restart included),
        and rows whose claim expired, soonest first."""
        claimed = await self._claim(_DUE, "next_attempt_at, id", now, limit)
        claimed.sort(key=lambda pair: (pair[0], pair[1].id))
        return [row for _, row in claimed]

    async def renew(self, ids: Sequence[int]) -> None:
        """Extend this reader's claims on ``ids`` by ``lease_s`` from now."""
        if ids:
            await self.pool.execute(_RENEW.format(s=self.schema), self.claimant,
                                    self.lease_s, list(ids))

    async def max_id(self) -> int:
        return int(await self.pool.fetchval(
            f"SELECT coalesce(max(id), 0) FROM {self.schema}.outbox"))

    async def pending(self) -> int:
        return int(await self.pool.fetchval(f"SELECT count(*) FROM {self.schema}.outbox"))

    async def close(self) -> None:
        pass  # the connections belong to the store's pool; claims end with their lease
