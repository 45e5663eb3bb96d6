"""/entityOperations/{create,upsert,update,merge,delete} (clauses 6.14-6.17, 6.31)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

BASE = "/ngsi-ld/v1"
ERR = "https://uri.etsi.org/ngsi-ld/errors/"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"
OPS = ("create", "upsert", "update", "merge", "delete")


def uid(n: int | str, kind: str = "Sensor") -> str:
    return f"urn:ngsi-ld:{kind}:{n}"


def sensor(n: int | str, **attrs: Any) -> dict[str, Any]:
    entity: dict[str, Any] = {"id": uid(n), "type": "Sensor"}
    for name, value in attrs.items():
        entity[name] = {"type": "Property", "value": value}
    return entity


def batch(client: TestClient, op: str, body: Any, **params: str):
    return client.post(f"{BASE}/entityOperations/{op}", json=body, params=params)


def get(client: TestClient, entity_id: str, **params: str):
    return client.get(f"{BASE}/entities/{entity_id}", params=params)


def key_values(client: TestClient, entity_id: str) -> dict[str, Any]:
    response = get(client, entity_id, options="keyValues")
    assert response.status_code == 200, response.text
    return response.json()


def assert_problem(response, status: int, type_name: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == ERR + type_name
    assert body["status"] == status
    assert body.get("detail")
    return body


def errors_by_id(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["entityId"]: e["error"] for e in body["errors"]}


# ---------------------------------------------------------------- create


def test_create_answers_201_with_the_ids(client: TestClient) -> None:
    response = batch(client, "create", [sensor(1, temperature=20), sensor(2, temperature=21)])
    assert response.status_code == 201, response.text
    assert response.json() == [uid(1), uid(2)]
    assert key_values(client, uid(1)) == {"id": uid(1), "type": "Sensor", "temperature": 20}
    assert key_values(client, uid(2))["temperature"] == 21


def test_create_207_when_some_exist_and_the_others_are_created(client: TestClient) -> None:
    assert batch(client, "create", [sensor(1, temperature=1)]).status_code == 201
    response = batch(client, "create", [sensor(1, temperature=99), sensor(2, temperature=2)])
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["success"] == [uid(2)]
    errors = errors_by_id(body)
    assert list(errors) == [uid(1)]
    assert errors[uid(1)]["type"] == ERR + "AlreadyExists"
    assert errors[uid(1)]["status"] == 409
    # the existing entity is untouched, the new one is there
    assert key_values(client, uid(1))["temperature"] == 1
    assert key_values(client, uid(2))["temperature"] == 2


def test_create_207_for_invalid_entities_and_they_are_not_half_written(client: TestClient) -> None:
    bad_attr = {"id": uid(3), "type": "Sensor", "temperature": {"type": "Property", "value": 3},
                "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": "x"}}}
    no_type = {"id": uid(4)}
    bad_id = {"id": "not a uri", "type": "Sensor"}
    response = batch(client, "create", [sensor(1, temperature=1), bad_attr, no_type, bad_id])
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["success"] == [uid(1)]
    errors = errors_by_id(body)
    assert set(errors) == {uid(3), uid(4), "not a uri"}
    for error in errors.values():
        assert error["type"] == ERR + "BadRequestData"
        assert error["status"] == 400
    assert get(client, uid(1)).status_code == 200
    for missing in (uid(3), uid(4)):
        assert_problem(get(client, missing), 404, "ResourceNotFound")
    # nothing of the rejected entity reached the statistics either
    types = client.get(f"{BASE}/attributes").json()
    assert "location" not in types["attributeList"]


def test_create_duplicate_ids_in_one_batch(client: TestClient) -> None:
    response = batch(client, "create", [sensor(1, temperature=1), sensor(1, temperature=2)])
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["success"] == [uid(1)]
    assert errors_by_id(body)[uid(1)]["type"] == ERR + "AlreadyExists"
    assert key_values(client, uid(1))["temperature"] == 1


# ---------------------------------------------------------------- upsert


def test_upsert_201_with_created_ids_then_204(client: TestClient) -> None:
    response = batch(client, "upsert", [sensor(1, temperature=1), sensor(2, temperature=2)])
    assert response.status_code == 201, response.text
    assert response.json() == [uid(1), uid(2)]
    response = batch(client, "upsert", [sensor(1, temperature=10), sensor(2, temperature=20)])
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert key_values(client, uid(1))["temperature"] == 10
    assert key_values(client, uid(2))["temperature"] == 20


def test_upsert_mixed_answers_201_with_only_the_created_ids(client: TestClient) -> None:
    batch(client, "upsert", [sensor(1, temperature=1)])
    response = batch(client, "upsert", [sensor(1, temperature=5), sensor(2, temperature=2)])
    assert response.status_code == 201, response.text
    assert response.json() == [uid(2)]
    assert key_values(client, uid(1))["temperature"] == 5


def test_upsert_replace_replaces_the_whole_entity(client: TestClient) -> None:
    batch(client, "create", [sensor(1, temperature=1, humidity=50)])
    created = get(client, uid(1), options="sysAttrs").json()["createdAt"]
    response = batch(client, "upsert", [sensor(1, pressure=1013)], options="replace")
    assert response.status_code == 204, response.text
    assert key_values(client, uid(1)) == {"id": uid(1), "type": "Sensor", "pressure": 1013}
    assert get(client, uid(1), options="sysAttrs").json()["createdAt"] == created


def test_upsert_default_mode_is_replace(client: TestClient) -> None:
    batch(client, "create", [sensor(1, temperature=1, humidity=50)])
    assert batch(client, "upsert", [sensor(1, pressure=1013)]).status_code == 204
    assert key_values(client, uid(1)) == {"id": uid(1), "type": "Sensor", "pressure": 1013}


def test_upsert_update_merges_attributes(client: TestClient) -> None:
    batch(client, "create", [sensor(1, temperature=1, humidity=50)])
    response = batch(client, "upsert", [sensor(1, temperature=7, pressure=1013)], options="update")
    assert response.status_code == 204, response.text
    assert key_values(client, uid(1)) == {"id": uid(1), "type": "Sensor", "temperature": 7,
                                          "humidity": 50, "pressure": 1013}


def test_upsert_update_creates_missing_entities(client: TestClient) -> None:
    response = batch(client, "upsert", [sensor(9, temperature=9)], options="update")
    assert response.status_code == 201, response.text
    assert response.json() == [uid(9)]
    assert key_values(client, uid(9))["temperature"] == 9


def test_upsert_replace_and_update_together_is_400(client: TestClient) -> None:
    response = batch(client, "upsert", [sensor(1)], options="replace,update")
    assert_problem(response, 400, "BadRequestData")
    assert_problem(get(client, uid(1)), 404, "ResourceNotFound")


def test_upsert_207_on_errors_and_valid_ones_are_written(client: TestClient) -> None:
    batch(client, "create", [sensor(1, temperature=1)])
    response = batch(client, "upsert", [sensor(1, temperature=2), sensor(2, temperature=3),
                                        {"id": uid(3)}])
    assert response.status_code == 207, response.text
    body = response.json()
    assert set(body["success"]) == {uid(1), uid(2)}
    assert errors_by_id(body)[uid(3)]["type"] == ERR + "BadRequestData"
    assert key_values(client, uid(1))["temperature"] == 2
    assert key_values(client, uid(2))["temperature"] == 3
    assert_problem(get(client, uid(3)), 404, "ResourceNotFound")


def test_upsert_of_1000_entities(client: TestClient) -> None:
    entities = [sensor(n, temperature=n, humidity=n % 100) for n in range(1000)]
    response = batch(client, "upsert", entities)
    assert response.status_code == 201, response.text
    assert len(response.json()) == 1000
    assert set(response.json()) == {uid(n) for n in range(1000)}
    info = client.get(f"{BASE}/types/Sensor").json()
    assert info["entityCount"] == 1000
    assert key_values(client, uid(999))["temperature"] == 999
    # and again: every one exists now
    assert batch(client, "upsert", entities).status_code == 204
    assert client.get(f"{BASE}/types/Sensor").json()["entityCount"] == 1000


# ---------------------------------------------------------------- update


def test_update_204_and_values_change(client: TestClient) -> None:
    batch(client, "create", [sensor(1, temperature=1, humidity=50), sensor(2, temperature=2)])
    response = batch(client, "update", [sensor(1, temperature=10), sensor(2, pressure=1000)])
    assert response.status_code == 204, response.text
    assert key_values(client, uid(1)) == {"id": uid(1), "type": "Sensor", "temperature": 10,
                                          "humidity": 50}
    assert key_values(client, uid(2)) == {"id": uid(2), "type": "Sensor", "temperature": 2,
                                          "pressure": 1000}


def test_update_no_overwrite_keeps_existing_values(client: TestClient) -> None:
    batch(client, "create", [sensor(1, temperature=1)])
    response = batch(client, "update", [sensor(1, temperature=99, humidity=40)],
                     options="noOverwrite")
    assert response.status_code == 204, response.text
    assert key_values(client, uid(1)) == {"id": uid(1), "type": "Sensor", "temperature": 1,
                                          "humidity": 40}


def test_update_207_for_missing_entities(client: TestClient) -> None:
    batch(client, "create", [sensor(1, temperature=1)])
    response = batch(client, "update", [sensor(1, temperature=5), sensor(404, temperature=5)])
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["success"] == [uid(1)]
    errors = errors_by_id(body)
    assert errors[uid(404)]["type"] == ERR + "ResourceNotFound"
    assert errors[uid(404)]["status"] == 404
    assert key_values(client, uid(1))["temperature"] == 5
    assert_problem(get(client, uid(404)), 404, "ResourceNotFound")


def test_update_207_for_entities_without_id(client: TestClient) -> None:
    batch(client, "create", [sensor(1, temperature=1)])
    response = batch(client, "update", [sensor(1, temperature=2), {"type": "Sensor"}])
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["success"] == [uid(1)]
    assert len(body["errors"]) == 1
    assert all(e["error"]["type"] == ERR + "BadRequestData" for e in body["errors"])
    assert key_values(client, uid(1))["temperature"] == 2


@pytest.mark.parametrize("operation", ["create", "upsert", "update", "merge"])
def test_an_item_that_is_not_an_entity_fails_the_whole_batch(client: TestClient,
                                                             operation: str) -> None:
    """Clause 5.6.7.4 and siblings: the content is not an array of entities."""
    if operation in ("update", "merge"):
        batch(client, "create", [sensor(1, temperature=1)])
    response = batch(client, operation, [sensor(1, temperature=2), None])
    assert_problem(response, 400, "BadRequestData")
    if operation in ("create", "upsert"):
        assert_problem(get(client, uid(1)), 404, "ResourceNotFound")
    else:
        assert key_values(client, uid(1))["temperature"] == 1


def test_json_batch_refuses_only_the_entities_carrying_a_context(client: TestClient) -> None:
    """Clause 6.3.5: with application/json an @context in an entity is an error of that
    entity; the others are created (207)."""
    response = batch(client, "create", [sensor(1, temperature=1),
                                        {**sensor(2, temperature=2), "@context": CORE}])
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["success"] == [uid(1)]
    assert errors_by_id(body)[uid(2)]["type"] == ERR + "BadRequestData"
    assert_problem(get(client, uid(2)), 404, "ResourceNotFound")


# ---------------------------------------------------------------- merge


def test_merge_204_merges_and_null_deletes(client: TestClient) -> None:
    batch(client, "create", [sensor(1, temperature=1, humidity=50), sensor(2, temperature=2)])
    response = batch(client, "merge", [
        {"id": uid(1), "type": "Sensor", "temperature": {"type": "Property", "value": 11},
         "humidity": "urn:ngsi-ld:null"},
        {"id": uid(2), "pressure": {"type": "Property", "value": 999}},
    ])
    assert response.status_code == 204, response.text
    assert key_values(client, uid(1)) == {"id": uid(1), "type": "Sensor", "temperature": 11}
    assert key_values(client, uid(2)) == {"id": uid(2), "type": "Sensor", "temperature": 2,
                                          "pressure": 999}


def test_merge_207_for_missing_entities(client: TestClient) -> None:
    batch(client, "create", [sensor(1, temperature=1)])
    response = batch(client, "merge", [sensor(1, temperature=3), sensor(404, temperature=3)])
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["success"] == [uid(1)]
    assert errors_by_id(body)[uid(404)]["type"] == ERR + "ResourceNotFound"
    assert key_values(client, uid(1))["temperature"] == 3
    assert_problem(get(client, uid(404)), 404, "ResourceNotFound")


# ---------------------------------------------------------------- delete


def test_delete_204(client: TestClient) -> None:
    batch(client, "create", [sensor(1), sensor(2), sensor(3)])
    response = batch(client, "delete", [uid(1), uid(2)])
    assert response.status_code == 204, response.text
    assert_problem(get(client, uid(1)), 404, "ResourceNotFound")
    assert_problem(get(client, uid(2)), 404, "ResourceNotFound")
    assert get(client, uid(3)).status_code == 200
    assert client.get(f"{BASE}/types/Sensor").json()["entityCount"] == 1


def test_delete_207_for_unknown_ids_and_known_ones_are_deleted(client: TestClient) -> None:
    batch(client, "create", [sensor(1), sensor(2)])
    response = batch(client, "delete", [uid(1), uid(404), "not a uri"])
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["success"] == [uid(1)]
    errors = errors_by_id(body)
    assert errors[uid(404)]["type"] == ERR + "ResourceNotFound"
    assert errors["not a uri"]["type"] == ERR + "BadRequestData"
    assert_problem(get(client, uid(1)), 404, "ResourceNotFound")
    assert get(client, uid(2)).status_code == 200


def test_delete_twice_in_one_batch(client: TestClient) -> None:
    batch(client, "create", [sensor(1)])
    response = batch(client, "delete", [uid(1), uid(1)])
    assert response.status_code == 207, response.text
    body = response.json()
    assert body["success"] == [uid(1)]
    assert errors_by_id(body)[uid(1)]["type"] == ERR + "ResourceNotFound"
    assert_problem(get(client, uid(1)), 404, "ResourceNotFound")


# ---------------------------------------------------------------- bodies


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("body", [{"id": uid(1), "type": "Sensor"}, "urn:ngsi-ld:Sensor:1", 42])
def test_non_array_body_is_400(client: TestClient, op: str, body: Any) -> None:
    assert_problem(batch(client, op, body), 400, "BadRequestData")
    assert_problem(get(client, uid(1)), 404, "ResourceNotFound")


@pytest.mark.parametrize("op", OPS)
def test_empty_array_is_400(client: TestClient, op: str) -> None:
    assert_problem(batch(client, op, []), 400, "BadRequestData")


@pytest.mark.parametrize("op", OPS)
def test_malformed_json_is_400_invalid_request(client: TestClient, op: str) -> None:
    response = client.post(f"{BASE}/entityOperations/{op}", content=b"[{",
                           headers={"Content-Type": "application/json"})
    assert_problem(response, 400, "InvalidRequest")


def test_wrong_content_type_is_415(client: TestClient) -> None:
    response = client.post(f"{BASE}/entityOperations/create", content=b"[]",
                           headers={"Content-Type": "text/plain"})
    assert response.status_code == 415, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_ld_json_batch_needs_the_same_context_everywhere(client: TestClient) -> None:
    core = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
    other = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.7.jsonld"
    body = [{**sensor(1), "@context": core}, {**sensor(2), "@context": other}]
    response = client.post(f"{BASE}/entityOperations/create", json=body,
                           headers={"Content-Type": "application/ld+json"})
    assert_problem(response, 400, "BadRequestData")
    body = [{**sensor(1), "@context": core}, {**sensor(2), "@context": core}]
    response = client.post(f"{BASE}/entityOperations/create", json=body,
                           headers={"Content-Type": "application/ld+json"})
    assert response.status_code == 201, response.text


def test_batch_on_a_tenant_creates_it_and_stays_there(client: TestClient) -> None:
    headers = {"NGSILD-Tenant": "t1"}
    response = client.post(f"{BASE}/entityOperations/create", json=[sensor(1)], headers=headers)
    assert response.status_code == 201, response.text
    assert client.get(f"{BASE}/entities/{uid(1)}", headers=headers).status_code == 200
    assert_problem(get(client, uid(1)), 404, "ResourceNotFound")


def test_update_with_the_entity_type_keeps_the_entity_intact(client: TestClient) -> None:
    batch(client, "create", [sensor(1, temperature=1)])
    response = batch(client, "update", [sensor(1, temperature=3)])  # carries "type": "Sensor"
    assert response.status_code == 204, response.text
    assert get(client, uid(1)).json() == {
        "id": uid(1), "type": "Sensor", "temperature": {"type": "Property", "value": 3}}
    assert client.get(f"{BASE}/attributes").json()["attributeList"] == ["temperature"]


def test_batch_delete_of_ids_needs_no_context_in_ld_json(client: TestClient) -> None:
    """A batch delete body is an array of ids: it cannot carry an @context, whatever the
    Content-Type (FiLiP sends application/ld+json)."""
    ids = [f"urn:ngsi-ld:Lamp:ld{n}" for n in range(2)]
    for entity_id in ids:
        assert client.post(f"{BASE}/entities", json={"id": entity_id, "type": "Lamp"}
                           ).status_code == 201
    response = client.post(f"{BASE}/entityOperations/delete", content=json_text(ids),
                           headers={"Content-Type": "application/ld+json"})
    assert response.status_code == 204, response.text
    assert client.get(f"{BASE}/entities/{ids[0]}").status_code == 404
    # objects of an ld+json batch still need their @context
    response = client.post(f"{BASE}/entityOperations/create",
                           content=json_text([{"id": "urn:ngsi-ld:Lamp:x", "type": "Lamp"}]),
                           headers={"Content-Type": "application/ld+json"})
    assert response.status_code == 400


def json_text(value: Any) -> str:
    import json

    return json.dumps(value)


def test_update_of_a_missing_entity_with_an_invalid_fragment_is_bad_request_data(
        client: TestClient) -> None:
    """An invalid fragment is BadRequestData whether its entity exists or not."""
    response = batch(client, "update", [{"id": uid(404), "type": "Sensor",
                                         "temperature": {"type": "Property", "value": None}}])
    assert response.status_code == 207, response.text
    assert errors_by_id(response.json())[uid(404)]["type"] == ERR + "BadRequestData"
    response = batch(client, "update", [sensor(404, temperature=1)])
    assert errors_by_id(response.json())[uid(404)]["type"] == ERR + "ResourceNotFound"
