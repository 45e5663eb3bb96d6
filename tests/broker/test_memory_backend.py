"""The whole broker on the in-memory backend: the NGSI-LD API, the temporal history and the
subscription outbox run without SQLite (no database file is written)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from cityvisor.api.app import create_app
from cityvisor.config import Settings
from cityvisor.services import Services
from cityvisor.store.memory import MemoryStore, MemorySystemStore

E = "/ngsi-ld/v1/entities"
LAMP = "urn:ngsi-ld:Streetlight:memory:1"


@pytest.fixture
def memory_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", auth=False, allow_context_fetch=False)
    services = Services.assemble(settings, MemoryStore(), MemorySystemStore())
    with TestClient(create_app(settings, services), base_url="http://127.0.0.1:1026") as client:
        client.services = services  # type: ignore[attr-defined]
        yield client
        client.portal.call(services.close)  # the caller owns the services it passes
    assert not (tmp_path / "data").exists() or not list((tmp_path / "data").rglob("*.sqlite"))


def test_entities_queries_history_and_subscriptions_in_memory(
        memory_client: TestClient) -> None:
    client = memory_client
    lamp = {"id": LAMP, "type": "Streetlight",
            "powerState": {"type": "Property", "value": "on",
                           "observedAt": "2026-12-01T17:00:00Z"},
            "location": {"type": "GeoProperty",
                         "value": {"type": "Point", "coordinates": [4.36, 43.84]}}}
    assert client.post(E, json=lamp).status_code == 201
    assert client.post(E, json=lamp).status_code == 409
    sub = {"type": "Subscription", "entities": [{"type": "Streetlight"}],
           "notification": {"endpoint": {"uri": "http://127.0.0.1:9/unreachable"}}}
    assert client.post("/ngsi-ld/v1/subscriptions", json=sub).status_code == 201
    patch = {"powerState": {"type": "Property", "value": "off",
                            "observedAt": "2026-12-01T23:00:00Z"}}
    assert client.patch(f"{E}/{LAMP}/attrs", json=patch).status_code == 204
    found = client.get(E, params={"type": "Streetlight", "q": 'powerState=="off"',
                                  "georel": "near;maxDistance==100", "geometry": "Point",
                                  "coordinates": "[4.3601,43.8401]"}).json()
    assert [e["id"] for e in found] == [LAMP]
    assert client.get(E, params={"type": "Streetlight", "q": 'powerState=="on"'}).json() == []
    history = client.get(f"/ngsi-ld/v1/temporal/entities/{LAMP}",
                         params={"attrs": "powerState", "options": "temporalValues"}).json()
    assert history["powerState"]["values"] == [["on", "2026-12-01T17:00:00Z"],
                                               ["off", "2026-12-01T23:00:00Z"]]
    types = client.get("/ngsi-ld/v1/types").json()
    assert types["typeList"] == ["Streetlight"]
    store = client.services.store  # type: ignore[attr-defined]
    reader = client.portal.call(store.outbox_reader, None)
    assert client.portal.call(reader.pending) >= 1  # the notification of the change waits for its endpoint
    client.portal.call(reader.close)

