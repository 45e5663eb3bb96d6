"""pick / omit on the Temporal API (ETSI GS CIM 009 v1.8 clauses 4.21, 5.7.3.4, 5.7.4.4)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

API = "/ngsi-ld/v1"
T = f"{API}/temporal/entities"
A = "urn:ngsi-ld:Vehicle:A"
B = "urn:ngsi-ld:Vehicle:B"
AFTER = {"timerel": "after", "timeAt": "1970-01-01T00:00:00Z"}


def vehicle(entity_id: str) -> dict[str, Any]:
    return {"id": entity_id, "type": "Vehicle",
            "speed": [{"type": "Property", "value": v, "observedAt": f"2020-08-01T12:0{i}:00Z"}
                      for i, v in enumerate((120, 80))],
            "fuelLevel": [{"type": "Property", "value": 67, "observedAt": "2020-08-01T12:03:00Z"}]}


@pytest.fixture
def fleet(client: TestClient) -> TestClient:
    for entity_id in (A, B):
        assert client.post(T, json=vehicle(entity_id)).status_code == 201
    return client


@pytest.mark.parametrize(("params", "members"), [
    ({"pick": "speed"}, ["speed"]),
    ({"pick": "id,speed"}, ["id", "speed"]),
    ({"pick": "id"}, ["id"]),
    ({"omit": "speed"}, ["fuelLevel", "id", "type"]),
    ({"omit": "type,speed"}, ["fuelLevel", "id"]),
    ({"pick": "id,type", "omit": "speed"}, ["id", "type"]),
    ({"pick": "id|speed"}, ["id", "speed"]),  # clause 4.21: "|" is the same "or" as ","
])
def test_retrieve_keeps_the_projected_members(fleet: TestClient, params: dict[str, str],
                                              members: list[str]) -> None:
    r = fleet.get(f"{T}/{A}", params=params)
    assert r.status_code == 200, r.text
    body = r.json()
    assert sorted(body) == members
    if "speed" in body:
        assert [i["value"] for i in body["speed"]] == [120, 80]


def test_query_projects_every_entity(fleet: TestClient) -> None:
    r = fleet.get(T, params={"type": "Vehicle", **AFTER, "pick": "id,speed"})
    assert r.status_code == 200, r.text
    assert [sorted(e) for e in r.json()] == [["id", "speed"], ["id", "speed"]]
    r = fleet.get(T, params={"type": "Vehicle", **AFTER, "omit": "type",
                             "options": "temporalValues"})
    assert [sorted(e) for e in r.json()] == [["fuelLevel", "id", "speed"]] * 2
    assert r.json()[0]["speed"]["values"][0][0] == 120
    # pick selects no entity: both are answered, even without the picked attribute
    r = fleet.get(T, params={"type": "Vehicle", **AFTER, "pick": "id,nothing"})
    assert r.json() == [{"id": A}, {"id": B}]


def test_projection_of_aggregated_values(fleet: TestClient) -> None:
    r = fleet.get(T, params={"type": "Vehicle", **AFTER, "pick": "speed",
                             "options": "aggregatedValues", "aggrMethods": "max"})
    assert r.status_code == 200, r.text
    assert [sorted(e) for e in r.json()] == [["speed"], ["speed"]]
    assert r.json()[0]["speed"]["max"][0][0] == 120


@pytest.mark.parametrize("params", [
    {"pick": "speed", "omit": "speed"},
    {"pick": "speed", "attrs": "fuelLevel"},
    {"omit": "speed", "attrs": "fuelLevel"},
    {"pick": "owner{name}"},
    {"pick": "speed,"},
    {"omit": "sp(eed"},
])
def test_bad_projections_are_bad_request_data(fleet: TestClient, params: dict[str, str]) -> None:
    for url, extra in ((f"{T}/{A}", {}), (T, {"type": "Vehicle", **AFTER})):
        r = fleet.get(url, params={**extra, **params})
        assert r.status_code == 400, (url, r.text)
        assert r.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"


@pytest.mark.parametrize("params", [{"pick": "unknown"},
                                    {"omit": "id,type,fuelLevel,speed"}])
def test_a_retrieve_left_empty_is_not_found(fleet: TestClient, params: dict[str, str]) -> None:
    r = fleet.get(f"{T}/{A}", params=params)
    assert r.status_code == 404, r.text
    assert r.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"


def test_post_query_takes_the_projection_from_the_url(fleet: TestClient) -> None:
    r = fleet.post(f"{API}/temporal/entityOperations/query", params={"pick": "id"},
                   json={"type": "Query", "entities": [{"type": "Vehicle"}],
                         "temporalQ": {"timerel": "after", "timeAt": "1970-01-01T00:00:00Z"}})
    assert r.status_code == 200, r.text
    assert r.json() == [{"id": A}, {"id": B}]


def test_geojson_is_not_acceptable(fleet: TestClient) -> None:
    """Clause 6.3.4: GeoJSON represents entities, not their temporal evolution."""
    geo = {"Accept": "application/geo+json"}
    for r in (fleet.get(T, params={"type": "Vehicle"}, headers=geo),
              fleet.get(f"{T}/{A}", headers=geo),
              fleet.post(f"{API}/temporal/entityOperations/query", headers=geo,
                         json={"type": "Query", "entities": [{"type": "Vehicle"}]})):
        assert r.status_code == 406, r.text
    r = fleet.get(f"{T}/{A}", headers={"Accept": "application/geo+json, application/json;q=0.5"})
    assert r.status_code == 200  # negotiated among the other accepted types
    assert r.headers["content-type"].startswith("application/json")
