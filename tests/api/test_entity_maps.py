"""Entity maps (clause 5.2.39) on retrieve and query (5.7.1.4-5.7.4.4, 5.5.14) and the
``/entityMaps/{id}`` resource (6.32), on both store backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from support.clock import Clock, timed_client

from cityvisor.api.app import create_app
from cityvisor.config import Settings
from cityvisor.services import Services

BASE = "/ngsi-ld/v1"
E, T, M = f"{BASE}/entities", f"{BASE}/temporal/entities", f"{BASE}/entityMaps"
HEADER = "NGSILD-EntityMap"
ONE, TWO, THREE = (f"urn:ngsi-ld:Vehicle:{n}" for n in ("one", "two", "three"))
WINDOW = {"timerel": "after", "timeAt": "2000-01-01T00:00:00Z", "timeproperty": "createdAt"}
DEAD = "urn:ngsi-ld:entitymap:dead"


@pytest.fixture(params=["sqlite", "memory"])
def timed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestClient, Clock]]:
    settings = Settings(data_dir=tmp_path / "data", auth=False, allow_context_fetch=False,
                        entity_map_lifetime_s=60)
    with timed_client(request.param, settings) as (client, clock):
        for n, entity_id in enumerate((ONE, TWO, THREE)):
            vehicle = {"id": entity_id, "type": "Vehicle",
                       "speed": {"type": "Property", "value": 30 * (n + 1)}}
            assert client.post(E, json=vehicle).status_code == 201
        yield client, clock


def map_id(response: Any) -> str:
    return str(response.headers[HEADER]).rsplit("/", 1)[-1]


def entity_map(client: TestClient, response: Any, **headers: str) -> dict[str, Any]:
    found = client.get(f"{M}/{map_id(response)}", headers=headers)
    assert found.status_code == 200, found.text
    body: dict[str, Any] = found.json()
    return body


# ---------------------------------------------------------------------------- retrieve


def test_retrieve_with_the_flag_makes_a_map_and_keeps_the_body(timed: Any) -> None:
    client, _ = timed
    plain = client.get(f"{E}/{ONE}")
    response = client.get(f"{E}/{ONE}", params={"entityMap": "true"})
    assert response.status_code == 200
    assert response.json() == plain.json() and HEADER not in plain.headers
    assert response.headers[HEADER] == f"{M}/{map_id(response)}"
    assert map_id(response).startswith("urn:ngsi-ld:entitymap:")
    assert entity_map(client, response) == {
        "id": map_id(response), "type": "EntityMap", "expiresAt": "2030-01-01T00:01:00Z",
        "entityMap": {ONE: ["@none"]}, "linkedMaps": {}}


def test_a_live_map_is_echoed_and_a_dead_one_replaced(timed: Any) -> None:
    client, _ = timed
    made = client.get(f"{E}/{ONE}", params={"entityMap": "true"}).headers[HEADER]
    again = client.get(f"{E}/{TWO}", headers={HEADER: made})
    assert again.status_code == 200 and again.headers[HEADER] == made
    assert again.json()["id"] == TWO
    fresh = client.get(f"{E}/{ONE}", headers={HEADER: DEAD})
    assert fresh.status_code == 200
    assert "dead" not in fresh.headers[HEADER] and fresh.headers[HEADER] != made
    assert entity_map(client, fresh)["entityMap"] == {ONE: ["@none"]}


def test_a_failed_retrieve_makes_no_map_and_a_bad_flag_is_refused(timed: Any) -> None:
    client, _ = timed
    missing = client.get(f"{E}/urn:ngsi-ld:Vehicle:none", params={"entityMap": "true"})
    assert missing.status_code == 404 and HEADER not in missing.headers
    assert client.get(f"{E}/{ONE}", params={"entityMap": "maybe"}).status_code == 400
    without = client.get(f"{E}/{ONE}", params={"entityMap": "false"})
    assert without.status_code == 200 and HEADER not in without.headers


def test_a_map_expires(timed: Any) -> None:
    client, clock = timed
    response = client.get(f"{E}/{ONE}", params={"entityMap": "true"})
    reference = response.headers[HEADER]
    clock.now = "2030-01-01T00:00:59.000000Z"
    assert client.get(f"{E}/{ONE}", headers={HEADER: reference}).headers[HEADER] == reference
    clock.now = "2030-01-01T00:01:00.000000Z"
    assert client.get(f"{M}/{map_id(response)}").status_code == 404
    renewed = client.get(f"{E}/{ONE}", headers={HEADER: reference})
    assert renewed.status_code == 200 and renewed.headers[HEADER] != reference


def test_temporal_retrieve_makes_a_map_of_its_entity(timed: Any) -> None:
    client, _ = timed
    response = client.get(f"{T}/{ONE}", params={**WINDOW, "entityMap": "true"})
    assert response.status_code == 200 and response.json()["id"] == ONE
    assert entity_map(client, response)["entityMap"] == {ONE: ["@none"]}


# ---------------------------------------------------------------------------- queries


def ids(response: Any) -> list[str]:
    return sorted(e["id"] for e in response.json())


def test_a_query_map_holds_every_match_and_fixes_the_next_queries(timed: Any) -> None:
    client, _ = timed
    made = client.get(E, params={"type": "Vehicle", "q": "speed>40", "limit": "1",
                                 "entityMap": "true"})
    assert made.status_code == 201 and len(made.json()) == 1
    assert entity_map(client, made)["entityMap"] == {TWO: ["@none"], THREE: ["@none"]}
    reference = made.headers[HEADER]
    # the map fixes the result set: ONE (never in it) is not returned by a wider query
    fixed = client.get(E, params={"type": "Vehicle"}, headers={HEADER: reference})
    assert fixed.status_code == 200 and fixed.headers[HEADER] == reference
    assert ids(fixed) == [THREE, TWO]
    narrower = client.get(E, params={"type": "Vehicle", "id": f"{ONE},{TWO}"},
                          headers={HEADER: reference})
    assert ids(narrower) == [TWO]
    # a query's own filters still apply, and a dead reference makes a new map
    assert ids(client.get(E, params={"type": "Vehicle", "q": "speed>60"},
                          headers={HEADER: reference})) == [THREE]
    fresh = client.get(E, params={"type": "Vehicle"}, headers={HEADER: DEAD})
    assert fresh.status_code == 201 and ids(fresh) == [ONE, THREE, TWO]
    assert len(entity_map(client, fresh)["entityMap"]) == 3


def test_a_query_of_nothing_makes_an_empty_map_that_matches_nothing(timed: Any) -> None:
    client, _ = timed
    made = client.get(E, params={"type": "Boat", "entityMap": "true"})
    assert made.status_code == 201 and made.json() == []
    assert entity_map(client, made)["entityMap"] == {}
    assert client.get(E, params={"type": "Vehicle"},
                      headers={HEADER: made.headers[HEADER]}).json() == []


def test_temporal_query_map_is_created_with_201_and_fixes_the_result(timed: Any) -> None:
    client, _ = timed
    made = client.get(T, params={**WINDOW, "type": "Vehicle", "id": ONE, "entityMap": "true"})
    assert made.status_code == 201, made.text
    assert [e["id"] for e in made.json()] == [ONE]
    assert entity_map(client, made)["entityMap"] == {ONE: ["@none"]}
    reference = made.headers[HEADER]
    fixed = client.get(T, params={**WINDOW, "type": "Vehicle"}, headers={HEADER: reference})
    assert fixed.status_code == 200 and fixed.headers[HEADER] == reference
    assert [e["id"] for e in fixed.json()] == [ONE]
    fresh = client.get(T, params={**WINDOW, "type": "Vehicle"}, headers={HEADER: DEAD})
    assert fresh.status_code == 201 and "dead" not in fresh.headers[HEADER]
    assert len(entity_map(client, fresh)["entityMap"]) == 3


def test_query_via_post_and_purge_still_refuse_the_flag(timed: Any) -> None:
    client, _ = timed
    query = {"type": "Query", "entities": [{"type": "Vehicle"}]}
    assert client.post(f"{BASE}/entityOperations/query", params={"entityMap": "true"},
                       json=query).status_code == 422
    assert client.delete(E, params={"type": "Vehicle", "entityMap": "true"}).status_code == 422


# ---------------------------------------------------------------------------- /entityMaps


def made_map(client: TestClient, **headers: str) -> str:
    return map_id(client.get(E, params={"type": "Vehicle", "entityMap": "true"},
                             headers=headers))


def test_update_sets_expires_at_within_the_lifetime(timed: Any) -> None:
    client, clock = timed
    made = made_map(client)
    clock.now = "2030-01-01T00:00:30.000000Z"
    far = {"expiresAt": "2099-01-01T00:00:00Z", "entityMap": {"urn:x:injected": ["@none"]},
           "linkedMaps": {"a": "b"}}
    assert client.patch(f"{M}/{made}", json=far).status_code == 204
    body = client.get(f"{M}/{made}").json()
    assert body["expiresAt"] == "2030-01-01T00:01:30Z"  # the lifetime from now, not 2099
    assert len(body["entityMap"]) == 3 and "urn:x:injected" not in body["entityMap"]
    assert body["linkedMaps"] == {}
    soon = {"expiresAt": "2030-01-01T00:00:40Z"}
    assert client.patch(f"{M}/{made}", json=soon).status_code == 204
    assert client.get(f"{M}/{made}").json()["expiresAt"] == "2030-01-01T00:00:40Z"
    assert client.patch(f"{M}/{made}", json={"expiresAt": "2020-01-01T00:00:00Z"}
                        ).status_code == 204
    assert client.get(f"{M}/{made}").status_code == 404  # ended


@pytest.mark.parametrize("body", [{"expiresAt": "tomorrow"}, {"expiresAt": 5}, [1],
                                  {"expiresAt": "2030-01-01T00:00:40Z", "colour": "red"}])
def test_bad_updates_are_refused(timed: Any, body: Any) -> None:
    client, _ = timed
    made = made_map(client)
    response = client.patch(f"{M}/{made}", json=body)
    assert response.status_code == 400
    assert response.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"


def test_delete_and_unknown_maps(timed: Any) -> None:
    client, _ = timed
    made = made_map(client)
    deleted = client.delete(f"{M}/{made}")
    assert deleted.status_code == 204 and deleted.content == b""
    for response in (client.get(f"{M}/{made}"), client.delete(f"{M}/{made}"),
                     client.patch(f"{M}/{DEAD}", json={"expiresAt": "2030-01-01T00:00:40Z"})):
        assert response.status_code == 404
        assert response.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound"
    for response in (client.get(f"{M}/not a uri"), client.delete(f"{M}/not a uri")):
        assert response.status_code == 400


def test_maps_belong_to_their_tenant(timed: Any) -> None:
    client, _ = timed
    north = {"NGSILD-Tenant": "north"}
    lamp = {"id": "urn:ngsi-ld:Lamp:1", "type": "Lamp"}
    assert client.post(E, json=lamp, headers=north).status_code == 201
    made = made_map(client)
    assert client.get(f"{M}/{made}", headers=north).status_code == 404
    assert client.get(f"{M}/{made}", headers={"NGSILD-Tenant": "nowhere"}).status_code == 404
    assert client.delete(f"{M}/{made}", headers=north).status_code == 404
    assert client.get(f"{M}/{made}").status_code == 200  # the owner's map survives
    # the default tenant's map is unknown to north: a new map, of north's entities
    response = client.get(E, params={"type": "Lamp"}, headers={**north, HEADER: made})
    assert response.status_code == 201 and map_id(response) != made
    assert entity_map(client, response, **north)["entityMap"] == {lamp["id"]: ["@none"]}


def test_a_request_matching_too_many_entities_makes_no_map(
        timed: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    client, _ = timed
    monkeypatch.setattr("cityvisor.broker.entity_maps.MAX_ENTITIES", 2)
    monkeypatch.setattr("cityvisor.api.entities.MAX_ENTITIES", 2)
    monkeypatch.setattr("cityvisor.api.temporal.MAX_ENTITIES", 2)
    for path, params in ((E, {}), (T, WINDOW)):
        response = client.get(path, params={**params, "type": "Vehicle", "entityMap": "true"})
        assert response.status_code == 403, response.text
        assert response.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/TooManyResults"
    assert client.get(E, params={"id": f"{ONE},{TWO}", "type": "Vehicle",
                                 "entityMap": "true"}).status_code == 201


def test_maps_survive_a_restart(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", auth=False, allow_context_fetch=False)
    vehicle = {"id": ONE, "type": "Vehicle"}
    with TestClient(create_app(settings, build_services=Services.build),
                    base_url="http://127.0.0.1:1026") as client:
        assert client.post(E, json=vehicle).status_code == 201
        made = map_id(client.get(f"{E}/{ONE}", params={"entityMap": "true"}))
    with TestClient(create_app(settings, build_services=Services.build),
                    base_url="http://127.0.0.1:1026") as client:
        assert client.get(f"{M}/{made}").json()["entityMap"] == {ONE: ["@none"]}
