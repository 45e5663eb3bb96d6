"""The test PostgreSQL: where it is, whether it answers, a namespace of schemas per test.

PostgreSQL runs where a server answers at ``CITYVISOR_TEST_PG`` (default
``postgresql://postgres@127.0.0.1:5432/cityvisor_test``; the database and the PostGIS
extension are created if missing). Without a server the tests that need it are skipped, unless
``CITYVISOR_REQUIRE_PG=1`` (CI), where they fail. Each test takes a namespace of its own
(``new_namespace``), whose schemas ``drop_namespace`` removes afterwards.
"""

from __future__ import annotations

import os
import uuid

import pytest

PG_DSN = os.environ.get(
    "CITYVISOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/cityvisor_test?sslmode=disable")
_state: dict[str, str | None] = {}  # "error": why PostgreSQL cannot be used (None: it can)

__all__ = ["PG_DSN", "drop_namespace", "new_namespace", "pg_ready"]


async def pg_ready() -> None:
    """Create the test database and PostGIS if missing; skip (or fail) when unreachable."""
    if "error" not in _state:
        _state["error"] = await _prepare()
    error = _state["error"]
    if error is not None:
        if os.environ.get("CITYVISOR_REQUIRE_PG") == "1":
            pytest.fail(f"PostgreSQL is required (CITYVISOR_REQUIRE_PG=1): {error}")
        pytest.skip(f"PostgreSQL is not reachable at {PG_DSN}: {error}")


async def _prepare() -> str | None:
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


def new_namespace() -> str:
    """A schema prefix no other test uses."""
    return "t" + uuid.uuid4().hex[:10]


async def drop_namespace(namespace: str) -> None:
    """Drop every schema of ``namespace``."""
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    try:
        for row in await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1",
                                    namespace + "\\_%"):
            await conn.execute(f'DROP SCHEMA "{row["nspname"]}" CASCADE')
    finally:
        await conn.close()
