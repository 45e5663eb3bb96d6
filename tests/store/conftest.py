"""The backends of the store ports, for the contract suite (``test_contract.py``).

One factory per backend, building it on a fresh directory (a factory may be async); a new
backend joins the suite with one line in ``STORES`` and one in ``SYSTEM_STORES``.

PostgreSQL runs where the test server answers (``tests/support/postgres.py``); each test gets
its own namespace of schemas, dropped afterwards.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from support.postgres import PG_DSN, drop_namespace, new_namespace, pg_ready

from cityvisor.store.base import Store, SystemStore
from cityvisor.store.memory import MemoryStore, MemorySystemStore


def _unported(name: str) -> Callable[..., Any]:
    async def missing(*_args: Any, **_kwargs: Any) -> Any:
        raise NotImplementedError(f"{name} is not implemented by this backend")
    return missing


def _sqlite_store(directory: Path) -> Store:
    from cityvisor.store.sqlite import SqliteStore

    backend: type[SqliteStore] = SqliteStore
    if SqliteStore.__abstractmethods__:
        # A backend that lacks part of the port still runs the other tests; the tests of the
        # missing methods fail with NotImplementedError.
        backend = type("PartialSqliteStore", (SqliteStore,), {
            name: _unported(name) for name in SqliteStore.__abstractmethods__})
    return backend(directory)


def _sqlite_system_store(directory: Path) -> SystemStore:
    from cityvisor.store.sqlite_system import SqliteSystemStore

    return SqliteSystemStore(directory / "system.sqlite")


class _PostgresStore:
    """A PostgreSQL store in a namespace of its own, whose schemas go when it closes."""

    @staticmethod
    async def build(_directory: Path) -> Store:
        await pg_ready()
        from cityvisor.store.postgres import PostgresStore
        from cityvisor.store.postgres_database import create_pool, upgrade

        namespace = new_namespace()
        await upgrade(PG_DSN, namespace=namespace)
        pool = await create_pool(PG_DSN, min_size=1, max_size=4)
        backend: type[PostgresStore] = PostgresStore
        if PostgresStore.__abstractmethods__:
            backend = type("PartialPostgresStore", (PostgresStore,), {
                name: _unported(name) for name in PostgresStore.__abstractmethods__})
        store = backend(pool, namespace, owns_pool=True)
        original_close = store.close

        async def close() -> None:
            await original_close()
            await drop_namespace(namespace)

        store.close = close  # type: ignore[method-assign]
        return store


STORES: dict[str, Callable[[Path], Store | Awaitable[Store]]] = {
    "sqlite": _sqlite_store,
    "memory": lambda _directory: MemoryStore(),
    "postgresql": _PostgresStore.build,
}
async def _postgres_system_store(_directory: Path) -> SystemStore:
    await pg_ready()
    from cityvisor.store.postgres_database import create_pool, upgrade
    from cityvisor.store.postgres_system import PostgresSystemStore

    namespace = new_namespace()
    await upgrade(PG_DSN, namespace=namespace)
    store = PostgresSystemStore(await create_pool(PG_DSN, min_size=1, max_size=2), namespace,
                                owns_pool=True)
    original_close = store.close

    async def close() -> None:
        await original_close()
        await drop_namespace(namespace)

    store.close = close  # type: ignore[method-assign]
    return store


SYSTEM_STORES: dict[str, Callable[[Path], SystemStore | Awaitable[SystemStore]]] = {
    "sqlite": _sqlite_system_store,
    "memory": lambda _directory: MemorySystemStore(),
    "postgresql": _postgres_system_store,
}


@pytest.fixture(params=list(STORES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    made = STORES[request.param](tmp_path / "store")
    backend = await made if inspect.isawaitable(made) else made
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture(params=list(SYSTEM_STORES))
async def system_store(request: pytest.FixtureRequest, tmp_path: Path
                       ) -> AsyncIterator[SystemStore]:
    made = SYSTEM_STORES[request.param](tmp_path / "system")
    backend = await made if inspect.isawaitable(made) else made
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
async def postgres_store(tmp_path: Path) -> AsyncIterator[Store]:
    """The PostgreSQL store alone, for its own tests (skipped where no server answers)."""
    made = STORES["postgresql"](tmp_path / "store")
    backend = await made if inspect.isawaitable(made) else made
    try:
        yield backend
    finally:
        await backend.close()
