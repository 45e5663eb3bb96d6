"""The connections of the PostgreSQL backend: one asyncpg pool, one schema per tenant.

``TenantSchemas`` maps tenants to schemas (``<namespace>_default`` for the default tenant,
``<namespace>_t_<name>_<hash>`` for a named one: lower-case, ``-`` as ``_``, and a hash of the
exact name so that ``North`` and ``north`` stay apart), registered in ``<namespace>_system``
and created with every migration step on the tenant's first write.

Writes are group commits (``Store.stage``): the first writer of a tenant opens a transaction
on a connection of its own; every writer until the commit applies its changes in that
transaction, all or nothing per writer, and gets the same commit. The commit starts on the
turn of the event loop after a writer first awaits its durability (so the writers of that
turn share it), or ``COMMIT_AFTER_S`` after the transaction opened if none does; until then no
other connection sees the changes (the outbox readers included).

Writers that arrive while the transaction's connection is busy queue their parts; the next
turn applies every queued part together (``_in_group_batched``: one statement per table for
all of them, under one savepoint). If that fails (one part is stale or refused), the batch
is rolled back to its savepoint and each part is applied alone under a savepoint of its own,
so that only the failing writer fails. Each group keeps the entities its parts staged
(``_Group.staged``) so that reads of them need not wait for the connection.

Reads that must see staged changes run on the open transaction's connection; the others on
any pooled connection (committed data). The work runs in tasks of its own, so that a
cancelled caller never leaves the shared transaction half-written.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import asyncpg
from asyncpg.transaction import Transaction

from cityvisor.ngsild.tenants import check_tenant
from cityvisor.store.postgres_errors import ACQUIRE_TIMEOUT_S, is_outage, unavailable
from cityvisor.store.postgres_migrations import create_tenant_schema, quote

T = TypeVar("T")
P = TypeVar("P")
LOG = logging.getLogger(__name__)

#: a group nobody awaits commits this long after it opened (callers normally await at once)
COMMIT_AFTER_S = 0.05


def schema_name(namespace: str, tenant: str | None) -> str:
    """The schema of a tenant (checked name; at most 63 bytes, PostgreSQL's limit)."""
    check_tenant(tenant)
    if tenant is None:
        return f"{namespace}_default"
    digest = hashlib.sha256(tenant.encode()).hexdigest()[:8]
    return f"{namespace}_t_{tenant.lower().replace('-', '_')[:32]}_{digest}"


@dataclass(eq=False)
class _Group:
    """One tenant's open group transaction."""

    lock: asyncio.Lock
    committed: asyncio.Future[None]
    conn: asyncpg.Connection | None = None
    transaction: Transaction | None = None
    closed: bool = False
    broken: bool = False  # its connection failed: the group is rolled back, never committed
    scheduled: bool = False
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    #: parts waiting for the connection (``_in_group_batched``), and whether a task drains them
    queue: list[_Queued[Any]] = field(default_factory=list)
    draining: bool = False
    #: what the applied parts staged, for reads (key -> value; the backend decides)
    staged: dict[Any, Any] = field(default_factory=dict)
    #: whether the transaction holds work yet (a batch then needs a savepoint of its own)
    used: bool = False


class _Reopen(Exception):
    """The group committed before the part was applied: it joins the next group."""


@dataclass(eq=False)
class _Queued(Generic[P]):
    """A writer's part waiting in a group's queue, and how it is applied."""

    part: P
    apply: Callable[[asyncpg.Connection, list[P]], Awaitable[None]]
    applied: Callable[[_Group, P], None]
    result: asyncio.Future[Awaitable[None]]


class TenantSchemas:
    """Tenants -> schemas, and the group transactions of ``PostgresStore``."""

    def __init__(self, pool: asyncpg.Pool, namespace: str = "ngsild") -> None:
        self.pool = pool
        self.namespace = namespace
        self.system = quote(f"{namespace}_system")
        self._system_name = f"{namespace}_system"
        self._schemas: dict[str | None, str] = {}
        self._groups: dict[str | None, _Group] = {}
        self._committing: dict[str | None, _Group] = {}  # groups whose COMMIT is in flight
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ tenants

    async def _schema(self, tenant: str | None, create: bool = False) -> str | None:
        """The quoted schema of a tenant; None if it has none (and ``create`` is False)."""
        check_tenant(tenant)
        found = self._schemas.get(tenant)
        if found is not None:
            return found
        name = "" if tenant is None else tenant
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
            schema = await conn.fetchval(
                f"SELECT schema_name FROM {self.system}.tenants WHERE name = $1", name)
            if schema is None:
                if not create:
                    return None
                schema = schema_name(self.namespace, tenant)
                async with conn.transaction():
                    await create_tenant_schema(conn, self._system_name, name, schema)
        found = self._schemas[tenant] = quote(schema)
        return found

    async def has_tenant(self, tenant: str | None) -> bool:
        return tenant is None or await self._schema(tenant) is not None

    async def tenants(self) -> list[str]:
        rows = await self.pool.fetch(
            f"SELECT name FROM {self.system}.tenants WHERE name <> '' ORDER BY name")
        return [row["name"] for row in rows]

    # ------------------------------------------------------------------ group commit

    def _committed_now(self) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def _pending(self, tenant: str | None) -> Awaitable[None]:
        """The open group's commit (an empty stage waits for it), or a completed one."""
        group = self._groups.get(tenant)
        return self._durable(tenant, group) if group is not None else self._committed_now()

    def _durable(self, tenant: str | None, group: _Group) -> Awaitable[None]:
        """An awaitable of the group's commit; awaiting it schedules the commit."""
        return _Durable(lambda: self._schedule_commit(tenant, group), group.committed)

    def _schedule_commit(self, tenant: str | None, group: _Group) -> None:
        if not group.scheduled:
            group.scheduled = True
            asyncio.get_running_loop().call_soon(self._spawn, self._commit(tenant, group))

    async def _in_group(self, tenant: str | None,
                        work: Callable[[asyncpg.Connection], Awaitable[None]]
                        ) -> Awaitable[None]:
        """Run ``work`` in the tenant's group transaction under a savepoint; the awaitable
        completes when the group commits. The work runs in a task of its own."""
        task = asyncio.ensure_future(self._join(tenant, work))
        return await asyncio.shield(task)

    async def _join(self, tenant: str | None,
                    work: Callable[[asyncpg.Connection], Awaitable[None]]) -> Awaitable[None]:
        loop = asyncio.get_running_loop()
        while True:
            group = self._groups.get(tenant)
            if group is None:
                group = self._groups[tenant] = _Group(asyncio.Lock(), loop.create_future())
            async with group.lock:
                if group.closed:
                    continue
                if group.conn is None:
                    await self._open(tenant, group)
                group.used = True
                await self._in_savepoint(tenant, group, work)
                return self._durable(tenant, group)

    async def _in_group_batched(
            self, tenant: str | None, part: P,
            apply: Callable[[asyncpg.Connection, list[P]], Awaitable[None]],
            applied: Callable[[_Group, P], None]) -> Awaitable[None]:
        """Apply ``part`` in the tenant's group transaction, with the parts of the writers
        queued meanwhile (``apply(conn, parts)``: all of them, or raise); ``applied(group,
        part)`` is told of each part applied. The awaitable completes when the group commits.
        A part that fails raises its own error; the others are applied without it."""
        loop = asyncio.get_running_loop()
        while True:
            group = self._groups.get(tenant)
            if group is None:
                group = self._groups[tenant] = _Group(asyncio.Lock(), loop.create_future())
            queued = _Queued(part, apply, applied, loop.create_future())
            group.queue.append(queued)
            if not group.draining:
                group.draining = True
                self._spawn(self._drain(tenant, group))
            try:
                return await asyncio.shield(queued.result)
            except _Reopen:
                continue

    async def _drain(self, tenant: str | None, group: _Group) -> None:
        """Apply the group's queued parts, one batch per hold of the connection's lock (a
        commit waiting for the lock goes between two batches: the parts queued meanwhile
        join the next group)."""
        try:
            while group.queue:
                async with group.lock:
                    batch, group.queue = group.queue, []
                    if group.closed:
                        _settle(batch, _Reopen())
                        continue
                    if group.conn is None:
                        try:
                            await self._open(tenant, group)
                        except BaseException as error:
                            _settle(batch, error)
                            continue
                    await self._apply_batch(tenant, group, batch)
        finally:
            group.draining = False
            if group.queue:  # left by an error above: never strand a writer
                batch, group.queue = group.queue, []
                _settle(batch, _Reopen())

    async def _apply_batch(self, tenant: str | None, group: _Group,
                           batch: list[_Queued[Any]]) -> None:
        """All parts of ``batch`` at once; if that fails, each alone under a savepoint.

        In a transaction that holds nothing yet, the batch needs no savepoint of its own (two
        round trips saved, the common case under load: one batch per commit): if it fails,
        the transaction is rolled back and begun again."""
        assert group.conn is not None
        conn = group.conn
        together = all(q.apply == batch[0].apply for q in batch)
        if together and not group.used:
            try:
                await batch[0].apply(conn, [q.part for q in batch])
            except Exception as error:
                try:
                    assert group.transaction is not None
                    await group.transaction.rollback()
                    group.transaction = conn.transaction()
                    await group.transaction.start()
                except BaseException as lost:  # the connection is gone or stuck
                    await self._break(tenant, group, lost)
                    _settle(batch, error)
                    return
                if len(batch) == 1:
                    _settle(batch, error)
                    return
            else:
                group.used = True
                for queued in batch:
                    queued.applied(group, queued.part)
                _settle(batch, self._durable(tenant, group))
                return
        elif len(batch) > 1 and together:
            savepoint = conn.transaction()
            try:
                await savepoint.start()
                try:
                    await batch[0].apply(conn, [q.part for q in batch])
                except Exception:
                    await savepoint.rollback()  # one part failed: each goes alone below
                else:
                    await savepoint.commit()
                    for queued in batch:
                        queued.applied(group, queued.part)
                    _settle(batch, self._durable(tenant, group))
                    return
            except BaseException as error:  # the connection is gone or stuck
                await self._break(tenant, group, error)
                _settle(batch, error)
                return
        group.used = True
        for queued in batch:
            if group.broken:
                _settle([queued], _Reopen())
                continue
            parts = [queued.part]
            try:
                await self._in_savepoint(tenant, group, _bound(queued.apply, parts))
            except BaseException as error:
                _settle([queued], error)
                continue
            queued.applied(group, queued.part)
            _settle([queued], self._durable(tenant, group))

    async def _in_savepoint(self, tenant: str | None, group: _Group,
                            work: Callable[[asyncpg.Connection], Awaitable[None]]) -> None:
        """``work`` under a savepoint of the group's transaction: undone if it raises (the
        error goes on); a savepoint that fails (the connection is gone or stuck) breaks the
        group."""
        assert group.conn is not None
        savepoint = group.conn.transaction()
        try:
            await savepoint.start()
        except BaseException as error:
            await self._break(tenant, group, error)
            raise
        try:
            await work(group.conn)
        except BaseException as error:
            try:
                await savepoint.rollback()
            except BaseException:
                await self._break(tenant, group, error)
            raise
        try:
            await savepoint.commit()
        except BaseException as error:
            await self._break(tenant, group, error)
            raise

    async def _break(self, tenant: str | None, group: _Group, error: BaseException) -> None:
        """The group's connection failed (the database went away): every writer of the group
        fails with ``error``, the connection is dropped, the next writer opens a new group."""
        group.closed = group.broken = True
        if self._groups.get(tenant) is group:
            del self._groups[tenant]
        if not group.committed.done():
            group.committed.set_exception(error)
            group.committed.exception()  # retrieved: writers that never await it log nothing
        assert group.conn is not None
        with suppress(Exception):  # already released by a commit that failed at the same time
            group.conn.terminate()
        with suppress(Exception):
            await self.pool.release(group.conn)

    async def _open(self, tenant: str | None, group: _Group) -> None:
        conn = await self.pool.acquire(timeout=ACQUIRE_TIMEOUT_S)
        try:
            transaction = conn.transaction()
            await transaction.start()
        except BaseException:
            await self.pool.release(conn)
            self._groups.pop(tenant, None)
            group.closed = True
            raise
        group.conn, group.transaction = conn, transaction
        asyncio.get_running_loop().call_later(COMMIT_AFTER_S, self._schedule_commit, tenant,
                                              group)

    def _spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _commit(self, tenant: str | None, group: _Group) -> None:
        async with group.lock:
            if group.broken:
                return  # failed and released by _break
            group.closed = True
            if self._groups.get(tenant) is group:
                del self._groups[tenant]
            self._committing[tenant] = group
            assert group.conn is not None and group.transaction is not None
            try:
                await group.transaction.commit()
            except BaseException as error:
                # nothing here may raise: the writers wait on ``committed``
                failure: BaseException = unavailable(error) if is_outage(error) else error
                with suppress(Exception):
                    await group.transaction.rollback()
                with suppress(Exception):
                    if group.conn.is_closed() or is_outage(error):
                        group.conn.terminate()  # the server went away: never reuse it
                if not group.committed.done():
                    group.committed.set_exception(failure)
            else:
                for callback in group.after_commit:
                    try:
                        callback()
                    except Exception:  # never leave the writers waiting
                        LOG.exception("a post-commit callback failed")
                if not group.committed.done():
                    group.committed.set_result(None)
            finally:
                if self._committing.get(tenant) is group:
                    del self._committing[tenant]
                with suppress(Exception):  # a connection lost with the server is dropped
                    await self.pool.release(group.conn)

    @asynccontextmanager
    async def _reading(self, tenant: str | None, staged: bool
                       ) -> AsyncIterator[asyncpg.Connection]:
        """A connection that sees the staged changes (``staged``: the open group's, or any
        pooled one once the group being committed is done) or committed data."""
        group = self._groups.get(tenant) if staged else None
        if group is not None:
            async with group.lock:
                if not group.closed and group.conn is not None:
                    try:
                        yield group.conn
                    except Exception as error:
                        if group.conn.is_closed() or isinstance(
                                error, asyncpg.InternalClientError) or is_outage(error):
                            # the server closed the group's connection (it went away)
                            await self._break(tenant, group, error)
                            raise unavailable(error) from error
                        raise
                    return
        committing = self._committing.get(tenant) if staged else None
        if committing is not None:
            await asyncio.gather(asyncio.shield(committing.committed), return_exceptions=True)
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
            yield conn

    async def _close_groups(self) -> None:
        """Commit the open groups and wait for every background task."""
        for tenant, group in list(self._groups.items()):
            if group.conn is not None:
                await asyncio.gather(self._durable(tenant, group), return_exceptions=True)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _bound(apply: Callable[[asyncpg.Connection, list[P]], Awaitable[None]], parts: list[P]
           ) -> Callable[[asyncpg.Connection], Awaitable[None]]:
    """``apply`` of these parts, as savepoint work."""
    return lambda conn: apply(conn, parts)


def _settle(batch: list[_Queued[Any]], outcome: BaseException | Awaitable[None]) -> None:
    """Give each queued writer its outcome: its error, or the awaitable of the group's
    commit."""
    for queued in batch:
        if queued.result.done():
            continue
        if isinstance(outcome, BaseException):
            queued.result.set_exception(outcome)
            queued.result.exception()  # retrieved: a cancelled writer's logs nothing
        else:
            queued.result.set_result(outcome)


class _Durable:
    """Awaits a group's commit, which the first ``await`` schedules; a cancelled awaiter
    never cancels the commit (it is shielded)."""

    def __init__(self, schedule: Callable[[], None], committed: asyncio.Future[None]) -> None:
        self._schedule = schedule
        self._committed = committed

    def __await__(self) -> Generator[Any, None, None]:
        if not self._committed.done():
            self._schedule()
        return asyncio.shield(self._committed).__await__()
