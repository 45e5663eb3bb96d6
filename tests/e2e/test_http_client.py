"""``HttpContextClient`` over the network (its default aiohttp transport) against a real server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from links import SDM
from support.server import free_port

from cityvisor.client import HttpContextClient
from cityvisor.ngsild.errors import AlreadyExists, ResourceNotFound

pytestmark = pytest.mark.anyio


def gauge(n: int, level: float) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:FloodMonitoring:net:{n}", "type": "FloodMonitoring",
            "name": {"type": "Property", "value": f"gauge #{n} & co"},
            "currentLevel": {"type": "Property", "value": level, "unitCode": "MTR"}}


async def test_the_http_client_over_a_socket(e2e: Any, tmp_path: Path) -> None:
    server = e2e.start_server(tmp_path / "data")
    client = HttpContextClient(server.url, tenant="nimes", context=SDM.format("Environment"))
    try:
        await client.create_entity(gauge(1, 0.4))
        with pytest.raises(AlreadyExists):
            await client.create_entity(gauge(1, 0.4))
        result = await client.upsert_entities([gauge(2, 1.9), gauge(3, 2.5)])
        assert result["errors"] == []
        high = await client.query_entities(type="FloodMonitoring", q="currentLevel>1.5",
                                           options="keyValues")
        assert sorted(e["currentLevel"] for e in high) == [1.9, 2.5]
        named = await client.query_entities(type="FloodMonitoring",
                                            q='name=="gauge #1 & co"', options="keyValues")
        assert [e["id"] for e in named] == ["urn:ngsi-ld:FloodMonitoring:net:1"]
        await client.merge_entity("urn:ngsi-ld:FloodMonitoring:net:1",
                                  {"currentLevel": {"type": "Property", "value": 3.1}})
        entity = await client.get_entity("urn:ngsi-ld:FloodMonitoring:net:1", options="keyValues")
        assert entity["type"] == "FloodMonitoring" and entity["currentLevel"] == 3.1
        weather = client.with_context(SDM.format("Weather"))  # same connection, its own Link
        entity = await weather.get_entity("urn:ngsi-ld:FloodMonitoring:net:1",
                                          options="keyValues")
        assert entity["type"] == "https://smartdatamodels.org/dataModel.Environment/FloodMonitoring"
        await client.delete_entity("urn:ngsi-ld:FloodMonitoring:net:1")
        with pytest.raises(ResourceNotFound):
            await client.get_entity("urn:ngsi-ld:FloodMonitoring:net:1")
    finally:
        await client.close()


async def test_an_unreachable_broker_is_a_connection_error() -> None:
    client = HttpContextClient(f"http://127.0.0.1:{free_port()}", timeout_s=2)
    try:
        with pytest.raises(ConnectionError, match="GET http://127.0.0.1"):
            await client.query_entities(type="Streetlight")
    finally:
        await client.close()
