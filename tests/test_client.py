"""The ContextClient contract: the in-process and HTTP clients behave the same."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from cityvisor.api.app import create_app
from cityvisor.client import ContextClient, HttpContextClient, LocalContextClient
from cityvisor.config import Settings
from cityvisor.ngsild.errors import AlreadyExists, BadRequestData, ResourceNotFound
from cityvisor.services import Services

pytestmark = pytest.mark.anyio
SDM = "https://raw.githubusercontent.com/smart-data-models/dataModel.Environment/master/context.jsonld"


def gauge(n: int, level: float) -> dict[str, object]:
    return {"id": f"urn:ngsi-ld:FloodMonitoring:test:{n}", "type": "FloodMonitoring",
            "currentLevel": {"type": "Property", "value": level, "unitCode": "MTR"},
            "location": {"type": "GeoProperty",
                         "value": {"type": "Point", "coordinates": [4.36 + n / 1000, 43.84]}}}


@pytest.fixture(params=["local", "http"])
async def context_client(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ContextClient]:
    settings = Settings(data_dir=tmp_path, auth=False, allow_context_fetch=False)
    services = Services.build(settings)
    client: ContextClient
    if request.param == "local":
        client = LocalContextClient(services.broker, tenant="nimes", context=SDM)
    else:
        transport = httpx.ASGITransport(app=create_app(settings, services))
        client = HttpContextClient("http://127.0.0.1:1026", tenant="nimes", context=SDM,
                                   transport=transport)
    yield client
    await client.close()
    await services.close()


async def test_create_query_update_delete(context_client: ContextClient) -> None:
    await context_client.create_entity(gauge(1, 0.4))
    result = await context_client.upsert_entities([gauge(2, 1.9), gauge(3, 2.5)])
    assert result["errors"] == [] and sorted(result["created"]) == [
        "urn:ngsi-ld:FloodMonitoring:test:2", "urn:ngsi-ld:FloodMonitoring:test:3"]
    high = await context_client.query_entities(type="FloodMonitoring", q="currentLevel>1.5",
                                               options="keyValues")
    assert sorted(e["currentLevel"] for e in high) == [1.9, 2.5]
    await context_client.update_attribute("urn:ngsi-ld:FloodMonitoring:test:1", "currentLevel",
                                          {"value": 3.1})
    entity = await context_client.get_entity("urn:ngsi-ld:FloodMonitoring:test:1")
    assert entity["currentLevel"] == {"type": "Property", "value": 3.1, "unitCode": "MTR"}
    near = await context_client.query_entities(
        type="FloodMonitoring", georel="near;maxDistance==100", geometry="Point",
        coordinates="[4.361,43.84]")
    assert {e["id"] for e in near} == {"urn:ngsi-ld:FloodMonitoring:test:1",
                                       "urn:ngsi-ld:FloodMonitoring:test:2"}
    await context_client.merge_entity("urn:ngsi-ld:FloodMonitoring:test:2",
                                      {"alertLevel": {"type": "Property", "value": "orange"}})
    merged = await context_client.get_entity("urn:ngsi-ld:FloodMonitoring:test:2",
                                             options="keyValues")
    assert merged["alertLevel"] == "orange" and merged["currentLevel"] == 1.9
    await context_client.delete_entity("urn:ngsi-ld:FloodMonitoring:test:3")
    with pytest.raises(ResourceNotFound):
        await context_client.get_entity("urn:ngsi-ld:FloodMonitoring:test:3")


async def test_errors_are_the_same_exceptions(context_client: ContextClient) -> None:
    await context_client.create_entity(gauge(1, 0.4))
    with pytest.raises(AlreadyExists):
        await context_client.create_entity(gauge(1, 0.4))
    with pytest.raises(BadRequestData):
        await context_client.query_entities(type="FloodMonitoring", q="currentLevel>>1")
    with pytest.raises(ResourceNotFound):
        await context_client.update_attribute("urn:ngsi-ld:FloodMonitoring:test:9",
                                              "currentLevel", {"value": 1})
