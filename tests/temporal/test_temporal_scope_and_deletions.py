"""The Scope's temporal evolution (clause 4.5.6), the deletedAt time axis (clause 4.11),
deletion markers refused as members (clause 5.2.1) and linked filters refused (5.7.4.4)."""

from __future__ import annotations

from starlette.testclient import TestClient

API = "/ngsi-ld/v1"
T = f"{API}/temporal/entities"
E = "urn:ngsi-ld:Vehicle:S1"


def test_scope_changes_from_the_core_api_are_property_instances(client: TestClient) -> None:
    body = {"id": E, "type": "Vehicle", "scope": "/Old",
            "speed": {"type": "Property", "value": 1, "observedAt": "2026-08-10T00:00:00Z"}}
    assert client.post(f"{API}/entities", json=body).status_code == 201
    r = client.patch(f"{API}/entities/{E}", json={"type": "Vehicle", "scope": "/New"})
    assert r.status_code == 204
    r = client.patch(f"{API}/entities/{E}/attrs", json={"speed": {"type": "Property", "value": 2}})
    assert r.status_code == 204  # no scope change: no new scope instance
    scope = client.get(f"{T}/{E}", params={"options": "sysAttrs"}).json()["scope"]
    assert [i["value"] for i in scope] == ["/Old", "/New"]
    for instance in scope:
        assert instance["type"] == "Property"
        assert instance["observedAt"] == instance["modifiedAt"]
        assert set(instance) <= {"type", "value", "instanceId", "createdAt", "modifiedAt",
                                 "observedAt"}
    r = client.get(f"{T}/{E}", params={"options": "temporalValues", "attrs": "scope"})
    assert [v[0] for v in r.json()["scope"]["values"]] == ["/Old", "/New"]
    assert client.delete(f"{API}/entities/{E}").status_code == 204
    scope = client.get(f"{T}/{E}", params={"timeproperty": "deletedAt"}).json()["scope"]
    assert scope[0]["value"] == "urn:ngsi-ld:null" and "deletedAt" in scope[0]


def test_a_temporal_representation_records_its_scope(client: TestClient) -> None:
    r = client.post(T, json={"id": E, "type": "Vehicle", "scope": ["/a/b", "/c"],
                             "speed": [{"type": "Property", "value": 1,
                                        "observedAt": "2020-01-01T00:00:00Z"}]})
    assert r.status_code == 201
    r = client.post(f"{T}/{E}/attrs", json={"scope": [
        {"type": "Property", "value": "/d", "observedAt": "2099-01-02T00:00:00Z"}]})
    assert r.status_code == 204
    scope = client.get(f"{T}/{E}").json()["scope"]
    assert [i["value"] for i in scope] == [["/a/b", "/c"], "/d"]
    r = client.post(f"{T}/{E}/attrs", json={"scope": "no-slash"})
    assert r.status_code == 400


def test_the_deleted_at_axis_holds_only_deletions(client: TestClient) -> None:
    body = {"id": E, "type": "Vehicle",
            "speed": {"type": "Property", "value": 1},
            "fuel": {"type": "Property", "value": 9}}
    assert client.post(f"{API}/entities", json=body).status_code == 201
    assert client.delete(f"{API}/entities/{E}/attrs/fuel").status_code == 204
    r = client.get(f"{T}/{E}", params={"timeproperty": "deletedAt"})
    assert r.status_code == 200, r.text
    data = r.json()
    assert "speed" not in data
    assert [i["value"] for i in data["fuel"]] == ["urn:ngsi-ld:null"]
    r = client.get(f"{T}/{E}", params={"timeproperty": "deletedAt",
                                       "options": "temporalValues"})
    values = r.json()["fuel"]["values"]
    assert values[0][0] == "urn:ngsi-ld:null" and values[0][1] == data["fuel"][0]["deletedAt"]
    r = client.get(f"{T}/{E}", params={"timeproperty": "deletedAt", "timerel": "before",
                                       "timeAt": "2000-01-01T00:00:00Z"})
    assert "fuel" not in r.json()
    r = client.get(T, params={"type": "Vehicle", "timeproperty": "deletedAt"})
    assert [e["id"] for e in r.json()] == [E]


def test_a_deletion_marker_is_no_member_of_a_temporal_representation(
        client: TestClient) -> None:
    r = client.post(T, json={"id": E, "type": "Vehicle", "expiresAt": "urn:ngsi-ld:null",
                             "speed": [{"type": "Property", "value": 1,
                                        "observedAt": "2026-01-01T00:00:00Z"}]})
    assert r.status_code == 400
    assert client.get(f"{T}/{E}").status_code == 404
    # a deleted value inside an instance stays legal
    r = client.post(T, json={"id": E, "type": "Vehicle", "speed": [
        {"type": "Property", "value": "urn:ngsi-ld:null", "observedAt": "2026-01-02T00:00:00Z"}]})
    assert r.status_code == 201


def test_a_linked_filter_is_bad_request_data(client: TestClient) -> None:
    for q in ('owner{name}=="x"', 'owner{name}'):
        r = client.get(T, params={"type": "Building", "q": q})
        assert r.status_code == 400, r.text
    r = client.get(T, params={"type": "Building", "q": 'name=="{x}"'})
    assert r.status_code == 200


def test_core_member_names_are_no_temporal_attributes(client: TestClient) -> None:
    """Clause 4.5.1: a Core Context term of a non-reified Property is no attribute name."""
    for name in ("datasetId", "instanceId", "observedAt"):
        r = client.post(T, json={"id": E, "type": "Vehicle", name: [
            {"type": "Property", "value": 1, "observedAt": "2026-01-01T00:00:00Z"}]})
        assert r.status_code == 400, (name, r.text)
    assert client.get(f"{T}/{E}").status_code == 404


def test_a_scope_deletion_instance_is_accepted(client: TestClient) -> None:
    r = client.post(T, json={"id": E, "type": "Vehicle", "scope": [
        {"type": "Property", "value": "/a", "observedAt": "2026-01-01T00:00:00Z"},
        {"type": "Property", "value": "urn:ngsi-ld:null", "observedAt": "2026-01-02T00:00:00Z"}]})
    assert r.status_code == 201, r.text
    assert [i["value"] for i in client.get(f"{T}/{E}").json()["scope"]] == [
        "/a", "urn:ngsi-ld:null"]
