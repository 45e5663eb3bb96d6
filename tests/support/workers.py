"""Several "processes" on one PostgreSQL namespace, for the several-workers tests: each is a
``PostgresStore`` on a connection pool of its own, with an entity broker on it (and, for the
delivery tests, the subscriptions and their delivery: ``Notifications``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from cityvisor.broker.contexts import ContextRegistry
from cityvisor.broker.entities import EntityBroker
from cityvisor.store.base import Store
from cityvisor.store.memory import MemorySystemStore
from support.postgres import PG_DSN, drop_namespace, new_namespace, pg_ready

__all__ = ["Worker", "workers_on_postgres"]


@dataclass
class Worker:
    store: Store
    broker: EntityBroker


@asynccontextmanager
async def workers_on_postgres(count: int = 2) -> AsyncIterator[list[Worker]]:
    """``count`` workers on one fresh namespace of the test PostgreSQL (dropped after)."""
    await pg_ready()
    from cityvisor.store.postgres import PostgresStore
    from cityvisor.store.postgres_database import create_pool, upgrade

    namespace = new_namespace()
    await upgrade(PG_DSN, namespace=namespace)
    found: list[Worker] = []
    try:
        for _ in range(count):
            store = PostgresStore(await create_pool(PG_DSN, min_size=1, max_size=4), namespace,
                                  owns_pool=True)
            contexts = ContextRegistry(MemorySystemStore(), allow_fetch=False)
            found.append(Worker(store, EntityBroker(store, contexts)))
        yield found
    finally:
        for worker in found:
            await worker.store.close()
        await drop_namespace(namespace)
