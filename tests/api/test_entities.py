"""HTTP tests of the entity endpoints: create, retrieve, replace, merge, delete (clauses 6.4, 6.5),
request validation (media types, bodies, sizes) and tenants."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from links import link
from starlette.testclient import TestClient

from cityvisor.config import Settings

BASE = "/ngsi-ld/v1"
ERR = "https://uri.etsi.org/ngsi-ld/errors/"
DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"
EID = "urn:ngsi-ld:Building:b1"


def building(entity_id: str = EID, **extra: Any) -> dict[str, Any]:
    entity = {
        "id": entity_id,
        "type": "Building",
        "name": {"type": "Property", "value": "Arènes"},
        "height": {"type": "Property", "value": 21, "unitCode": "MTR",
                   "observedAt": "2024-05-01T10:00:00Z",
                   "reliability": {"type": "Property", "value": 0.9}},
        "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:p1"},
        "location": {"type": "GeoProperty",
                     "value": {"type": "Point", "coordinates": [4.3597, 43.8349]}},
    }
    entity.update(extra)
    return entity


def create(client: TestClient, entity: dict[str, Any], **headers: str) -> Any:
    return client.post(f"{BASE}/entities", json=entity, headers=headers)


def get(client: TestClient, entity_id: str = EID, **kwargs: Any) -> Any:
    return client.get(f"{BASE}/entities/{entity_id}", **kwargs)


def assert_problem(response: Any, status: int, type_name: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["detail"]
    if type_name is not None:
        assert body["type"] == ERR + type_name
    return body  # type: ignore[no-any-return]


def post_raw(client: TestClient, content: bytes, content_type: str = "application/json",
             path: str = "/entities", **headers: str) -> Any:
    return client.post(f"{BASE}{path}", content=content,
                       headers={"Content-Type": content_type, **headers})


# ------------------------------------------------------------------ create / retrieve


def test_create_returns_201_and_location(client: TestClient) -> None:
    response = create(client, building())
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"{BASE}/entities/{EID}"
    assert response.content == b""


def test_created_entity_is_retrieved_in_normalized_form(client: TestClient) -> None:
    create(client, building())
    response = get(client)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {
        "id": EID,
        "type": "Building",
        "name": {"type": "Property", "value": "Arènes"},
        "height": {"type": "Property", "value": 21, "unitCode": "MTR",
                   "observedAt": "2024-05-01T10:00:00Z",
                   "reliability": {"type": "Property", "value": 0.9}},
        "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:p1"},
        "location": {"type": "GeoProperty",
                     "value": {"type": "Point", "coordinates": [4.3597, 43.8349]}},
    }


def test_create_concise_input_is_normalized(client: TestClient) -> None:
    entity = {"id": EID, "type": "Building", "floors": 3,
              "owner": {"object": "urn:ngsi-ld:Person:p1"},
              "location": {"type": "Point", "coordinates": [4.36, 43.84]},
              "address": {"value": {"street": "Rue X", "type": "PostalAddress"}}}
    assert create(client, entity).status_code == 201
    body = get(client).json()
    assert body["floors"] == {"type": "Property", "value": 3}
    assert body["owner"] == {"type": "Relationship", "object": "urn:ngsi-ld:Person:p1"}
    assert body["location"] == {"type": "GeoProperty",
                                "value": {"type": "Point", "coordinates": [4.36, 43.84]}}
    assert body["address"] == {"type": "Property",
                               "value": {"street": "Rue X", "type": "PostalAddress"}}


def test_create_duplicate_is_409_already_exists(client: TestClient) -> None:
    assert create(client, building()).status_code == 201
    response = create(client, building(name={"type": "Property", "value": "other"}))
    body = assert_problem(response, 409, "AlreadyExists")
    assert EID in body["detail"]
    assert get(client).json()["name"]["value"] == "Arènes"  # untouched


def test_retrieve_unknown_entity_is_404(client: TestClient) -> None:
    body = assert_problem(get(client, "urn:ngsi-ld:Building:nope"), 404, "ResourceNotFound")
    assert "urn:ngsi-ld:Building:nope" in body["detail"]


def test_retrieve_with_non_uri_id_is_400(client: TestClient) -> None:
    assert_problem(get(client, "not-a-uri"), 400, "BadRequestData")


# ------------------------------------------------------------------ replace (PUT)


def test_replace_keeps_created_at_and_removes_unsent_attributes(client: TestClient) -> None:
    create(client, building())
    before = get(client, params={"options": "sysAttrs"}).json()
    response = client.put(f"{BASE}/entities/{EID}", json={
        "type": "Building", "name": {"type": "Property", "value": "Maison Carrée"},
        "roof": {"type": "Property", "value": "tiles"}})
    assert response.status_code == 204, response.text
    after = get(client, params={"options": "sysAttrs"}).json()
    assert after["createdAt"] == before["createdAt"]
    assert after["modifiedAt"] > before["modifiedAt"]
    assert set(after) == {"id", "type", "name", "roof", "createdAt", "modifiedAt"}
    assert after["name"]["value"] == "Maison Carrée"
    assert after["roof"]["value"] == "tiles"


def test_replace_with_different_id_in_body_is_400(client: TestClient) -> None:
    create(client, building())
    response = client.put(f"{BASE}/entities/{EID}",
                          json={"id": "urn:ngsi-ld:Building:other", "type": "Building"})
    assert_problem(response, 400, "BadRequestData")
    assert "owner" in get(client).json()


def test_replace_unknown_entity_is_404(client: TestClient) -> None:
    response = client.put(f"{BASE}/entities/urn:ngsi-ld:Building:zz",
                          json={"type": "Building", "a": 1})
    assert_problem(response, 404, "ResourceNotFound")


# ------------------------------------------------------------------ merge (PATCH)


def test_merge_adds_changes_and_keeps_attributes(client: TestClient) -> None:
    create(client, building())
    response = client.patch(f"{BASE}/entities/{EID}", json={
        "name": {"type": "Property", "value": "Arena"},
        "floors": {"type": "Property", "value": 2}})
    assert response.status_code == 204, response.text
    body = get(client).json()
    assert body["name"] == {"type": "Property", "value": "Arena"}
    assert body["floors"] == {"type": "Property", "value": 2}
    assert body["owner"] == {"type": "Relationship", "object": "urn:ngsi-ld:Person:p1"}
    assert body["location"]["value"]["coordinates"] == [4.3597, 43.8349]


def test_merge_merges_sub_attributes(client: TestClient) -> None:
    create(client, building())
    response = client.patch(f"{BASE}/entities/{EID}", json={
        "height": {"value": 22, "accuracy": {"type": "Property", "value": 0.5}}})
    assert response.status_code == 204, response.text
    height = get(client).json()["height"]
    assert height == {"type": "Property", "value": 22, "unitCode": "MTR",
                      "observedAt": "2024-05-01T10:00:00Z",
                      "reliability": {"type": "Property", "value": 0.9},
                      "accuracy": {"type": "Property", "value": 0.5}}


def test_merge_null_deletes_attribute_and_sub_attribute(client: TestClient) -> None:
    create(client, building())
    response = client.patch(f"{BASE}/entities/{EID}", json={
        "owner": "urn:ngsi-ld:null",
        "height": {"value": 23, "reliability": "urn:ngsi-ld:null"},
        "name": {"type": "Property", "value": "urn:ngsi-ld:null"}})
    assert response.status_code == 204, response.text
    body = get(client).json()
    assert "owner" not in body
    assert "name" not in body
    assert body["height"] == {"type": "Property", "value": 23, "unitCode": "MTR",
                              "observedAt": "2024-05-01T10:00:00Z"}


def test_merge_advances_modified_at_only(client: TestClient) -> None:
    create(client, building())
    before = get(client, params={"options": "sysAttrs"}).json()
    client.patch(f"{BASE}/entities/{EID}", json={"floors": 4})
    after = get(client, params={"options": "sysAttrs"}).json()
    assert after["createdAt"] == before["createdAt"]
    assert after["modifiedAt"] > before["modifiedAt"]
    assert after["name"]["createdAt"] == before["name"]["createdAt"]


def test_merge_unknown_entity_is_404(client: TestClient) -> None:
    response = client.patch(f"{BASE}/entities/urn:ngsi-ld:Building:zz", json={"a": 1})
    assert_problem(response, 404, "ResourceNotFound")


def test_merge_body_not_object_is_400(client: TestClient) -> None:
    create(client, building())
    assert_problem(client.patch(f"{BASE}/entities/{EID}", json=[1, 2]), 400, "BadRequestData")


# ------------------------------------------------------------------ delete


def test_delete_then_404(client: TestClient) -> None:
    create(client, building())
    response = client.delete(f"{BASE}/entities/{EID}")
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(get(client), 404, "ResourceNotFound")
    assert_problem(client.delete(f"{BASE}/entities/{EID}"), 404, "ResourceNotFound")
    # the id can be reused afterwards
    assert create(client, building()).status_code == 201


# ------------------------------------------------------------------ invalid bodies


def test_malformed_json_is_400_invalid_request(client: TestClient) -> None:
    response = post_raw(client, b'{"id": "urn:ngsi-ld:X:1", "type": ')
    assert_problem(response, 400, "InvalidRequest")
    assert_problem(get(client, "urn:ngsi-ld:X:1"), 404, "ResourceNotFound")


def test_empty_body_is_400_invalid_request(client: TestClient) -> None:
    assert_problem(post_raw(client, b""), 400, "InvalidRequest")


@pytest.mark.parametrize("body", [[building()], "entity", 42, None])
def test_body_not_an_object_is_400_invalid_request(client: TestClient, body: Any) -> None:
    """Create Entity takes a JSON object: anything else is a malformed request (6.3.4)."""
    assert_problem(post_raw(client, orjson.dumps(body)), 400, "InvalidRequest")


@pytest.mark.parametrize("missing", ["id", "type"])
def test_missing_id_or_type_is_400(client: TestClient, missing: str) -> None:
    entity = building()
    del entity[missing]
    body = assert_problem(create(client, entity), 400, "BadRequestData")
    assert missing in body["detail"]


@pytest.mark.parametrize("bad_id", ["b1", "", "urn:ngsi-ld:has space", 42, "/entities/x"])
def test_non_uri_id_is_400(client: TestClient, bad_id: Any) -> None:
    assert_problem(create(client, building(bad_id)), 400, "BadRequestData")


@pytest.mark.parametrize("attribute", [
    None,
    {"type": "Property", "value": None},
    {"type": "Relationship", "object": None},
])
def test_attribute_with_null_value_is_400(client: TestClient, attribute: Any) -> None:
    body = assert_problem(create(client, building(broken=attribute)), 400, "BadRequestData")
    assert "broken" in body["detail"]
    assert_problem(get(client), 404, "ResourceNotFound")


@pytest.mark.parametrize("name", ["bad name", "a<b", "a=b", "a;b", "a(b)", 'a"b', "a[0]"])
def test_bad_attribute_name_is_400(client: TestClient, name: str) -> None:
    entity = building()
    entity[name] = {"type": "Property", "value": 1}
    assert_problem(create(client, entity), 400, "BadRequestData")


@pytest.mark.parametrize("geometry", [
    {"type": "Point", "coordinates": [200, 43.8]},
    {"type": "Point", "coordinates": [4.36, 95]},
    {"type": "Point", "coordinates": [4.36]},
    {"type": "Point", "coordinates": ["4.36", "43.84"]},
    {"type": "LineString", "coordinates": [[4.36, 43.84]]},
    {"type": "Polygon", "coordinates": [[[4.3, 43.8], [4.4, 43.8], [4.4, 43.9], [4.3, 43.9]]]},
    {"type": "Circle", "coordinates": [4.36, 43.84]},
])
def test_geoproperty_with_bad_coordinates_is_400(client: TestClient, geometry: Any) -> None:
    entity = building(location={"type": "GeoProperty", "value": geometry})
    assert_problem(create(client, entity), 400, "BadRequestData")


def test_location_must_be_a_geoproperty(client: TestClient) -> None:
    entity = building(location={"type": "Property", "value": "here"})
    assert_problem(create(client, entity), 400, "BadRequestData")


@pytest.mark.parametrize("target", ["p1", "", 7, ["urn:ngsi-ld:P:1", "nope"]])
def test_relationship_with_non_uri_object_is_400(client: TestClient, target: Any) -> None:
    entity = building(owner={"type": "Relationship", "object": target})
    body = assert_problem(create(client, entity), 400, "BadRequestData")
    assert "owner" in body["detail"]


def test_unknown_attribute_type_is_400(client: TestClient) -> None:
    entity = building(x={"type": "Propertee", "value": 1})
    assert_problem(create(client, entity), 400, "BadRequestData")


def test_unsupported_content_type_is_415(client: TestClient) -> None:
    response = post_raw(client, orjson.dumps(building()), "text/plain")
    assert_problem(response, 415)
    assert_problem(get(client), 404, "ResourceNotFound")


def test_json_body_with_context_is_400(client: TestClient) -> None:
    entity = building()
    entity["@context"] = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
    assert_problem(create(client, entity), 400, "BadRequestData")


def test_ld_json_body_without_context_is_400(client: TestClient) -> None:
    response = post_raw(client, orjson.dumps(building()), "application/ld+json")
    assert_problem(response, 400, "BadRequestData")


def test_ld_json_body_with_context_is_accepted(client: TestClient) -> None:
    entity = building()
    entity["@context"] = [{"height": "https://example.org/height"},
                          "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"]
    response = post_raw(client, orjson.dumps(entity), "application/ld+json")
    assert response.status_code == 201, response.text
    body = get(client).json()
    assert "https://example.org/height" in body  # not in the core context: full IRI
    assert "height" not in body


def test_ld_json_body_with_link_header_is_400(client: TestClient) -> None:
    entity = building()
    entity["@context"] = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"
    response = post_raw(client, orjson.dumps(entity), "application/ld+json",
                        **link("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"))
    assert_problem(response, 400, "BadRequestData")


class TestBodyLimit:
    @pytest.fixture
    def settings(self, tmp_path: Path) -> Settings:
        return Settings(data_dir=tmp_path / "data", auth=False, allow_context_fetch=False,
                        max_body_bytes=2048)

    def test_oversized_body_is_413(self, client: TestClient) -> None:
        entity = building(notes={"type": "Property", "value": "x" * 4096})
        response = create(client, entity)
        assert_problem(response, 413, "PayloadTooLarge")
        assert_problem(get(client), 404, "ResourceNotFound")

    def test_body_under_limit_is_accepted(self, client: TestClient) -> None:
        entity = building(notes={"type": "Property", "value": "x" * 1000})
        assert create(client, entity).status_code == 201


# ------------------------------------------------------------------ tenants


def test_tenant_isolation(client: TestClient) -> None:
    t1 = {"NGSILD-Tenant": "t1"}
    t2 = {"NGSILD-Tenant": "t2"}
    assert create(client, building(), **t1).status_code == 201
    assert create(client, building("urn:ngsi-ld:Building:other"), **t2).status_code == 201
    assert get(client, headers=t1).status_code == 200
    assert_problem(get(client), 404, "ResourceNotFound")
    assert_problem(get(client, headers=t2), 404, "ResourceNotFound")
    # the same id can exist in another tenant, independently
    assert create(client, building(name={"type": "Property", "value": "default"})).status_code == 201
    assert get(client).json()["name"]["value"] == "default"
    assert get(client, headers=t1).json()["name"]["value"] == "Arènes"
    # deleting in one tenant leaves the other alone
    assert client.delete(f"{BASE}/entities/{EID}", headers=t1).status_code == 204
    assert get(client).status_code == 200
    query = client.get(f"{BASE}/entities", params={"type": "Building"}, headers=t2).json()
    assert [e["id"] for e in query] == ["urn:ngsi-ld:Building:other"]


def test_unknown_tenant_read_is_404_nonexistent_tenant(client: TestClient) -> None:
    create(client, building())
    headers = {"NGSILD-Tenant": "ghost"}
    assert_problem(get(client, headers=headers), 404, "NonexistentTenant")
    response = client.get(f"{BASE}/entities", params={"type": "Building"}, headers=headers)
    assert_problem(response, 404, "NonexistentTenant")


@pytest.mark.parametrize("tenant", ["bad tenant", "a/b", "x" * 65, "t1;drop", "a.b"])
def test_invalid_tenant_name_is_400(client: TestClient, tenant: str) -> None:
    headers = {"NGSILD-Tenant": tenant}
    assert_problem(create(client, building(), **headers), 400, "BadRequestData")
    assert_problem(get(client, headers=headers), 400, "BadRequestData")


# ------------------------------------------------------------------ misc


def test_method_not_allowed_is_405(client: TestClient) -> None:
    response = client.put(f"{BASE}/entities")
    assert_problem(response, 405)


def test_unknown_path_is_404(client: TestClient) -> None:
    assert_problem(client.get(f"{BASE}/nothing"), 404, "ResourceNotFound")


def test_security_headers_on_responses(client: TestClient) -> None:
    response = get(client, "urn:ngsi-ld:X:1")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


def test_default_context_names_expand_with_vocab(client: TestClient) -> None:
    create(client, building())
    core = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
    body = get(client, headers={"Accept": "application/ld+json", **link(core)}).json()
    assert "height" in body
    other = {"Link": link(core)["Link"]}
    attrs = client.get(f"{BASE}/attributes", headers=other).json()["attributeList"]
    assert "height" in attrs
    assert DEFAULT + "height" not in attrs


@pytest.mark.parametrize("char", ["\u202e", "\u200b", "\ufeff", "\ufdd0", "\uffff",
                                  "\U0010ffff", "\x7f", "\u0085"])
def test_an_id_with_a_control_format_or_noncharacter_is_a_bad_request(
        client: TestClient, char: str) -> None:
    """Such characters are not allowed in an IRI (RFC 3987): 400 and nothing written."""
    entity_id = f"urn:ngsi-ld:Lamp:a{char}b"
    response = client.post("/ngsi-ld/v1/entities", json={"id": entity_id, "type": "Lamp"})
    assert response.status_code == 400, response.text
    assert response.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
    assert client.get("/ngsi-ld/v1/entities", params={"type": "Lamp"}).json() == []


def test_a_non_ascii_id_gets_a_percent_encoded_location(client: TestClient) -> None:
    entity_id = "urn:ngsi-ld:Rue:Łódź-é"
    response = client.post("/ngsi-ld/v1/entities", json={"id": entity_id, "type": "Rue"})
    assert response.status_code == 201
    assert response.headers["location"] == (
        "/ngsi-ld/v1/entities/urn:ngsi-ld:Rue:%C5%81%C3%B3d%C5%BA-%C3%A9")
    assert client.get(f"/ngsi-ld/v1/entities/{entity_id}").json()["id"] == entity_id


@pytest.mark.parametrize("entity_id", ["http://example.org/lamp/1", "urn:ngsi-ld:Lamp:a/b/",
                                       "urn:ngsi-ld:Lamp:50%25", "urn:ngsi-ld:Lamp:a%2Fb"])
def test_an_id_holding_a_slash_or_a_percent_is_addressed_percent_encoded(
        client: TestClient, entity_id: str) -> None:
    """RFC 3986, section 2.4: the path is split into segments before it is decoded."""
    response = client.post("/ngsi-ld/v1/entities", json={"id": entity_id, "type": "Lamp",
                                                          "on": {"type": "Property", "value": 1}})
    assert response.status_code == 201, response.text
    path = "/ngsi-ld/v1/entities/" + quote(entity_id, safe="")
    assert client.get(path).json()["id"] == entity_id
    assert client.patch(path + "/attrs/on", json={"value": 2}).status_code == 204
    assert client.get(path).json()["on"]["value"] == 2
    assert client.delete(path).status_code == 204
    assert client.get(path).status_code == 404


def test_an_id_longer_than_2048_characters_is_a_bad_request(client: TestClient) -> None:
    response = client.post("/ngsi-ld/v1/entities",
                           json={"id": "urn:ngsi-ld:Lamp:" + "a" * 2048, "type": "Lamp"})
    assert response.status_code == 400
    assert "longer than 2048" in response.json()["detail"]


# ---------------------------------------------------------------- purge (5.6.21)


def purge(client: TestClient, **params: str) -> Any:
    return client.delete(f"{BASE}/entities", params=params)


def test_purge_deletes_the_matching_entities(client: TestClient) -> None:
    create(client, building())
    create(client, building("urn:ngsi-ld:Building:b2", name={"type": "Property", "value": "x"}))
    create(client, {"id": "urn:ngsi-ld:Tree:t1", "type": "Tree"})
    assert purge(client, type="Building", q='name=="x"').status_code == 204
    assert get(client).status_code == 200
    assert get(client, "urn:ngsi-ld:Building:b2").status_code == 404
    assert purge(client, type="Building").status_code == 204
    assert get(client).status_code == 404
    assert get(client, "urn:ngsi-ld:Tree:t1").status_code == 200
    assert purge(client, local="true").status_code == 204
    assert get(client, "urn:ngsi-ld:Tree:t1").status_code == 404


def test_purge_drop_and_keep_project_the_attributes(client: TestClient) -> None:
    create(client, building())
    assert purge(client, type="Building", drop="name,owner").status_code == 204
    assert sorted(get(client).json()) == ["height", "id", "location", "type"]
    assert purge(client, type="Building", keep="height").status_code == 204
    assert sorted(get(client).json()) == ["height", "id", "type"]
    assert_problem(purge(client, type="Building", keep="a", drop="b"), 400, "BadRequestData")


@pytest.mark.parametrize("params", [
    {}, {"id": EID}, {"idPattern": ".*"}, {"attrs": "createdAt"},
    {"q": 'modifiedAt>"2020-01-01T00:00:00Z"'},
    {"type": "Building", "q": 'owner{name}=="x"'}, {"type": "Building", "attrs": "owner{name}"},
])
def test_purge_refuses_a_too_wide_or_linked_filter(client: TestClient,
                                                   params: dict[str, str]) -> None:
    """Clause 5.6.21.4: nothing is deleted."""
    create(client, building())
    assert_problem(purge(client, **params), 400, "BadRequestData")
    assert get(client).status_code == 200
