"""HTTP tests of Linked Entity retrieval (clause 4.5.23: join, joinLevel, containedBy) and of
pick/omit projections on linked Entities (clause 4.21)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

BASE = "/ngsi-ld/v1"
ERR = "https://uri.etsi.org/ngsi-ld/errors/"
BUILDING = "urn:ngsi-ld:Building:b1"
CITY = "urn:ngsi-ld:City:nimes"
COUNTRY = "urn:ngsi-ld:Country:fr"


def rel(target: str) -> dict[str, str]:
    return {"type": "Relationship", "object": target}


def prop(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


@pytest.fixture
def chain(client: TestClient) -> None:
    """Building --locatedAt--> City --isInCountry--> Country."""
    for entity in (
        {"id": BUILDING, "type": "Building", "name": prop("Arena"), "locatedAt": rel(CITY)},
        {"id": CITY, "type": "City", "name": prop("Nîmes"), "population": prop(150000),
         "isInCountry": rel(COUNTRY)},
        {"id": COUNTRY, "type": "Country", "name": prop("France")},
    ):
        response = client.post(f"{BASE}/entities", json=entity)
        assert response.status_code == 201, response.text


def get(client: TestClient, entity_id: str = BUILDING, **params: str) -> Any:
    response = client.get(f"{BASE}/entities/{entity_id}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def problem(response: Any, status: int, type_name: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["type"] == ERR + type_name


def test_inline_one_level(client: TestClient, chain: None) -> None:
    body = get(client, join="inline")
    city = body["locatedAt"]["entity"]
    assert body["locatedAt"]["object"] == CITY
    assert city["id"] == CITY and city["type"] == "City"
    assert "entity" not in city["isInCountry"]  # joinLevel defaults to 1


def test_inline_two_levels(client: TestClient, chain: None) -> None:
    body = get(client, join="inline", joinLevel="2")
    country = body["locatedAt"]["entity"]["isInCountry"]["entity"]
    assert country == {"id": COUNTRY, "type": "Country", "name": prop("France")}


def test_inline_key_values_replaces_the_relationship(client: TestClient, chain: None) -> None:
    body = get(client, join="inline", options="keyValues")
    assert body["locatedAt"]["id"] == CITY
    assert body["locatedAt"]["isInCountry"] == COUNTRY


def test_inline_with_sys_attrs(client: TestClient, chain: None) -> None:
    body = get(client, join="inline", options="sysAttrs")
    assert "createdAt" in body["locatedAt"]["entity"]


def test_flat_lists_each_entity_once(client: TestClient, chain: None) -> None:
    body = get(client, join="flat", joinLevel="2")
    assert [e["id"] for e in body] == [BUILDING, CITY, COUNTRY]
    assert "entity" not in body[0]["locatedAt"]
    simplified = get(client, join="flat", options="keyValues")
    assert simplified[0]["locatedAt"] == CITY and simplified[1]["id"] == CITY


def test_missing_linked_entity_is_left_alone(client: TestClient) -> None:
    client.post(f"{BASE}/entities", json={"id": BUILDING, "type": "Building",
                                          "locatedAt": rel("urn:ngsi-ld:City:none")})
    expected = {"id": BUILDING, "type": "Building", "locatedAt": rel("urn:ngsi-ld:City:none")}
    assert get(client, join="inline") == expected
    assert get(client, join="flat") == expected


def test_join_none_is_plain_retrieval(client: TestClient, chain: None) -> None:
    assert get(client, join="@none") == get(client)


def test_pick_on_linked_entity(client: TestClient, chain: None) -> None:
    body = get(client, join="inline", joinLevel="2", pick="id,locatedAt{id,name}")
    assert body == {"id": BUILDING, "locatedAt": {**rel(CITY), "entity": {
        "id": CITY, "name": prop("Nîmes")}}}
    flat = get(client, join="flat", joinLevel="2",
               pick="id,locatedAt{name,isInCountry{name}}")
    assert flat == [{"id": BUILDING, "locatedAt": rel(CITY)},
                    {"name": prop("Nîmes"), "isInCountry": rel(COUNTRY)},
                    {"name": prop("France")}]


def test_pick_without_the_relationship_follows_no_link(client: TestClient,
                                                      chain: None) -> None:
    assert get(client, join="flat", pick="id,name") == {"id": BUILDING, "name": prop("Arena")}


def test_omit_on_linked_entity(client: TestClient, chain: None) -> None:
    body = get(client, join="inline", joinLevel="2", omit="name,locatedAt{population}")
    assert "name" not in body and "locatedAt" in body
    city = body["locatedAt"]["entity"]
    assert "population" not in city and city["name"] == prop("Nîmes")
    assert city["isInCountry"]["entity"]["name"] == prop("France")  # no projection there
    assert "locatedAt" not in get(client, join="inline", omit="locatedAt")


def test_loops_and_contained_by_are_not_entered(client: TestClient) -> None:
    a, b = "urn:ngsi-ld:Thing:a", "urn:ngsi-ld:Thing:b"
    client.post(f"{BASE}/entities", json={"id": a, "type": "Thing", "next": rel(b)})
    client.post(f"{BASE}/entities", json={"id": b, "type": "Thing", "next": rel(a)})
    body = get(client, a, join="inline", joinLevel="5")
    assert body["next"]["entity"]["id"] == b
    assert "entity" not in body["next"]["entity"]["next"]  # a is on the path already
    assert [e["id"] for e in get(client, a, join="flat", joinLevel="5")] == [a, b]
    assert "entity" not in get(client, a, join="inline", containedBy=b)["next"]


def test_list_relationship_inlines_an_entity_list(client: TestClient, chain: None) -> None:
    client.post(f"{BASE}/entities", json={
        "id": "urn:ngsi-ld:Tour:t1", "type": "Tour",
        "stops": {"type": "ListRelationship", "objectList": [{"object": CITY},
                                                              {"object": COUNTRY}]}})
    body = get(client, "urn:ngsi-ld:Tour:t1", join="inline")
    assert [e["id"] for e in body["stops"]["entityList"]] == [CITY, COUNTRY]


@pytest.mark.parametrize("params", [
    {"pick": "locatedAt{name}"},  # no join
    {"omit": "locatedAt{name}", "join": "@none"},
    {"pick": "locatedAt{isInCountry{name}}", "join": "inline"},  # 2 hops > joinLevel 1
    {"omit": "locatedAt{isInCountry{name}}", "join": "flat", "joinLevel": "1"},
    {"join": "sideways"}, {"join": "inline", "joinLevel": "0"},
    {"join": "inline", "joinLevel": "two"}, {"join": "inline", "joinLevel": "11"},
    {"join": "inline", "containedBy": "not a uri"},
])
def test_invalid_linked_retrieval_is_400(client: TestClient, chain: None,
                                         params: dict[str, str]) -> None:
    problem(client.get(f"{BASE}/entities/{BUILDING}", params=params), 400, "BadRequestData")
    problem(client.get(f"{BASE}/entities", params={"type": "Building", **params}), 400,
            "BadRequestData")


def test_query_inline_and_flat(client: TestClient, chain: None) -> None:
    response = client.get(f"{BASE}/entities", params={"type": "Building", "join": "inline"})
    assert response.status_code == 200, response.text
    assert response.json()[0]["locatedAt"]["entity"]["id"] == CITY
    response = client.get(f"{BASE}/entities", params={
        "type": "Building,City", "join": "flat", "joinLevel": "2", "count": "true"})
    assert sorted(e["id"] for e in response.json()) == sorted([BUILDING, CITY, COUNTRY])
    assert response.headers["NGSILD-Results-Count"] == "2"  # the matching entities only


def test_query_pick_on_linked_entity(client: TestClient, chain: None) -> None:
    response = client.get(f"{BASE}/entities", params={
        "type": "Building", "join": "inline", "pick": "id,locatedAt{name}"})
    assert response.json() == [{"id": BUILDING, "locatedAt": {**rel(CITY), "entity": {
        "name": prop("Nîmes")}}}]


@pytest.mark.parametrize("params", [
    {"q": 'locatedAt{name}=="Nîmes"'},  # no join
    {"q": 'locatedAt{isInCountry{name}}=="France"', "join": "inline", "joinLevel": "1"},
])
def test_too_deep_linked_q_is_400(client: TestClient, chain: None,
                                  params: dict[str, str]) -> None:
    problem(client.get(f"{BASE}/entities", params={"type": "Building", **params}), 400,
            "BadRequestData")


def test_linked_q_within_join_level_is_not_supported(client: TestClient, chain: None) -> None:
    response = client.get(f"{BASE}/entities", params={
        "type": "Building", "q": 'locatedAt{name}=="Nîmes"', "join": "inline"})
    problem(response, 422, "OperationNotSupported")
