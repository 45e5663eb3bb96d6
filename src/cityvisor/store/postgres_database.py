"""Opening the PostgreSQL backend: the pool, the schema check, the migrations (``docs/postgresql.md``).

``open_postgres(dsn)`` builds the two stores on one asyncpg pool after checking that the database
has every migration step of this code (``DatabaseBehind`` otherwise: ``cityvisor db upgrade``
runs ``upgrade(dsn)``). ``namespace`` prefixes every schema the backend makes
(``<namespace>_system``, ``<namespace>_default``, ``<namespace>_t_...``), so that several
brokers (or test runs) can share one database.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from cityvisor.store.postgres import PostgresStore
from cityvisor.store.postgres_errors import COMMAND_TIMEOUT_S
from cityvisor.store.postgres_migrations import check_connection, upgrade_connection
from cityvisor.store.postgres_system import PostgresSystemStore

#: session settings of every connection: no JIT (the q translation makes many small plans
#: that JIT compilation would only slow down), a name for pg_stat_activity
SERVER_SETTINGS = {"jit": "off", "application_name": "cityvisor"}


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    # timeout: a connection attempt to an unreachable server gives up after 5 s (a 503,
    # never a request left hanging); reset: a released connection is returned as it is
    # (asyncpg still rolls back a transaction left open), without the reset query's round
    # trip on every release: this backend sets no session state (no SET, LISTEN or cursor
    # outside a transaction), and the one session-level advisory lock (``Leaders``) is
    # unlocked before its connection goes back
    pool: Any = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                          statement_cache_size=1024, timeout=5,
                                          command_timeout=COMMAND_TIMEOUT_S,
                                          server_settings=SERVER_SETTINGS,
                                          reset=_keep_session)
    return pool


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset: nothing to reset (see ``create_pool``)."""


async def upgrade(dsn: str, *, namespace: str = "ngsild") -> None:
    """Create or migrate the backend's schemas to this code's version."""
    conn = await asyncpg.connect(dsn, server_settings=SERVER_SETTINGS)
    try:
        await upgrade_connection(conn, f"{namespace}_system")
    finally:
        await conn.close()


async def check(dsn: str, *, namespace: str = "ngsild") -> None:
    """Raise ``DatabaseBehind`` (with the command to run) unless the database is current."""
    conn = await asyncpg.connect(dsn, server_settings=SERVER_SETTINGS)
    try:
        await check_connection(conn, f"{namespace}_system")
    finally:
        await conn.close()


async def open_postgres(dsn: str, *, min_size: int = 2, max_size: int = 10,
                        namespace: str = "ngsild"
                        ) -> tuple[PostgresStore, PostgresSystemStore]:
    """The store and the system store on one new pool (closed with the store), after
    ``check`` (which raises ``DatabaseBehind`` on a database to upgrade)."""
    await check(dsn, namespace=namespace)
    pool = await create_pool(dsn, min_size=min_size, max_size=max_size)
    return PostgresStore(pool, namespace, owns_pool=True), PostgresSystemStore(pool, namespace)
