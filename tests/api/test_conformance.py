"""Behaviours an NGSI-LD conformance suite checks (ETSI test suite families cited)."""

from __future__ import annotations

import urllib.parse

from starlette.testclient import TestClient

BASE = "/ngsi-ld/v1"
EID = "urn:ngsi-ld:Building:1"
NULL = "urn:ngsi-ld:null"


def create(client: TestClient, **attrs: object) -> None:
    body = {"id": EID, "type": "Building", **attrs}
    assert client.post(f"{BASE}/entities", json=body).status_code == 201


def entity(client: TestClient, **params: str) -> dict[str, object]:
    response = client.get(f"{BASE}/entities/{EID}", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_null_deletes_through_update_attributes(client: TestClient) -> None:  # 011_07
    create(client, a={"type": "Property", "value": 1},
           r={"type": "Relationship", "object": "urn:x:1"},
           name={"type": "LanguageProperty", "languageMap": {"fr": "x"}}, keep=2)
    response = client.patch(f"{BASE}/entities/{EID}/attrs", json={
        "a": {"type": "Property", "value": NULL}, "r": {"type": "Relationship", "object": NULL},
        "name": {"type": "LanguageProperty", "languageMap": NULL}})
    assert response.status_code == 204, response.text
    assert set(entity(client)) == {"id", "type", "keep"}


def test_null_deletes_through_partial_update_and_merge(client: TestClient) -> None:
    create(client, a={"type": "Property", "value": 1}, b=[
        {"type": "Property", "value": 1}, {"type": "Property", "value": 2, "datasetId": "urn:d:2"}])
    assert client.patch(f"{BASE}/entities/{EID}/attrs/a", json={"value": NULL}).status_code == 204
    assert "a" not in entity(client)
    merge = {"b": [{"type": "Property", "value": NULL, "datasetId": "urn:d:2"}]}
    assert client.patch(f"{BASE}/entities/{EID}", json=merge).status_code == 204
    assert entity(client)["b"] == {"type": "Property", "value": 1}


def test_geojson_responses_carry_the_context(client: TestClient) -> None:  # 018_05
    create(client, location={"type": "GeoProperty",
                             "value": {"type": "Point", "coordinates": [4.36, 43.84]}})
    feature = client.get(f"{BASE}/entities/{EID}", headers={"Accept": "application/geo+json"})
    assert feature.headers["content-type"].startswith("application/geo+json")
    assert feature.json()["type"] == "Feature" and "@context" in feature.json()
    collection = client.get(f"{BASE}/entities?type=Building&format=geojson").json()
    assert collection["type"] == "FeatureCollection" and "@context" in collection
    assert "@context" not in collection["features"][0]


def test_contexts_are_addressable_by_url(client: TestClient) -> None:  # 6.30
    core = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
    response = client.get(f"{BASE}/jsonldContexts/{urllib.parse.quote(core, safe='')}")
    assert response.status_code == 200 and "@context" in response.json()
    details = client.get(f"{BASE}/jsonldContexts?details=true").json()
    allowed = {"URL", "localId", "kind", "createdAt", "lastUsage", "numberOfHits", "extraInfo"}
    assert all(set(d) <= allowed and "createdAt" in d for d in details)  # clause 5.13.3


def test_upsert_update_moves_modified_at(client: TestClient) -> None:
    create(client, a=1)
    before = entity(client, options="sysAttrs")["modifiedAt"]
    response = client.post(f"{BASE}/entityOperations/upsert?options=update",
                           json=[{"id": EID, "type": "Building", "b": 2}])
    assert response.status_code == 204, response.text
    after = entity(client, options="sysAttrs")
    assert after["modifiedAt"] > before and after["a"]["value"] == 1 and after["b"]["value"] == 2


def test_batch_error_without_id(client: TestClient) -> None:
    response = client.post(f"{BASE}/entityOperations/upsert", json=[{"type": "Building"}])
    assert response.status_code == 207
    assert response.json()["errors"][0]["entityId"] == ""


def test_dataset_id_selects_instances(client: TestClient) -> None:  # 019_12
    create(client, name=[{"type": "Property", "value": "Arènes"},
                         {"type": "Property", "value": "Arena", "datasetId": "urn:d:en"}])
    only = client.get(f"{BASE}/entities?type=Building&datasetId=urn:d:en").json()[0]
    assert only["name"] == {"type": "Property", "value": "Arena", "datasetId": "urn:d:en"}
    default = entity(client, datasetId="@none")
    assert default["name"] == {"type": "Property", "value": "Arènes"}


def test_key_values_keep_ambiguous_members(client: TestClient) -> None:  # 4.5.4
    create(client, name={"type": "LanguageProperty", "languageMap": {"fr": "x"}},
           doc={"type": "JsonProperty", "json": {"a": 1}}, plain=3)
    simple = entity(client, options="keyValues")
    assert simple["name"] == {"languageMap": {"fr": "x"}}
    assert simple["doc"] == {"json": {"a": 1}} and simple["plain"] == 3
    assert entity(client, options="keyValues", lang="fr")["name"] == "x"
