"""SQLite persistence of subscriptions and of the notification outbox (transactional outbox).

Two tables in every tenant database:

- ``subscriptions``: one row per subscription: the validated document as JSON (``doc``), the
  creator's ``@context`` (``context``, JSON) and the delivery status columns, which each
  ``SubscriptionStatus`` increments (``times_failed`` is added to older files when they open:
  ``upgrade_subscriptions``).
- ``outbox``: one row per notification to deliver: the subscription, the endpoint URI (the
  unit of isolation of the delivery workers), the delivery target (JSON: uri, accept,
  receiverInfo, notifierInfo, Link) and the ready payload. ``next_attempt_at`` is 0 for a row
  never tried, else the epoch second of its next attempt (partial index ``outbox_retry``).

Every write is a record staged with the entity changes (``Store.stage``), so a notification
exists if and only if the change that caused it was committed. Reads of the outbox go through
a separate read-only connection (``SqliteOutboxReader``), which sees committed rows only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cityvisor.store.base import OutboxReader
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
from cityvisor.store.sqlite_connections import TenantDatabases

SUBSCRIPTION_SCHEMA = """
CREATE TABLE IF NOT EXISTS subscriptions (
  id TEXT PRIMARY KEY,
  doc TEXT NOT NULL,
  context TEXT,
  times_sent INTEGER NOT NULL DEFAULT 0,
  last_notification TEXT,
  last_success TEXT,
  last_failure TEXT,
  delivery TEXT,
  times_failed INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: readers track the last id seen
  subscription TEXT NOT NULL,
  endpoint TEXT NOT NULL,
  target TEXT NOT NULL,
  payload BLOB NOT NULL,
  created_at REAL NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at REAL NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_retry ON outbox(next_attempt_at) WHERE next_attempt_at > 0;
CREATE INDEX IF NOT EXISTS outbox_subscription ON outbox(subscription);
"""


def _put(conn: sqlite3.Connection, items: list[SubscriptionPut]) -> None:
    conn.executemany(
        "INSERT INTO subscriptions (id, doc, context) VALUES (?, ?, ?) ON CONFLICT (id) "
        "DO UPDATE SET doc = excluded.doc, context = excluded.context",
        [(i.id, i.doc, i.context) for i in items])


def _delete(conn: sqlite3.Connection, items: list[SubscriptionDelete]) -> None:
    conn.executemany("DELETE FROM subscriptions WHERE id = ?", [(i.id,) for i in items])
    conn.executemany("DELETE FROM outbox WHERE subscription = ?", [(i.id,) for i in items])


#: the later of a stored time and a given one (SQLite's two-argument max is NULL with a NULL)
_LATER = "coalesce(max({column}, :{name}), {column}, :{name})"
_STATUS = f"""
UPDATE subscriptions SET times_sent = times_sent + :sent, times_failed = times_failed + :failed,
  last_notification = {_LATER.format(column="last_notification", name="notified")},
  last_success = {_LATER.format(column="last_success", name="success")},
  last_failure = {_LATER.format(column="last_failure", name="failure")},
  delivery = CASE WHEN :success IS NULL AND :failure IS NULL THEN delivery
    WHEN {_LATER.format(column="last_failure", name="failure")} IS NULL
      OR {_LATER.format(column="last_success", name="success")}
         >= {_LATER.format(column="last_failure", name="failure")} THEN 'ok'
    ELSE 'failed' END
WHERE id = :id"""


def _status(conn: sqlite3.Connection, items: list[SubscriptionStatus]) -> None:
    conn.executemany(_STATUS, [
        {"id": i.id, "sent": i.sent, "failed": i.failed, "notified": i.last_notification,
         "success": i.last_success, "failure": i.last_failure} for i in items])


def upgrade_subscriptions(conn: sqlite3.Connection) -> None:
    """Add the columns a file written by an older version lacks."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(subscriptions)")}
    if "times_failed" not in columns:
        conn.execute("ALTER TABLE subscriptions ADD COLUMN times_failed INTEGER NOT NULL "
                     "DEFAULT 0")


def _outbox(conn: sqlite3.Connection, items: list[OutboxRecord]) -> None:
    conn.executemany(
        "INSERT INTO outbox (subscription, endpoint, target, payload, created_at) "
        "VALUES (?, ?, ?, ?, ?)",
        [(i.subscription, i.endpoint, i.target, i.payload, i.created_at) for i in items])


def _done(conn: sqlite3.Connection, items: list[OutboxDone]) -> None:
    conn.executemany("DELETE FROM outbox WHERE id = ?", [(i.id,) for i in items])


def _retry(conn: sqlite3.Connection, items: list[OutboxRetry]) -> None:
    conn.executemany("UPDATE outbox SET attempts = ?, next_attempt_at = ? WHERE id = ?",
                     [(i.attempts, i.next_attempt_at, i.id) for i in items])


WRITERS: dict[type, Callable[[sqlite3.Connection, list[Any]], None]] = {
    SubscriptionPut: _put,
    SubscriptionDelete: _delete,
    SubscriptionStatus: _status,
    OutboxRecord: _outbox,
    OutboxDone: _done,
    OutboxRetry: _retry,
}


#: the columns of a ``StoredSubscription``
_SUBSCRIPTION = ("id, doc, context, times_sent, last_notification, last_success, last_failure, "
                 "delivery, times_failed")


class SubscriptionTables(TenantDatabases):
    """The subscription and outbox reads of ``SqliteStore``."""

    async def subscriptions(self, tenant: str | None) -> list[StoredSubscription]:
        if not self._exists(tenant):
            return []
        rows = self._writer(tenant).execute(
            f"SELECT {_SUBSCRIPTION} FROM subscriptions ORDER BY rowid").fetchall()
        return [StoredSubscription(*row) for row in rows]

    async def subscription(self, tenant: str | None, sub_id: str) -> StoredSubscription | None:
        if not self._exists(tenant):
            return None
        row = self._writer(tenant).execute(
            f"SELECT {_SUBSCRIPTION} FROM subscriptions WHERE id = ?", (sub_id,)).fetchone()
        return None if row is None else StoredSubscription(*row)

    async def outbox_reader(self, tenant: str | None) -> OutboxReader:
        self._writer(tenant)  # the schema exists before we read
        return SqliteOutboxReader(self.path(tenant))


_COLUMNS = "id, subscription, endpoint, target, payload, created_at, attempts"


class SqliteOutboxReader(OutboxReader):
    """A separate connection to a tenant database: sees committed outbox rows only."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                                    check_same_thread=False)
        self.conn.execute("PRAGMA query_only=1")

    async def fresh(self, after_id: int, limit: int) -> list[OutboxRow]:
        """Rows never tried, newer than ``after_id``, oldest first."""
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE id > ? AND next_attempt_at = 0 "
            "ORDER BY id LIMIT ?", (after_id, limit))
        return [OutboxRow(*row) for row in rows]

    async def max_id(self) -> int:
        return int(self.conn.execute("SELECT coalesce(max(id), 0) FROM outbox").fetchone()[0])

    async def due(self, now: float, limit: int) -> list[OutboxRow]:
        """Rows to try again whose time has come (a first attempt after a restart included)."""
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE next_attempt_at > 0 AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at LIMIT ?", (now, limit))
        return [OutboxRow(*row) for row in rows]

    async def pending(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    async def close(self) -> None:
        self.conn.close()
