"""The store backends a test runs on: ``sqlite`` (the embedded default) and ``postgresql``
(the test PostgreSQL of ``support.postgres``, a namespace of schemas per test).

    @pytest.fixture(params=BACKENDS)
    async def services(request, tmp_path):
        async with services_on(request.param, Settings(data_dir=tmp_path, ...)) as built:
            yield built
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

from starlette.testclient import TestClient

from cityvisor.api.app import create_app
from cityvisor.config import Settings
from cityvisor.services import Services
from support.postgres import PG_DSN, drop_namespace, new_namespace, pg_ready

BACKENDS = ["sqlite", "postgresql"]

__all__ = ["BACKENDS", "client_on", "on_postgres", "services_on"]


async def on_postgres(settings: Settings) -> Settings:
    """``settings`` on a fresh namespace of the test PostgreSQL (schemas created); skips
    the test when no PostgreSQL answers (fails with ``CITYVISOR_REQUIRE_PG=1``)."""
    await pg_ready()
    from cityvisor.store.postgres_database import upgrade

    namespace = new_namespace()
    await upgrade(PG_DSN, namespace=namespace)
    return settings.model_copy(update={"db": PG_DSN, "db_namespace": namespace,
                                       "db_pool_min": 1, "db_pool_max": 4})


@asynccontextmanager
async def services_on(backend: str, settings: Settings, *,
                      start: bool = False) -> AsyncIterator[Services]:
    """The services of ``settings`` on ``backend`` (started if ``start``), closed after;
    on PostgreSQL the namespace is dropped after."""
    if backend == "postgresql":
        settings = await on_postgres(settings)
    services = await Services.open(settings)
    try:
        if start:
            await services.start()
        yield services
    finally:
        await services.close()
        if settings.db is not None:
            await drop_namespace(settings.db_namespace)


@contextmanager
def client_on(backend: str, settings: Settings) -> Iterator[TestClient]:
    """A TestClient of the API on ``backend`` (services built when it starts, closed after;
    on PostgreSQL the namespace is dropped after)."""
    if backend == "postgresql":
        settings = asyncio.run(on_postgres(settings))
    try:
        with TestClient(create_app(settings, build_services=Services.open),
                        base_url="http://127.0.0.1:1026") as client:
            yield client
    finally:
        if settings.db is not None:
            asyncio.run(drop_namespace(settings.db_namespace))
