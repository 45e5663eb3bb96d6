"""HTTP tests of the attribute endpoints (clauses 6.6, 6.7): append, update, partial update,
replace, delete, multi-attributes (datasetId) and system attributes."""

from __future__ import annotations

import time
from typing import Any

import pytest
from starlette.testclient import TestClient

BASE = "/ngsi-ld/v1"
ERR = "https://uri.etsi.org/ngsi-ld/errors/"
EID = "urn:ngsi-ld:Sensor:s1"
ATTRS = f"{BASE}/entities/{EID}/attrs"
DS_A = "urn:ngsi-ld:Dataset:a"
DS_B = "urn:ngsi-ld:Dataset:b"


@pytest.fixture
def sensor(client: TestClient) -> dict[str, Any]:
    entity = {
        "id": EID,
        "type": "Sensor",
        "temperature": {"type": "Property", "value": 20.5, "unitCode": "CEL",
                        "observedAt": "2024-05-01T10:00:00Z",
                        "accuracy": {"type": "Property", "value": 0.2}},
        "status": {"type": "Property", "value": "ok"},
        "controlledBy": {"type": "Relationship", "object": "urn:ngsi-ld:Device:d1"},
    }
    response = client.post(f"{BASE}/entities", json=entity)
    assert response.status_code == 201, response.text
    return entity


def get(client: TestClient, **params: str) -> dict[str, Any]:
    response = client.get(f"{BASE}/entities/{EID}", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def assert_problem(response: Any, status: int, type_name: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == ERR + type_name
    assert body["detail"]
    return body  # type: ignore[no-any-return]


def tick() -> None:
    """Let the clock move on, so that modifiedAt visibly advances."""
    time.sleep(0.002)


# ------------------------------------------------------------------ append (POST /attrs)


def test_append_adds_and_overwrites(client: TestClient, sensor: dict[str, Any]) -> None:
    response = client.post(ATTRS, json={
        "humidity": {"type": "Property", "value": 55},
        "status": {"type": "Property", "value": "degraded"}})
    assert response.status_code == 204, response.text
    body = get(client)
    assert body["humidity"] == {"type": "Property", "value": 55}
    assert body["status"] == {"type": "Property", "value": "degraded"}
    assert body["temperature"]["value"] == 20.5


def test_append_no_overwrite_is_207(client: TestClient, sensor: dict[str, Any]) -> None:
    response = client.post(ATTRS, params={"options": "noOverwrite"}, json={
        "humidity": {"type": "Property", "value": 55},
        "status": {"type": "Property", "value": "degraded"}})
    assert response.status_code == 207, response.text
    result = response.json()
    assert result["updated"] == ["humidity"]
    assert [n["attributeName"] for n in result["notUpdated"]] == ["status"]
    assert result["notUpdated"][0]["reason"]
    body = get(client)
    assert body["status"]["value"] == "ok"
    assert body["humidity"]["value"] == 55


def test_append_no_overwrite_all_new_is_204(client: TestClient, sensor: dict[str, Any]) -> None:
    response = client.post(ATTRS, params={"options": "noOverwrite"},
                           json={"humidity": {"type": "Property", "value": 55}})
    assert response.status_code == 204
    assert get(client)["humidity"]["value"] == 55


def test_append_to_unknown_entity_is_404(client: TestClient, sensor: dict[str, Any]) -> None:
    response = client.post(f"{BASE}/entities/urn:ngsi-ld:Sensor:none/attrs",
                           json={"humidity": 1})
    assert_problem(response, 404, "ResourceNotFound")


def test_append_body_not_object_is_400(client: TestClient, sensor: dict[str, Any]) -> None:
    assert_problem(client.post(ATTRS, json=["humidity"]), 400, "BadRequestData")


def test_append_with_other_id_is_400(client: TestClient, sensor: dict[str, Any]) -> None:
    response = client.post(ATTRS, json={"id": "urn:ngsi-ld:Sensor:s2", "humidity": 1})
    assert_problem(response, 400, "BadRequestData")
    assert "humidity" not in get(client)


def test_append_unknown_option_is_400(client: TestClient, sensor: dict[str, Any]) -> None:
    response = client.post(ATTRS, params={"options": "overwriteMaybe"}, json={"humidity": 1})
    assert_problem(response, 400, "InvalidRequest")


# ------------------------------------------------------------------ update (PATCH /attrs)


def test_update_existing_attributes_is_204(client: TestClient, sensor: dict[str, Any]) -> None:
    response = client.patch(ATTRS, json={"status": {"type": "Property", "value": "down"}})
    assert response.status_code == 204, response.text
    assert get(client)["status"] == {"type": "Property", "value": "down"}


def test_update_non_existing_attribute_is_207(client: TestClient, sensor: dict[str, Any]) -> None:
    response = client.patch(ATTRS, json={
        "status": {"type": "Property", "value": "down"},
        "humidity": {"type": "Property", "value": 55}})
    assert response.status_code == 207, response.text
    result = response.json()
    assert result["updated"] == ["status"]
    assert [n["attributeName"] for n in result["notUpdated"]] == ["humidity"]
    body = get(client)
    assert "humidity" not in body
    assert body["status"]["value"] == "down"


def test_update_unknown_entity_is_404(client: TestClient, sensor: dict[str, Any]) -> None:
    response = client.patch(f"{BASE}/entities/urn:ngsi-ld:Sensor:none/attrs",
                            json={"status": "x"})
    assert_problem(response, 404, "ResourceNotFound")


# ------------------------------------------------------------------ partial update (PATCH /attrs/{a})


def test_partial_update_changes_only_value(client: TestClient, sensor: dict[str, Any]) -> None:
    response = client.patch(f"{ATTRS}/temperature", json={"value": 22.0})
    assert response.status_code == 204, response.text
    assert get(client)["temperature"] == {
        "type": "Property", "value": 22.0, "unitCode": "CEL",
        "observedAt": "2024-05-01T10:00:00Z",
        "accuracy": {"type": "Property", "value": 0.2}}


def test_partial_update_with_type_and_observed_at(client: TestClient,
                                                  sensor: dict[str, Any]) -> None:
    response = client.patch(f"{ATTRS}/temperature", json={
        "type": "Property", "value": 23.0, "observedAt": "2024-05-01T11:00:00Z"})
    assert response.status_code == 204, response.text
    temperature = get(client)["temperature"]
    assert temperature["value"] == 23.0
    assert temperature["observedAt"] == "2024-05-01T11:00:00Z"
    assert temperature["unitCode"] == "CEL"
    assert temperature["accuracy"] == {"type": "Property", "value": 0.2}


def test_partial_update_of_relationship(client: TestClient, sensor: dict[str, Any]) -> None:
    response = client.patch(f"{ATTRS}/controlledBy", json={"object": "urn:ngsi-ld:Device:d2"})
    assert response.status_code == 204, response.text
    assert get(client)["controlledBy"] == {"type": "Relationship",
                                           "object": "urn:ngsi-ld:Device:d2"}


def test_partial_update_unknown_attribute_is_404(client: TestClient,
                                                 sensor: dict[str, Any]) -> None:
    response = client.patch(f"{ATTRS}/humidity", json={"value": 1})
    assert_problem(response, 404, "ResourceNotFound")
    assert "humidity" not in get(client)


def test_partial_update_unknown_entity_is_404(client: TestClient, sensor: dict[str, Any]) -> None:
    response = client.patch(f"{BASE}/entities/urn:ngsi-ld:Sensor:x/attrs/status",
                            json={"value": 1})
    assert_problem(response, 404, "ResourceNotFound")


def test_partial_update_null_value_is_400(client: TestClient, sensor: dict[str, Any]) -> None:
    response = client.patch(f"{ATTRS}/status", json={"value": None})
    assert_problem(response, 400, "BadRequestData")
    assert get(client)["status"]["value"] == "ok"


def test_partial_update_bad_attribute_name_is_400(client: TestClient,
                                                  sensor: dict[str, Any]) -> None:
    response = client.patch(f"{ATTRS}/bad(name)", json={"value": 1})
    assert_problem(response, 400, "BadRequestData")


# ------------------------------------------------------------------ replace (PUT /attrs/{a})


def test_replace_attribute_drops_old_members(client: TestClient, sensor: dict[str, Any]) -> None:
    response = client.put(f"{ATTRS}/temperature", json={"type": "Property", "value": 19.0})
    assert response.status_code == 204, response.text
    assert get(client)["temperature"] == {"type": "Property", "value": 19.0}


def test_replace_attribute_keeps_created_at(client: TestClient, sensor: dict[str, Any]) -> None:
    before = get(client, options="sysAttrs")["temperature"]
    tick()
    client.put(f"{ATTRS}/temperature", json={"type": "Property", "value": 19.0})
    after = get(client, options="sysAttrs")["temperature"]
    assert after["createdAt"] == before["createdAt"]
    assert after["modifiedAt"] > before["modifiedAt"]


def test_replace_unknown_attribute_is_404(client: TestClient, sensor: dict[str, Any]) -> None:
    response = client.put(f"{ATTRS}/humidity", json={"type": "Property", "value": 1})
    assert_problem(response, 404, "ResourceNotFound")


# ------------------------------------------------------------------ delete (DELETE /attrs/{a})


def test_delete_attribute(client: TestClient, sensor: dict[str, Any]) -> None:
    response = client.delete(f"{ATTRS}/status")
    assert response.status_code == 204
    body = get(client)
    assert "status" not in body
    assert set(body) == {"id", "type", "temperature", "controlledBy"}
    assert_problem(client.delete(f"{ATTRS}/status"), 404, "ResourceNotFound")


def test_delete_attribute_of_unknown_entity_is_404(client: TestClient,
                                                   sensor: dict[str, Any]) -> None:
    response = client.delete(f"{BASE}/entities/urn:ngsi-ld:Sensor:x/attrs/status")
    assert_problem(response, 404, "ResourceNotFound")


# ------------------------------------------------------------------ multi-attributes


@pytest.fixture
def multi(client: TestClient) -> None:
    entity = {
        "id": EID, "type": "Sensor",
        "speed": [
            {"type": "Property", "value": 50, "datasetId": DS_A},
            {"type": "Property", "value": 48},
            {"type": "Property", "value": 52, "datasetId": DS_B,
             "source": {"type": "Property", "value": "radar"}},
        ],
    }
    response = client.post(f"{BASE}/entities", json=entity)
    assert response.status_code == 201, response.text


def by_dataset(instances: list[dict[str, Any]]) -> dict[str | None, Any]:
    return {i.get("datasetId"): i for i in instances}


def test_multi_attribute_retrieved_as_list(client: TestClient, multi: None) -> None:
    speed = get(client)["speed"]
    assert isinstance(speed, list)
    assert len(speed) == 3
    assert by_dataset(speed) == {
        None: {"type": "Property", "value": 48},
        DS_A: {"type": "Property", "value": 50, "datasetId": DS_A},
        DS_B: {"type": "Property", "value": 52, "datasetId": DS_B,
               "source": {"type": "Property", "value": "radar"}},
    }


def test_multi_attribute_key_values_is_a_dataset_map(client: TestClient,
                                                     multi: None) -> None:
    """Clause 4.5.4: the simplified multi-attribute maps each datasetId to its value."""
    assert get(client, options="keyValues")["speed"] == {
        "dataset": {"@none": 48, DS_A: 50, DS_B: 52}}


def test_multi_attribute_duplicate_dataset_id_is_400(client: TestClient) -> None:
    response = client.post(f"{BASE}/entities", json={
        "id": EID, "type": "Sensor",
        "speed": [{"type": "Property", "value": 1, "datasetId": DS_A},
                  {"type": "Property", "value": 2, "datasetId": DS_A}]})
    assert_problem(response, 400, "BadRequestData")


def test_delete_one_instance_by_dataset_id(client: TestClient, multi: None) -> None:
    response = client.delete(f"{ATTRS}/speed", params={"datasetId": DS_A})
    assert response.status_code == 204, response.text
    speed = by_dataset(get(client)["speed"])
    assert set(speed) == {None, DS_B}


def test_delete_default_instance_only(client: TestClient, multi: None) -> None:
    assert client.delete(f"{ATTRS}/speed").status_code == 204
    assert set(by_dataset(get(client)["speed"])) == {DS_A, DS_B}


def test_delete_unknown_dataset_id_is_404(client: TestClient, multi: None) -> None:
    response = client.delete(f"{ATTRS}/speed", params={"datasetId": "urn:ngsi-ld:Dataset:z"})
    assert_problem(response, 404, "ResourceNotFound")
    assert len(get(client)["speed"]) == 3


def test_delete_all_instances(client: TestClient, multi: None) -> None:
    response = client.delete(f"{ATTRS}/speed", params={"deleteAll": "true"})
    assert response.status_code == 204
    assert "speed" not in get(client)


def test_delete_with_bad_delete_all_is_400(client: TestClient, multi: None) -> None:
    response = client.delete(f"{ATTRS}/speed", params={"deleteAll": "yes"})
    assert_problem(response, 400, "BadRequestData")
    assert len(get(client)["speed"]) == 3


def test_partial_update_targets_dataset_instance(client: TestClient, multi: None) -> None:
    response = client.patch(f"{ATTRS}/speed", json={"value": 60, "datasetId": DS_B})
    assert response.status_code == 204, response.text
    speed = by_dataset(get(client)["speed"])
    assert speed[DS_B] == {"type": "Property", "value": 60, "datasetId": DS_B,
                           "source": {"type": "Property", "value": "radar"}}
    assert speed[None]["value"] == 48
    assert speed[DS_A]["value"] == 50


def test_partial_update_unknown_dataset_is_404(client: TestClient, multi: None) -> None:
    response = client.patch(f"{ATTRS}/speed",
                            json={"value": 60, "datasetId": "urn:ngsi-ld:Dataset:z"})
    assert_problem(response, 404, "ResourceNotFound")


def test_append_new_dataset_instance(client: TestClient, multi: None) -> None:
    ds_c = "urn:ngsi-ld:Dataset:c"
    response = client.post(ATTRS, json={"speed": {"type": "Property", "value": 70,
                                                  "datasetId": ds_c}})
    assert response.status_code == 204, response.text
    speed = by_dataset(get(client)["speed"])
    assert set(speed) == {None, DS_A, DS_B, ds_c}
    assert speed[ds_c]["value"] == 70
    assert speed[DS_A]["value"] == 50


def test_merge_updates_one_dataset_instance(client: TestClient, multi: None) -> None:
    response = client.patch(f"{BASE}/entities/{EID}",
                            json={"speed": {"value": 51, "datasetId": DS_A}})
    assert response.status_code == 204, response.text
    speed = by_dataset(get(client)["speed"])
    assert speed[DS_A]["value"] == 51
    assert speed[None]["value"] == 48
    assert speed[DS_B]["value"] == 52


# ------------------------------------------------------------------ system attributes


def test_sys_attrs_on_create(client: TestClient, sensor: dict[str, Any]) -> None:
    body = get(client, options="sysAttrs")
    assert body["createdAt"] == body["modifiedAt"]
    assert body["createdAt"].endswith("Z")
    for name in ("temperature", "status", "controlledBy"):
        assert body[name]["createdAt"] == body["createdAt"]
        assert body[name]["modifiedAt"] == body["createdAt"]
    assert body["temperature"]["accuracy"]["createdAt"] == body["createdAt"]
    assert "createdAt" not in get(client)


def test_sys_attrs_advance_on_update(client: TestClient, sensor: dict[str, Any]) -> None:
    before = get(client, options="sysAttrs")
    tick()
    assert client.patch(f"{ATTRS}/status", json={"value": "down"}).status_code == 204
    middle = get(client, options="sysAttrs")
    assert middle["createdAt"] == before["createdAt"]
    assert middle["modifiedAt"] > before["modifiedAt"]
    assert middle["status"]["createdAt"] == before["status"]["createdAt"]
    assert middle["status"]["modifiedAt"] > before["status"]["modifiedAt"]
    # an attribute not touched keeps its modifiedAt
    assert middle["temperature"]["modifiedAt"] == before["temperature"]["modifiedAt"]
    tick()
    assert client.patch(ATTRS, json={"temperature": {"type": "Property", "value": 1}}
                        ).status_code == 204
    after = get(client, options="sysAttrs")
    assert after["createdAt"] == before["createdAt"]
    assert after["modifiedAt"] > middle["modifiedAt"]
    assert after["temperature"]["createdAt"] == before["temperature"]["createdAt"]
    assert after["temperature"]["modifiedAt"] > before["temperature"]["modifiedAt"]
    tick()
    assert client.post(ATTRS, json={"humidity": 3}).status_code == 204
    last = get(client, options="sysAttrs")
    assert last["modifiedAt"] > after["modifiedAt"]
    assert last["humidity"]["createdAt"] == last["modifiedAt"]
    assert last["createdAt"] == before["createdAt"]


def test_sys_attrs_advance_on_delete_attribute(client: TestClient,
                                               sensor: dict[str, Any]) -> None:
    before = get(client, options="sysAttrs")
    tick()
    client.delete(f"{ATTRS}/status")
    after = get(client, options="sysAttrs")
    assert after["modifiedAt"] > before["modifiedAt"]
    assert after["createdAt"] == before["createdAt"]


def test_sys_attrs_sent_by_client_are_ignored(client: TestClient) -> None:
    entity = {"id": EID, "type": "Sensor", "createdAt": "1999-01-01T00:00:00Z",
              "status": {"type": "Property", "value": "x",
                         "createdAt": "1999-01-01T00:00:00Z"}}
    assert client.post(f"{BASE}/entities", json=entity).status_code == 201
    body = get(client, options="sysAttrs")
    assert body["createdAt"] > "2000"
    assert body["status"]["createdAt"] > "2000"


# ---------------------------------------------------------------- scope, type, selectors


def test_append_replaces_or_adds_the_scope(client: TestClient, sensor: dict[str, Any]) -> None:
    """Clause 5.6.3.4: the scope is replaced, or with noOverwrite added to."""
    assert client.post(ATTRS, json={"scope": "/Nimes"}).status_code == 204
    assert get(client)["scope"] == "/Nimes"
    response = client.post(ATTRS, json={"scope": "/Gard"}, params={"options": "noOverwrite"})
    assert response.status_code == 204
    assert get(client)["scope"] == ["/Nimes", "/Gard"]
    assert client.delete(f"{ATTRS}/scope").status_code == 204
    assert "scope" not in get(client)
    assert_problem(client.delete(f"{ATTRS}/scope"), 404, "ResourceNotFound")
    assert_problem(client.patch(f"{ATTRS}/scope", json={"value": "/X"}), 400, "BadRequestData")


def test_update_adds_types_and_new_dataset_instances(client: TestClient,
                                                     sensor: dict[str, Any]) -> None:
    """Clauses 5.6.2.4 and 5.5.8: types are added; a new datasetId of an existing attribute
    is a new instance; a datasetId is not deleted by the NGSI-LD Null."""
    response = client.patch(ATTRS, json={"type": "Probe", "status": {
        "type": "Property", "value": "x", "datasetId": DS_A}})
    assert response.status_code == 204, response.text
    body = get(client)
    assert body["type"] == ["Sensor", "Probe"]
    assert len(body["status"]) == 2
    assert_problem(client.patch(f"{ATTRS}/status", json={"datasetId": "urn:ngsi-ld:null"}),
                   400, "BadRequestData")


def test_no_overwrite_appends_a_new_dataset_instance(client: TestClient,
                                                     sensor: dict[str, Any]) -> None:
    response = client.post(ATTRS, params={"options": "noOverwrite"}, json={
        "status": [{"type": "Property", "value": "no"},
                   {"type": "Property", "value": "b", "datasetId": DS_B}]})
    assert response.status_code == 207
    assert response.json()["updated"] == ["status"]
    assert [i["value"] for i in get(client)["status"]] == ["ok", "b"]


def test_type_selector_gates_entity_and_attribute_operations(client: TestClient,
                                                             sensor: dict[str, Any]) -> None:
    """Clause 4.17: a ``type`` not matching the entity: not found, nothing changes."""
    entity = f"{BASE}/entities/{EID}"
    assert_problem(client.patch(f"{ATTRS}/status", json={"value": "y"}, params={"type": "Lamp"}),
                   404, "ResourceNotFound")
    assert_problem(client.delete(f"{ATTRS}/status", params={"type": "Lamp"}),
                   404, "ResourceNotFound")
    assert_problem(client.delete(entity, params={"type": "Lamp"}), 404, "ResourceNotFound")
    assert get(client)["status"]["value"] == "ok"
    assert client.patch(f"{ATTRS}/status", json={"value": "y"},
                        params={"type": "Sensor"}).status_code == 204
    assert client.delete(entity, params={"type": "Sensor"}).status_code == 204


def test_partial_update_keeps_the_target_type_and_value(client: TestClient,
                                                        sensor: dict[str, Any]) -> None:
    """Clause 5.6.4: a fragment of sub-attributes only keeps the value; another attribute
    type is refused."""
    response = client.patch(f"{ATTRS}/controlledBy", json={
        "providedBy": {"type": "Relationship", "object": "urn:ngsi-ld:Person:p"}})
    assert response.status_code == 204, response.text
    owner = get(client)["controlledBy"]
    assert owner["object"] == "urn:ngsi-ld:Device:d1"
    assert owner["providedBy"]["object"] == "urn:ngsi-ld:Person:p"
    assert_problem(client.patch(f"{ATTRS}/temperature", json={
        "type": "Relationship", "object": "urn:a:b"}), 400, "BadRequestData")
    assert_problem(client.put(f"{ATTRS}/@invalid", json={"type": "Property", "value": 1}),
                   400, "BadRequestData")
