"""Shared fixtures: an app on a temporary data directory, driven through Starlette's TestClient.

``client`` runs each test on both store backends: the embedded SQLite files and PostgreSQL
(a namespace of schemas per test in the test database, ``tests/support/postgres.py``;
skipped when no PostgreSQL answers, unless ``CITYVISOR_REQUIRE_PG=1``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from links import LINK_REL, SDM, link  # noqa: F401  (re-exported for older imports)
from starlette.testclient import TestClient
from support.backends import BACKENDS, client_on

from cityvisor.api.app import create_app
from cityvisor.config import Settings
from cityvisor.services import Services


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", auth=False, allow_context_fetch=False)


@pytest.fixture(params=BACKENDS)
def client(request: pytest.FixtureRequest, settings: Settings) -> Iterator[TestClient]:
    with client_on(request.param, settings) as test_client:
        yield test_client


@pytest.fixture
def secure_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "secure", auth=True, allow_context_fetch=False)


@pytest.fixture
def secure_client(secure_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(secure_settings, build_services=Services.build), base_url="http://127.0.0.1:1026") as test_client:
        yield test_client


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (``pytest.mark.anyio``) run on asyncio, like the server."""
    return "asyncio"
