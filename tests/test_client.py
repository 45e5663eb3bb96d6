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


ALERT = "https://raw.githubusercontent.com/smart-data-models/dataModel.Alert/master/context.jsonld"


async def test_query_by_ids(context_client: ContextClient) -> None:
    await context_client.upsert_entities([gauge(n, n / 10) for n in range(1, 5)])
    found = await context_client.query_entities(
        id="urn:ngsi-ld:FloodMonitoring:test:2,urn:ngsi-ld:FloodMonitoring:test:4,"
           "urn:ngsi-ld:FloodMonitoring:test:9", attrs="currentLevel", options="keyValues")
    assert sorted((e["id"], e["currentLevel"]) for e in found) == [
        ("urn:ngsi-ld:FloodMonitoring:test:2", 0.2), ("urn:ngsi-ld:FloodMonitoring:test:4", 0.4)]


async def test_with_context_speaks_another_domain(context_client: ContextClient) -> None:
    alerts = context_client.with_context(ALERT)
    await alerts.create_entity({"id": "urn:ngsi-ld:Alert:test:1", "type": "Alert",
                                "severity": {"type": "Property", "value": "high"}})
    assert (await alerts.get_entity("urn:ngsi-ld:Alert:test:1", options="keyValues")) == {
        "id": "urn:ngsi-ld:Alert:test:1", "type": "Alert", "severity": "high"}
    # the original client keeps its own @context (Environment): Alert terms are not compacted
    seen = await context_client.get_entity("urn:ngsi-ld:Alert:test:1", options="keyValues")
    assert seen["type"] != "Alert" and "Alert" in seen["type"]
    await alerts.close()  # a derived client shares the connection: closing it is harmless
    await context_client.create_entity(gauge(7, 0.7))


async def test_batch_merge_reports_per_entity(context_client: ContextClient) -> None:
    await context_client.upsert_entities([gauge(1, 0.1), gauge(2, 0.2)])
    result = await context_client.merge_entities([
        {"id": "urn:ngsi-ld:FloodMonitoring:test:1", "type": "FloodMonitoring",
         "currentLevel": {"type": "Property", "value": 1.1}},
        {"id": "urn:ngsi-ld:FloodMonitoring:test:2", "type": "FloodMonitoring",
         "currentLevel": {"type": "Property", "value": 1.2}}])
    assert result["errors"] == [] and sorted(result["success"]) == [
        "urn:ngsi-ld:FloodMonitoring:test:1", "urn:ngsi-ld:FloodMonitoring:test:2"]
    result = await context_client.merge_entities([
        {"id": "urn:ngsi-ld:FloodMonitoring:test:1", "type": "FloodMonitoring",
         "currentLevel": {"type": "Property", "value": 2.1}},
        {"id": "urn:ngsi-ld:FloodMonitoring:test:9", "type": "FloodMonitoring",
         "currentLevel": {"type": "Property", "value": 9.9}}])
    assert result["success"] == ["urn:ngsi-ld:FloodMonitoring:test:1"]
    assert [e["entityId"] for e in result["errors"]] == ["urn:ngsi-ld:FloodMonitoring:test:9"]
    entity = await context_client.get_entity("urn:ngsi-ld:FloodMonitoring:test:1",
                                             options="keyValues")
    assert entity["currentLevel"] == 2.1 and "location" in entity  # merged, not replaced
