"""The backends of the store ports, for the contract suite (``test_contract.py``).

One factory per backend, building it on a fresh directory (a factory may be async); a new
backend joins the suite with one line in ``STORES`` and one in ``SYSTEM_STORES``.

PostgreSQL runs where a server answers at ``CITYVISOR_TEST_PG`` (default
``postgresql://postgres@127.0.0.1:5432/cityvisor_test``; the database and the PostGIS
extension are created if missing); each test gets its own namespace of schemas, dropped
afterwards. Without a server the postgresql tests are skipped, unless
``CITYVISOR_REQUIRE_PG=1`` (CI), where they fail.
"""

from __future__ import annotations

import inspect
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

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


PG_DSN = os.environ.get("CITYVISOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/cityvisor_test")
_pg_state: dict[str, str | None] = {}  # "error": why PostgreSQL cannot be used (None: it can)


async def _pg_ready() -> None:
    """Create the test database and PostGIS if missing; skip (or fail) when unreachable."""
    if "error" not in _pg_state:
        _pg_state["error"] = await _prepare_pg()
    error = _pg_state["error"]
    if error is not None:
        if os.environ.get("CITYVISOR_REQUIRE_PG") == "1":
            pytest.fail(f"PostgreSQL is required (CITYVISOR_REQUIRE_PG=1): {error}")
        pytest.skip(f"PostgreSQL is not reachable at {PG_DSN}: {error}")


async def _prepare_pg() -> str | None:
    try:
        import asyncpg
    except ImportError:
        return "asyncpg is not installed (pip install 'cityvisor[postgresql]')"
    database = PG_DSN.rsplit("/", 1)[-1].split("?")[0]
    try:
        try:
            conn = await asyncpg.connect(PG_DSN, timeout=5)
        except asyncpg.InvalidCatalogNameError:
            admin = await asyncpg.connect(PG_DSN.rsplit("/", 1)[0] + "/postgres", timeout=5)
            try:
                await admin.execute(f'CREATE DATABASE "{database}"')
            finally:
                await admin.close()
            conn = await asyncpg.connect(PG_DSN, timeout=5)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        return f"{type(error).__name__}: {error}"
    return None


class _PostgresStore:
    """A PostgreSQL store in a namespace of its own, whose schemas go when it closes."""

    @staticmethod
    async def build(_directory: Path) -> Store:
        await _pg_ready()
        from cityvisor.store.postgres import PostgresStore
        from cityvisor.store.postgres_database import create_pool, upgrade

        namespace = "t" + uuid.uuid4().hex[:10]
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
            await _drop_namespace(namespace)

        store.close = close  # type: ignore[method-assign]
        return store


async def _drop_namespace(namespace: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    try:
        for row in await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1",
                                    namespace + "\\_%"):
            await conn.execute(f'DROP SCHEMA "{row["nspname"]}" CASCADE')
    finally:
        await conn.close()


STORES: dict[str, Callable[[Path], Store | Awaitable[Store]]] = {
    "sqlite": _sqlite_store,
    "memory": lambda _directory: MemoryStore(),
    "postgresql": _PostgresStore.build,
}
async def _postgres_system_store(_directory: Path) -> SystemStore:
    await _pg_ready()
    from cityvisor.store.postgres_database import create_pool, upgrade
    from cityvisor.store.postgres_system import PostgresSystemStore

    namespace = "t" + uuid.uuid4().hex[:10]
    await upgrade(PG_DSN, namespace=namespace)
    store = PostgresSystemStore(await create_pool(PG_DSN, min_size=1, max_size=2), namespace,
                                owns_pool=True)
    original_close = store.close

    async def close() -> None:
        await original_close()
        await _drop_namespace(namespace)

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
