"""The backends of the store ports, for the contract suite (``test_contract.py``).

One factory per backend, building it on a fresh directory; a new backend joins the suite with
one line in ``STORES`` and one in ``SYSTEM_STORES``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from cityvisor.store.base import Store, SystemStore
from cityvisor.store.memory import MemoryStore, MemorySystemStore


def _unported(name: str) -> Callable[..., Any]:
    async def missing(*_args: Any, **_kwargs: Any) -> Any:
        raise NotImplementedError(f"SqliteStore.{name} is not implemented")
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


STORES: dict[str, Callable[[Path], Store]] = {
    "sqlite": _sqlite_store,
    "memory": lambda _directory: MemoryStore(),
}
SYSTEM_STORES: dict[str, Callable[[Path], SystemStore]] = {
    "sqlite": _sqlite_system_store,
    "memory": lambda _directory: MemorySystemStore(),
}


@pytest.fixture(params=list(STORES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    backend = STORES[request.param](tmp_path / "store")
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture(params=list(SYSTEM_STORES))
async def system_store(request: pytest.FixtureRequest, tmp_path: Path
                       ) -> AsyncIterator[SystemStore]:
    backend = SYSTEM_STORES[request.param](tmp_path / "system")
    try:
        yield backend
    finally:
        await backend.close()
