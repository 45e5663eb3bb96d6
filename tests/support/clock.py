"""A settable broker clock, and a TestClient whose broker reads it (on SQLite or memory)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from starlette.testclient import TestClient

from cityvisor.api.app import create_app
from cityvisor.config import Settings
from cityvisor.services import Services
from cityvisor.store.memory import MemoryStore, MemorySystemStore

__all__ = ["Clock", "timed_client"]


class Clock:
    """The broker's notion of now (``utc_now``'s text form); tests move ``now`` on."""

    def __init__(self, now: str = "2030-01-01T00:00:00.000000Z") -> None:
        self.now = now

    def __call__(self) -> str:
        return self.now


@contextmanager
def timed_client(backend: str, settings: Settings) -> Iterator[tuple[TestClient, Clock]]:
    """A client of the API on ``backend`` (``sqlite`` or ``memory``) with a settable clock."""
    services = (Services.build(settings) if backend == "sqlite"
                else Services.assemble(settings, MemoryStore(), MemorySystemStore()))
    clock = Clock()
    services.broker.clock = clock
    with TestClient(create_app(settings, services), base_url="http://127.0.0.1:1026") as client:
        try:
            yield client, clock
        finally:
            client.portal.call(services.close)
