"""Background jobs run by one process among those sharing the database (``Store.leader``).

A job (the retention purge, periodic notifications) has a PostgreSQL session-level advisory
lock, keyed by the namespace and the job's name (``hashtextextended``, 64 bits). The process
that takes it keeps it on a connection of its own for as long as it lives, so the job runs in
one process only and never twice in one period; when that process dies (or loses its
connection), the server releases the lock and the next process to ask takes the job over.
Each ``leader`` call checks the holding connection with a query, so a process that lost it
stops at once. A per-run transaction lock would not do: two processes would run the same
periodic job one right after the other.
"""

from __future__ import annotations

from contextlib import suppress

import asyncpg

from cityvisor.store.postgres_connections import TenantSchemas


class Leaders(TenantSchemas):
    """``leader(job)`` of ``PostgresStore``."""

    _leader_conn: asyncpg.Connection | None = None
    _leading: frozenset[str] = frozenset()

    async def leader(self, job: str) -> bool:
        conn = self._leader_conn
        if conn is not None:
            try:
                await conn.fetchval("SELECT 1")
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await self._drop_leadership()
                conn = None
        if job in self._leading:
            return True
        if conn is None:
            conn = self._leader_conn = await self.pool.acquire()
        taken = bool(await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                                         f"cityvisor:{self.namespace}:{job}"))
        if taken:
            self._leading = self._leading | {job}
        return taken

    async def _drop_leadership(self) -> None:
        """Give up every job (their locks are unlocked before the connection goes back to
        the pool, which keeps sessions as they are; a connection that fails is dropped,
        and the server unlocks with it)."""
        conn, self._leader_conn, self._leading = self._leader_conn, None, frozenset()
        if conn is not None:
            try:
                await conn.execute("SELECT pg_advisory_unlock_all()")
                await self.pool.release(conn)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                with suppress(asyncpg.InterfaceError):  # the pool took a closed one back
                    conn.terminate()
