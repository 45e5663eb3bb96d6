"""HTTP tests of response representations (clauses 4.5, 6.3): normalized, concise, keyValues,
sysAttrs, GeoJSON, content negotiation, @context compaction, languages and projections."""

from __future__ import annotations

from typing import Any

import pytest
from links import SDM, link
from starlette.testclient import TestClient

BASE = "/ngsi-ld/v1"
ERR = "https://uri.etsi.org/ngsi-ld/errors/"
DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"
SL = "https://smartdatamodels.org/dataModel.Streetlighting/"
CORE_18 = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
EID = "urn:ngsi-ld:Museum:m1"
POINT = {"type": "Point", "coordinates": [4.3601, 43.8380]}


@pytest.fixture
def museum(client: TestClient) -> None:
    entity = {
        "id": EID,
        "type": "Museum",
        "visitors": {"type": "Property", "value": 1200, "observedAt": "2024-05-01T10:00:00Z",
                     "unitCode": "C62",
                     "reliability": {"type": "Property", "value": 0.8}},
        "open": {"type": "Property", "value": True},
        "address": {"type": "Property", "value": {"streetAddress": "16 Bd des Arènes",
                                                  "addressLocality": "Nîmes"}},
        "operator": {"type": "Relationship", "object": "urn:ngsi-ld:Org:nimes"},
        "name": {"type": "LanguageProperty",
                 "languageMap": {"fr": "Musée de la Romanité", "en": "Museum of Romanity"}},
        "location": {"type": "GeoProperty", "value": POINT},
    }
    response = client.post(f"{BASE}/entities", json=entity)
    assert response.status_code == 201, response.text


def get(client: TestClient, entity_id: str = EID, headers: dict[str, str] | None = None,
        **params: str) -> Any:
    return client.get(f"{BASE}/entities/{entity_id}", params=params, headers=headers or {})


def ok(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def assert_problem(response: Any, status: int, type_name: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    if type_name is not None:
        assert response.json()["type"] == ERR + type_name


# ------------------------------------------------------------------ options


def test_key_values(client: TestClient, museum: None) -> None:
    body = ok(get(client, options="keyValues"))
    assert body == {
        "id": EID, "type": "Museum", "visitors": 1200, "open": True,
        "address": {"streetAddress": "16 Bd des Arènes", "addressLocality": "Nîmes"},
        "operator": "urn:ngsi-ld:Org:nimes",
        # clause 4.5.4: a LanguageProperty keeps its languageMap member in keyValues
        "name": {"languageMap": {"fr": "Musée de la Romanité", "en": "Museum of Romanity"}},
        "location": POINT,
    }


def test_simplified_is_key_values(client: TestClient, museum: None) -> None:
    assert ok(get(client, options="simplified")) == ok(get(client, options="keyValues"))
    assert ok(get(client, format="keyValues")) == ok(get(client, options="keyValues"))


def test_concise(client: TestClient, museum: None) -> None:
    body = ok(get(client, options="concise"))
    assert body["id"] == EID
    assert body["type"] == "Museum"
    assert body["visitors"] == {"value": 1200, "observedAt": "2024-05-01T10:00:00Z",
                                "unitCode": "C62", "reliability": 0.8}
    assert body["open"] is True
    assert body["address"] == {"value": {"streetAddress": "16 Bd des Arènes",
                                         "addressLocality": "Nîmes"}}
    assert body["operator"] == {"object": "urn:ngsi-ld:Org:nimes"}
    assert body["name"] == {"languageMap": {"fr": "Musée de la Romanité",
                                            "en": "Museum of Romanity"}}
    assert body["location"] in (POINT, {"value": POINT})


def test_concise_round_trips(client: TestClient, museum: None) -> None:
    concise = ok(get(client, options="concise"))
    concise["id"] = "urn:ngsi-ld:Museum:copy"
    assert client.post(f"{BASE}/entities", json=concise).status_code == 201
    copy = ok(get(client, "urn:ngsi-ld:Museum:copy"))
    original = ok(get(client))
    copy["id"] = EID
    assert copy == original


def test_normalized_is_default(client: TestClient, museum: None) -> None:
    normalized = ok(get(client, options="normalized"))
    assert normalized == ok(get(client))
    assert normalized["open"] == {"type": "Property", "value": True}
    assert normalized["name"]["type"] == "LanguageProperty"
    assert normalized["visitors"]["reliability"] == {"type": "Property", "value": 0.8}


def test_sys_attrs(client: TestClient, museum: None) -> None:
    body = ok(get(client, options="sysAttrs"))
    for member in (body, body["visitors"], body["visitors"]["reliability"], body["operator"]):
        assert member["createdAt"].endswith("Z")
        assert member["modifiedAt"] >= member["createdAt"]
    both = ok(get(client, options="sysAttrs,keyValues"))
    assert "createdAt" not in both
    assert both["visitors"] == 1200
    concise = ok(get(client, options="concise,sysAttrs"))
    assert "createdAt" in concise and "createdAt" in concise["visitors"]


def test_conflicting_options_are_400(client: TestClient, museum: None) -> None:
    assert_problem(get(client, options="keyValues,concise"), 400, "BadRequestData")


def test_unknown_options_or_format_is_invalid_request(client: TestClient,
                                                      museum: None) -> None:
    """Clause 6.3.7: a value options or format does not define makes the request invalid,
    whether or not the entity exists."""
    assert_problem(get(client, options="bogus"), 400, "InvalidRequest")
    assert_problem(get(client, options="keyValues,bogus"), 400, "InvalidRequest")
    assert_problem(get(client, format="xml"), 400, "InvalidRequest")
    assert_problem(get(client, "urn:ngsi-ld:Museum:none", format="xml"), 400,
                   "InvalidRequest")


# ------------------------------------------------------------------ GeoJSON


def test_geojson_feature(client: TestClient, museum: None) -> None:
    response = get(client, format="geojson")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/geo+json")
    feature = response.json()
    assert feature["type"] == "Feature"
    assert feature["id"] == EID
    assert feature["geometry"] == POINT
    assert feature["properties"]["type"] == "Museum"
    assert feature["properties"]["visitors"]["value"] == 1200


def test_geojson_feature_key_values(client: TestClient, museum: None) -> None:
    feature = ok(get(client, format="geojson", options="keyValues"))
    assert feature["properties"]["visitors"] == 1200
    assert feature["geometry"] == POINT


def test_geojson_other_geometry_property(client: TestClient, museum: None) -> None:
    area = {"type": "Polygon", "coordinates": [[[4.35, 43.83], [4.37, 43.83], [4.37, 43.85],
                                                [4.35, 43.83]]]}
    client.post(f"{BASE}/entities/{EID}/attrs",
                json={"area": {"type": "GeoProperty", "value": area}})
    feature = ok(get(client, format="geojson", geometryProperty="area"))
    assert feature["geometry"] == area
    no_geo = ok(get(client, format="geojson", geometryProperty="visitors"))
    assert no_geo["geometry"] is None


def test_geojson_feature_collection(client: TestClient, museum: None) -> None:
    client.post(f"{BASE}/entities", json={"id": "urn:ngsi-ld:Museum:m2", "type": "Museum",
                                          "visitors": 10})
    response = client.get(f"{BASE}/entities", params={"type": "Museum", "format": "geojson"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/geo+json")
    collection = response.json()
    assert collection["type"] == "FeatureCollection"
    features = {f["id"]: f for f in collection["features"]}
    assert set(features) == {EID, "urn:ngsi-ld:Museum:m2"}
    assert all(f["type"] == "Feature" for f in features.values())
    assert features[EID]["geometry"] == POINT
    assert features["urn:ngsi-ld:Museum:m2"]["geometry"] is None


def test_accept_geojson_gives_feature(client: TestClient, museum: None) -> None:
    response = get(client, headers={"Accept": "application/geo+json"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/geo+json")
    assert response.json()["type"] == "Feature"


# ------------------------------------------------------------------ negotiation


def test_accept_ld_json_puts_context_in_body(client: TestClient, museum: None) -> None:
    response = get(client, headers={"Accept": "application/ld+json"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/ld+json")
    assert "link" not in response.headers
    body = response.json()
    assert "@context" in body
    assert body["@context"] in ("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld",
                                ["https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"])


def test_accept_ld_json_echoes_caller_context(client: TestClient, museum: None) -> None:
    response = get(client, headers={"Accept": "application/ld+json", **link(CORE_18)})
    assert response.json()["@context"] in (CORE_18, [CORE_18])


def test_accept_json_gives_link_header(client: TestClient, museum: None) -> None:
    response = get(client, headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert "@context" not in response.json()
    header = response.headers["link"]
    assert header.startswith("<https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context")
    assert 'rel="http://www.w3.org/ns/json-ld#context"' in header
    assert 'type="application/ld+json"' in header


def test_link_header_echoes_caller_context(client: TestClient, museum: None) -> None:
    url = SDM.format("Streetlighting")
    response = get(client, headers=link(url))
    assert response.headers["link"].startswith(f"<{url}>")


def test_accept_preferences(client: TestClient, museum: None) -> None:
    response = get(client, headers={"Accept": "text/html;q=0.9, application/ld+json"})
    assert response.headers["content-type"].startswith("application/ld+json")
    response = get(client, headers={"Accept": "*/*"})
    assert response.headers["content-type"].startswith("application/json")


def test_accept_html_is_406(client: TestClient, museum: None) -> None:
    assert_problem(get(client, headers={"Accept": "text/html"}), 406)
    response = client.get(f"{BASE}/entities", params={"type": "Museum"},
                          headers={"Accept": "text/html"})
    assert_problem(response, 406)


def test_query_ld_json_has_context_in_every_entity(client: TestClient, museum: None) -> None:
    response = client.get(f"{BASE}/entities", params={"type": "Museum"},
                          headers={"Accept": "application/ld+json"})
    body = response.json()
    assert len(body) == 1
    assert "@context" in body[0]


# ------------------------------------------------------------------ @context compaction


@pytest.fixture
def streetlight(client: TestClient) -> None:
    entity = {
        "id": "urn:ngsi-ld:Streetlight:nimes:1",
        "type": "Streetlight",
        "powerState": {"type": "Property", "value": "on"},
        "refStreetlightGroup": {"type": "Relationship",
                                "object": "urn:ngsi-ld:StreetlightGroup:nimes:3"},
        "location": {"type": "GeoProperty", "value": POINT},
        "lampBrand": {"type": "Property", "value": "X"},
        "myNote": {"type": "Property", "value": "not in the SDM context"},
    }
    response = client.post(f"{BASE}/entities", json=entity,
                           headers=link(SDM.format("Streetlighting")))
    assert response.status_code == 201, response.text


SL_ID = "urn:ngsi-ld:Streetlight:nimes:1"


def test_sdm_terms_without_link_are_full_iris(client: TestClient, streetlight: None) -> None:
    body = ok(get(client, SL_ID))
    assert body["type"] == SL + "Streetlight"
    assert body[SL + "powerState"] == {"type": "Property", "value": "on"}
    assert SL + "refStreetlightGroup" in body
    assert "powerState" not in body
    assert body["location"]["value"] == POINT  # core term
    assert body["myNote"]["value"] == "not in the SDM context"  # @vocab of the core


def test_sdm_terms_with_link_are_short(client: TestClient, streetlight: None) -> None:
    body = ok(get(client, SL_ID, headers=link(SDM.format("Streetlighting"))))
    assert body["type"] == "Streetlight"
    assert body["powerState"] == {"type": "Property", "value": "on"}
    assert body["refStreetlightGroup"]["object"] == "urn:ngsi-ld:StreetlightGroup:nimes:3"
    assert body["myNote"]["value"] == "not in the SDM context"
    assert not any(k.startswith("https://") for k in body)


def test_sdm_main_branch_url_is_bundled_too(client: TestClient, streetlight: None) -> None:
    url = SDM.format("Streetlighting").replace("/master/", "/main/")
    body = ok(get(client, SL_ID, headers=link(url)))
    assert body["type"] == "Streetlight"
    assert "powerState" in body


def test_query_by_short_type_needs_the_context(client: TestClient, streetlight: None) -> None:
    sdm = link(SDM.format("Streetlighting"))
    found = ok(client.get(f"{BASE}/entities", params={"type": "Streetlight"}, headers=sdm))
    assert [e["id"] for e in found] == [SL_ID]
    assert ok(client.get(f"{BASE}/entities", params={"type": "Streetlight"})) == []
    by_iri = ok(client.get(f"{BASE}/entities", params={"type": SL + "Streetlight"}))
    assert [e["id"] for e in by_iri] == [SL_ID]


def test_ld_json_with_inline_context_compacts(client: TestClient, streetlight: None) -> None:
    response = client.post(
        f"{BASE}/entities",
        content=(b'{"@context": {"ps": "' + SL.encode() + b'powerState"},'
                 b' "id": "urn:ngsi-ld:Streetlight:nimes:2",'
                 b' "type": "https://smartdatamodels.org/dataModel.Streetlighting/Streetlight",'
                 b' "ps": {"type": "Property", "value": "off"}}'),
        headers={"Content-Type": "application/ld+json"})
    assert response.status_code == 201, response.text
    body = ok(get(client, "urn:ngsi-ld:Streetlight:nimes:2",
                  headers=link(SDM.format("Streetlighting"))))
    assert body["powerState"]["value"] == "off"


@pytest.mark.parametrize("url", [
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.3.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld",
    CORE_18,
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
])
def test_core_context_under_several_urls(client: TestClient, url: str) -> None:
    entity = {"id": "urn:ngsi-ld:Thing:1", "type": "Thing", "size": 3,
              "location": {"type": "Point", "coordinates": [4.36, 43.84]}}
    response = client.post(f"{BASE}/entities", json=entity, headers=link(url))
    assert response.status_code == 201, response.text
    for headers in ({}, link(url)):
        body = ok(get(client, "urn:ngsi-ld:Thing:1", headers=headers))
        assert body["type"] == "Thing"
        assert body["size"] == {"type": "Property", "value": 3}
        assert body["location"]["type"] == "GeoProperty"
    attrs = ok(client.get(f"{BASE}/attributes"))["attributeList"]
    assert "size" in attrs


def test_unknown_context_without_fetching_is_503(client: TestClient, museum: None) -> None:
    headers = link("https://example.org/unknown-context.jsonld")
    assert_problem(get(client, headers=headers), 503, "LdContextNotAvailable")
    response = client.post(f"{BASE}/entities", headers=headers,
                           json={"id": "urn:ngsi-ld:Thing:2", "type": "Thing"})
    assert_problem(response, 503, "LdContextNotAvailable")
    assert_problem(get(client, "urn:ngsi-ld:Thing:2"), 404, "ResourceNotFound")


def test_bad_link_header_is_400(client: TestClient, museum: None) -> None:
    assert_problem(get(client, headers=link("ftp://example.org/c.jsonld")), 400,
                   "BadRequestData")
    two = {"Link": link(CORE_18)["Link"] + ", " + link(SDM.format("Weather"))["Link"]}
    assert_problem(get(client, headers=two), 400, "BadRequestData")


# ------------------------------------------------------------------ languages


def test_lang_selects_one_language(client: TestClient, museum: None) -> None:
    body = ok(get(client, lang="en"))
    assert body["name"]["type"] == "Property"
    assert body["name"]["value"] == "Museum of Romanity"
    assert "languageMap" not in body["name"]
    assert ok(get(client, lang="fr", options="keyValues"))["name"] == "Musée de la Romanité"
    assert ok(get(client, lang="de,en;q=0.5", options="keyValues"))["name"] == "Museum of Romanity"


def test_lang_unknown_falls_back(client: TestClient, museum: None) -> None:
    name = ok(get(client, lang="de", options="keyValues"))["name"]
    assert name in ("Musée de la Romanité", "Museum of Romanity")


def test_lang_names_the_chosen_language(client: TestClient, museum: None) -> None:
    assert ok(get(client, lang="en"))["name"] == {"type": "Property",
                                                  "value": "Museum of Romanity", "lang": "en"}


def test_without_lang_full_language_map(client: TestClient, museum: None) -> None:
    assert ok(get(client))["name"] == {
        "type": "LanguageProperty",
        "languageMap": {"fr": "Musée de la Romanité", "en": "Museum of Romanity"}}


# ------------------------------------------------------------------ projections


def test_attrs_projection(client: TestClient, museum: None) -> None:
    body = ok(get(client, attrs="visitors,operator"))
    assert set(body) == {"id", "type", "visitors", "operator"}
    assert body["visitors"]["value"] == 1200


def test_attrs_projection_unknown_attribute_is_404(client: TestClient, museum: None) -> None:
    """Clause 5.7.1.4: none of the requested attributes exists -> ResourceNotFound."""
    assert_problem(get(client, attrs="nothing"), 404, "ResourceNotFound")
    assert set(ok(get(client, attrs="nothing,open"))) == {"id", "type", "open"}


def test_pick(client: TestClient, museum: None) -> None:
    body = ok(get(client, pick="id,visitors"))
    assert body == {"id": EID, "visitors": ok(get(client))["visitors"]}


def test_omit(client: TestClient, museum: None) -> None:
    body = ok(get(client, omit="visitors,address", options="keyValues"))
    assert set(body) == {"id", "type", "open", "operator", "name", "location"}


def test_member_both_picked_and_omitted_is_400(client: TestClient, museum: None) -> None:
    assert_problem(get(client, pick="id,visitors", omit="visitors"), 400, "BadRequestData")
    assert ok(get(client, pick="id,visitors", omit="open")) == ok(get(client, pick="id,visitors"))


@pytest.mark.parametrize("params", [
    {"pick": "visitors", "attrs": "open"}, {"omit": "visitors", "attrs": "open"}])
def test_pick_or_omit_with_attrs_is_400(client: TestClient, museum: None,
                                        params: dict[str, str]) -> None:
    assert_problem(get(client, **params), 400, "BadRequestData")


@pytest.mark.parametrize("pick", [
    "id;name", "id,operator{name", "id,operator{{name}", "id,operator{,name}", "id,operator{}",
    "id,,name", "name||open", "open}", ""])
def test_malformed_projection_is_400(client: TestClient, museum: None, pick: str) -> None:
    """Clause 4.21: the projection grammar, checked before the entity is read."""
    assert_problem(get(client, pick=pick), 400, "BadRequestData")
    assert_problem(get(client, omit=pick), 400, "BadRequestData")
    assert_problem(get(client, "urn:ngsi-ld:Museum:none", pick=pick), 400, "BadRequestData")


def test_pipe_and_comma_pick_alike(client: TestClient, museum: None) -> None:
    assert ok(get(client, pick="open|visitors")) == ok(get(client, pick="open,visitors"))
    assert set(ok(get(client, pick="open|visitors"))) == {"open", "visitors"}


@pytest.mark.parametrize("params", [
    {"pick": "nothing"}, {"omit": "id,type,visitors,open,address,operator,name,location"}])
def test_nothing_left_after_projection_is_404(client: TestClient, museum: None,
                                             params: dict[str, str]) -> None:
    assert_problem(get(client, **params), 404, "ResourceNotFound")


def test_linked_projection_without_join_is_400(client: TestClient, museum: None) -> None:
    assert_problem(get(client, pick="operator{name}"), 400, "BadRequestData")
    assert_problem(get(client, omit="operator{name}"), 400, "BadRequestData")


def test_type_selector_on_retrieve(client: TestClient, museum: None) -> None:
    """Clause 5.7.1.4: with type, the Entity must also be of that type."""
    assert_problem(get(client, type="Vehicle"), 404, "ResourceNotFound")
    assert ok(get(client, type="Museum"))["id"] == EID
    assert ok(get(client, type="Vehicle|Museum"))["id"] == EID


def test_geometry_property_needs_geojson(client: TestClient, museum: None) -> None:
    assert_problem(get(client, geometryProperty="location"), 400, "BadRequestData")
    body = ok(get(client, geometryProperty="location",
                  headers={"Accept": "application/geo+json"}))
    assert body["geometry"] == POINT


def test_query_attrs_projects_and_selects(client: TestClient, museum: None) -> None:
    client.post(f"{BASE}/entities", json={"id": "urn:ngsi-ld:Museum:m2", "type": "Museum",
                                          "open": False})
    body = ok(client.get(f"{BASE}/entities", params={"type": "Museum", "attrs": "visitors"}))
    assert body == [{"id": EID, "type": "Museum", "visitors": ok(get(client))["visitors"]}]


def test_query_pick_only_projects(client: TestClient, museum: None) -> None:
    client.post(f"{BASE}/entities", json={"id": "urn:ngsi-ld:Museum:m2", "type": "Museum",
                                          "open": False})
    body = ok(client.get(f"{BASE}/entities",
                         params={"type": "Museum", "pick": "id,visitors"}))
    assert sorted(body, key=lambda e: e["id"]) == [
        {"id": EID, "visitors": ok(get(client))["visitors"]},
        {"id": "urn:ngsi-ld:Museum:m2"}]


def test_query_drops_entities_left_empty(client: TestClient, museum: None) -> None:
    """Clause 4.21: an entity without any picked member is not in the result."""
    client.post(f"{BASE}/entities", json={"id": "urn:ngsi-ld:Museum:m2", "type": "Museum",
                                          "open": False})
    body = ok(client.get(f"{BASE}/entities", params={"type": "Museum", "pick": "visitors"}))
    assert body == [{"visitors": ok(get(client))["visitors"]}]
    body = ok(client.get(f"{BASE}/entities", params={"type": "Museum", "omit": "id,type,open"}))
    assert len(body) == 1 and "visitors" in body[0]


def test_query_omit_only_projects(client: TestClient, museum: None) -> None:
    client.post(f"{BASE}/entities", json={"id": "urn:ngsi-ld:Museum:m2", "type": "Museum",
                                          "open": False})
    body = ok(client.get(f"{BASE}/entities", params={"type": "Museum", "omit": "open",
                                                     "options": "keyValues"}))
    assert [set(e) for e in body] == [
        {"id", "type", "visitors", "address", "operator", "name", "location"},
        {"id", "type"}]


def test_key_values_multi_attribute_is_a_dataset_map(client: TestClient) -> None:
    """Clauses 4.5.4, 4.5.17.1: the simplified form of a multi-attribute maps each
    datasetId (``@none`` for the default instance) to its value; GeoJSON takes the default
    instance's geometry."""
    entity_id = "urn:ngsi-ld:Vehicle:v1"
    client.post(f"{BASE}/entities", json={
        "id": entity_id, "type": "Vehicle", "speed": prop_value(5),
        "location": [{"type": "GeoProperty", "value": POINT, "datasetId": "urn:ngsi-ld:Dataset:gps"},
                     {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [3, 4]}}]})
    body = ok(get(client, entity_id, options="keyValues"))
    assert body["speed"] == 5
    assert body["location"] == {"dataset": {"@none": {"type": "Point", "coordinates": [3, 4]},
                                            "urn:ngsi-ld:Dataset:gps": POINT}}
    feature = ok(get(client, entity_id, options="keyValues",
                     headers={"Accept": "application/geo+json"}))
    assert feature["geometry"] == {"type": "Point", "coordinates": [3, 4]}
    assert feature["properties"]["location"] == body["location"]


def prop_value(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


def test_prefer_an_earlier_version(client: TestClient) -> None:
    """Clause 4.3.6.8: Prefer: ngsi-ld=1.5 turns a VocabProperty (1.8) into a Property,
    answered 203 with Preference-Applied; the native version leaves it (200)."""
    entity_id = "urn:ngsi-ld:Building:v1"
    client.post(f"{BASE}/entities", json={
        "id": entity_id, "type": "Building",
        "category": {"type": "VocabProperty", "vocab": "office"}})
    old = get(client, entity_id, headers={"Prefer": "ngsi-ld=1.5"})
    assert old.status_code == 203
    assert old.headers["Preference-Applied"] == "ngsi-ld=1.5"
    assert old.json()["category"]["type"] == "Property"
    assert old.json()["category"]["value"] == ok(get(client, entity_id))["category"]["vocab"]
    native = get(client, entity_id, headers={"Prefer": "ngsi-ld=1.9"})
    assert native.status_code == 200
    assert native.headers["Preference-Applied"] == "ngsi-ld=1.9"
    assert native.json()["category"]["type"] == "VocabProperty"
    query = client.get(f"{BASE}/entities", params={"type": "Building"},
                       headers={"Prefer": "ngsi-ld=1.7"})
    assert query.status_code == 203 and query.json()[0]["category"]["type"] == "Property"
    assert "Preference-Applied" not in get(client, entity_id).headers
