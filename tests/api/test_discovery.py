"""/types and /attributes discovery (clauses 6.25-6.28), their counts and compaction."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
from starlette.testclient import TestClient

BASE = "/ngsi-ld/v1"
LINK_REL = 'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
ERR = "https://uri.etsi.org/ngsi-ld/errors/"
DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"
EX = "https://example.org/city#"
USER_CONTEXT = {"@context": {"Lamp": EX + "Lamp", "Bin": EX + "Bin", "brightness": EX + "brightness",
                             "fill": EX + "fill"}}


def link(url: str) -> dict[str, str]:
    return {"Link": f"<{url}>; {LINK_REL}"}


def prop(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


def create(client: TestClient, entities: list[dict[str, Any]], headers: dict[str, str] | None = None):
    response = client.post(f"{BASE}/entityOperations/create", json=entities, headers=headers or {})
    assert response.status_code == 201, response.text
    return response


@pytest.fixture
def city(client: TestClient) -> TestClient:
    """3 Streetlights, 2 WasteContainers (one a Relationship), 1 Camera."""
    lights = [{"id": f"urn:ngsi-ld:Streetlight:{n}", "type": "Streetlight",
               "powerState": prop("on"), "illuminanceLevel": prop(n / 10),
               "location": {"type": "GeoProperty", "value": {"type": "Point",
                                                             "coordinates": [4.36, 43.83 + n / 1000]}}}
              for n in range(3)]
    bins = [{"id": f"urn:ngsi-ld:WasteContainer:{n}", "type": "WasteContainer",
             "fillingLevel": prop(0.5), "refDevice": {"type": "Relationship",
                                                      "object": "urn:ngsi-ld:Device:1"}}
            for n in range(2)]
    camera = [{"id": "urn:ngsi-ld:Camera:1", "type": "Camera", "powerState": prop("off")}]
    create(client, lights + bins + camera)
    return client


def problem(response, status: int, type_name: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == ERR + type_name


# ---------------------------------------------------------------- /types


def test_types_lists_the_types(city: TestClient) -> None:
    response = city.get(f"{BASE}/types")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["type"] == "EntityTypeList"
    assert body["id"].startswith("urn:ngsi-ld:EntityTypeList:")
    assert sorted(body["typeList"]) == ["Camera", "Streetlight", "WasteContainer"]
    assert "rel=\"http://www.w3.org/ns/json-ld#context\"" in response.headers["link"]


def test_types_on_an_empty_broker(client: TestClient) -> None:
    response = client.get(f"{BASE}/types")
    assert response.status_code == 200
    assert response.json()["typeList"] == []


def test_types_details(city: TestClient) -> None:
    response = city.get(f"{BASE}/types", params={"details": "true"})
    assert response.status_code == 200
    body = {t["typeName"]: t for t in response.json()}
    assert set(body) == {"Camera", "Streetlight", "WasteContainer"}
    light = body["Streetlight"]
    assert light["type"] == "EntityType"
    assert light["id"] == DEFAULT + "Streetlight"
    assert sorted(light["attributeNames"]) == ["illuminanceLevel", "location", "powerState"]
    assert sorted(body["WasteContainer"]["attributeNames"]) == ["fillingLevel", "refDevice"]
    assert body["Camera"]["attributeNames"] == ["powerState"]


def test_types_details_must_be_a_boolean(city: TestClient) -> None:
    problem(city.get(f"{BASE}/types", params={"details": "yes"}), 400, "BadRequestData")


def test_type_info(city: TestClient) -> None:
    response = city.get(f"{BASE}/types/Streetlight")
    assert response.status_code == 200
    info = response.json()
    assert info["type"] == "EntityTypeInfo"
    assert info["id"] == DEFAULT + "Streetlight"
    assert info["typeName"] == "Streetlight"
    assert info["entityCount"] == 3
    details = {a["attributeName"]: a for a in info["attributeDetails"]}
    assert set(details) == {"illuminanceLevel", "location", "powerState"}
    assert details["location"]["attributeTypes"] == ["GeoProperty"]
    assert details["powerState"]["attributeTypes"] == ["Property"]
    assert details["powerState"]["type"] == "Attribute"
    assert details["powerState"]["id"] == DEFAULT + "powerState"
    bins = city.get(f"{BASE}/types/WasteContainer").json()
    assert bins["entityCount"] == 2
    kinds = {a["attributeName"]: a["attributeTypes"] for a in bins["attributeDetails"]}
    assert kinds == {"fillingLevel": ["Property"], "refDevice": ["Relationship"]}


def test_type_info_by_full_iri(city: TestClient) -> None:
    response = city.get(f"{BASE}/types/{DEFAULT}Streetlight")
    assert response.status_code == 200, response.text
    assert response.json()["entityCount"] == 3


def test_unknown_type_is_404(city: TestClient) -> None:
    problem(city.get(f"{BASE}/types/Unicorn"), 404, "ResourceNotFound")


# ---------------------------------------------------------------- /attributes


def test_attributes_list(city: TestClient) -> None:
    response = city.get(f"{BASE}/attributes")
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "AttributeList"
    assert body["id"].startswith("urn:ngsi-ld:AttributeList:")
    assert body["attributeList"] == sorted(["fillingLevel", "illuminanceLevel", "location",
                                            "powerState", "refDevice"])


def test_attributes_details(city: TestClient) -> None:
    response = city.get(f"{BASE}/attributes", params={"details": "true"})
    assert response.status_code == 200
    body = {a["attributeName"]: a for a in response.json()}
    assert set(body) == {"fillingLevel", "illuminanceLevel", "location", "powerState", "refDevice"}
    power = body["powerState"]
    assert power["type"] == "Attribute"
    assert power["id"] == DEFAULT + "powerState"
    assert sorted(power["typeNames"]) == ["Camera", "Streetlight"]
    assert set(power) == {"id", "type", "attributeName", "typeNames"}  # clause 5.7.9
    assert body["refDevice"]["typeNames"] == ["WasteContainer"]
    info = city.get(f"{BASE}/attributes/refDevice").json()  # kinds and count: clause 5.7.10
    assert info["attributeTypes"] == ["Relationship"] and info["attributeCount"] == 2


def test_attribute_info(city: TestClient) -> None:
    response = city.get(f"{BASE}/attributes/powerState")
    assert response.status_code == 200
    info = response.json()
    assert info["type"] == "Attribute"
    assert info["attributeName"] == "powerState"
    assert info["attributeCount"] == 4
    assert sorted(info["typeNames"]) == ["Camera", "Streetlight"]
    assert info["attributeTypes"] == ["Property"]
    assert city.get(f"{BASE}/attributes/refDevice").json()["attributeCount"] == 2


def test_unknown_attribute_is_404(city: TestClient) -> None:
    problem(city.get(f"{BASE}/attributes/colour"), 404, "ResourceNotFound")


# ---------------------------------------------------------------- counts follow writes


def test_counts_follow_updates_and_deletes(city: TestClient) -> None:
    # a new attribute on one Camera
    response = city.post(f"{BASE}/entities/urn:ngsi-ld:Camera:1/attrs",
                         json={"streamURL": prop("rtsp://cam/1")})
    assert response.status_code == 204, response.text
    assert city.get(f"{BASE}/attributes/streamURL").json()["attributeCount"] == 1
    # an attribute deleted from one Streetlight
    response = city.delete(f"{BASE}/entities/urn:ngsi-ld:Streetlight:0/attrs/powerState")
    assert response.status_code == 204, response.text
    info = city.get(f"{BASE}/attributes/powerState").json()
    assert info["attributeCount"] == 3
    # entity deletions
    assert city.delete(f"{BASE}/entities/urn:ngsi-ld:Streetlight:1").status_code == 204
    assert city.get(f"{BASE}/types/Streetlight").json()["entityCount"] == 2
    assert city.get(f"{BASE}/attributes/powerState").json()["attributeCount"] == 2
    response = city.post(f"{BASE}/entityOperations/delete", json=[
        "urn:ngsi-ld:Camera:1", "urn:ngsi-ld:WasteContainer:0", "urn:ngsi-ld:WasteContainer:1"])
    assert response.status_code == 204
    assert sorted(city.get(f"{BASE}/types").json()["typeList"]) == ["Streetlight"]
    problem(city.get(f"{BASE}/types/Camera"), 404, "ResourceNotFound")
    problem(city.get(f"{BASE}/attributes/streamURL"), 404, "ResourceNotFound")
    problem(city.get(f"{BASE}/attributes/refDevice"), 404, "ResourceNotFound")
    assert city.get(f"{BASE}/attributes/powerState").json()["typeNames"] == ["Streetlight"]


def test_counts_follow_a_type_change_on_replace(city: TestClient) -> None:
    response = city.post(f"{BASE}/entityOperations/upsert", json=[
        {"id": "urn:ngsi-ld:Camera:1", "type": "Streetlight", "powerState": prop("on")}])
    assert response.status_code == 204, response.text
    assert city.get(f"{BASE}/types/Streetlight").json()["entityCount"] == 4
    problem(city.get(f"{BASE}/types/Camera"), 404, "ResourceNotFound")


def test_counts_unchanged_by_value_updates(city: TestClient) -> None:
    for value in range(5):
        response = city.patch(f"{BASE}/entities/urn:ngsi-ld:Streetlight:0/attrs/illuminanceLevel",
                              json={"value": value})
        assert response.status_code == 204, response.text
    assert city.get(f"{BASE}/types/Streetlight").json()["entityCount"] == 3
    assert city.get(f"{BASE}/attributes/illuminanceLevel").json()["attributeCount"] == 3


def test_discovery_is_per_tenant(city: TestClient) -> None:
    headers = {"NGSILD-Tenant": "other"}
    create(city, [{"id": "urn:ngsi-ld:Bus:1", "type": "Bus", "speed": prop(30)}], headers)
    assert city.get(f"{BASE}/types", headers=headers).json()["typeList"] == ["Bus"]
    assert "Bus" not in city.get(f"{BASE}/types").json()["typeList"]
    assert city.get(f"{BASE}/attributes", headers=headers).json()["attributeList"] == ["speed"]


# ---------------------------------------------------------------- compaction


@pytest.fixture
def user_context(client: TestClient) -> str:
    response = client.post(f"{BASE}/jsonldContexts", json=USER_CONTEXT)
    assert response.status_code == 201, response.text
    return response.headers["location"]


def test_compaction_with_and_without_a_link_context(client: TestClient, user_context: str) -> None:
    create(client, [{"id": "urn:ngsi-ld:Lamp:1", "type": "Lamp", "brightness": prop(80)},
                    {"id": "urn:ngsi-ld:Bin:1", "type": "Bin", "fill": prop(0.2)}],
           link(user_context))
    with_link = client.get(f"{BASE}/types", headers=link(user_context))
    assert with_link.status_code == 200
    assert sorted(with_link.json()["typeList"]) == ["Bin", "Lamp"]
    assert user_context in with_link.headers["link"]
    without = client.get(f"{BASE}/types").json()
    assert sorted(without["typeList"]) == [EX + "Bin", EX + "Lamp"]

    details = client.get(f"{BASE}/types", params={"details": "true"}, headers=link(user_context))
    lamp = {t["typeName"]: t for t in details.json()}["Lamp"]
    assert lamp["id"] == EX + "Lamp"
    assert lamp["attributeNames"] == ["brightness"]

    info = client.get(f"{BASE}/types/Lamp", headers=link(user_context)).json()
    assert info["typeName"] == "Lamp"
    assert info["attributeDetails"][0]["attributeName"] == "brightness"
    assert info["attributeDetails"][0]["id"] == EX + "brightness"
    # without the context, "Lamp" is another type (default vocabulary), and so unknown
    problem(client.get(f"{BASE}/types/Lamp"), 404, "ResourceNotFound")
    assert client.get(f"{BASE}/types/" + quote(EX + "Lamp", safe="")).json()["typeName"] == EX + "Lamp"

    attributes = client.get(f"{BASE}/attributes", headers=link(user_context)).json()
    assert attributes["attributeList"] == ["brightness", "fill"]
    assert client.get(f"{BASE}/attributes").json()["attributeList"] == sorted(
        [EX + "brightness", EX + "fill"])
    attr = client.get(f"{BASE}/attributes/brightness", headers=link(user_context)).json()
    assert attr["typeNames"] == ["Lamp"]
    assert attr["attributeCount"] == 1
    problem(client.get(f"{BASE}/attributes/brightness"), 404, "ResourceNotFound")


def test_discovery_as_ld_json_carries_the_context(client: TestClient, user_context: str) -> None:
    create(client, [{"id": "urn:ngsi-ld:Lamp:1", "type": "Lamp", "brightness": prop(80)}],
           link(user_context))
    response = client.get(f"{BASE}/types", headers={**link(user_context),
                                                    "Accept": "application/ld+json"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/ld+json")
    body = response.json()
    assert body["@context"] == user_context
    assert body["typeList"] == ["Lamp"]


def test_discovery_with_an_unavailable_context_is_503(client: TestClient) -> None:
    response = client.get(f"{BASE}/types", headers=link("https://example.invalid/ctx.jsonld"))
    problem(response, 503, "LdContextNotAvailable")


def test_attribute_count_of_a_multi_typed_entity(client: TestClient) -> None:
    create(client, [{"id": "urn:ngsi-ld:Kiosk:1", "type": ["Kiosk", "Shop"], "open": prop(True)}])
    assert client.get(f"{BASE}/types/Kiosk").json()["entityCount"] == 1
    assert client.get(f"{BASE}/types/Shop").json()["entityCount"] == 1
    info = client.get(f"{BASE}/attributes/open").json()
    assert sorted(info["typeNames"]) == ["Kiosk", "Shop"]
    assert info["attributeCount"] == 1


def test_discovery_on_an_unknown_tenant_is_404_nonexistent_tenant(client: TestClient) -> None:
    headers = {"NGSILD-Tenant": "nowhere"}
    for path in ("/types", "/attributes", "/types/Thing", "/attributes/thing"):
        problem(client.get(BASE + path, headers=headers), 404, "NonexistentTenant")


def test_a_trailing_slash_names_the_lists(city: TestClient) -> None:
    """``/types/`` and ``/attributes/`` (an empty name) are the lists, not a type or an
    attribute named ''."""
    assert city.get(f"{BASE}/types/").json() == city.get(f"{BASE}/types").json()
    details = city.get(f"{BASE}/types/", params={"details": "true"})
    assert details.status_code == 200 and {t["typeName"] for t in details.json()} >= {"Camera"}
    assert city.get(f"{BASE}/attributes/").json() == city.get(f"{BASE}/attributes").json()


def test_an_undefined_query_parameter_is_invalid_request(city: TestClient) -> None:  # 6.3.20
    for path, params in ((f"{BASE}/attributes", {"limit": "5"}),
                         (f"{BASE}/attributes/powerState", {"details": "true"}),
                         (f"{BASE}/types", {"q": "a==1"}),
                         (f"{BASE}/types/Camera", {"details": "true"})):
        problem(city.get(path, params=params), 400, "InvalidRequest")
    for path, params in ((f"{BASE}/attributes", {"details": "true", "local": "true"}),
                         (f"{BASE}/attributes/powerState", {"local": "true"}),
                         (f"{BASE}/types/Camera", {"local": "false"})):
        assert city.get(path, params=params).status_code == 200
    problem(city.get(f"{BASE}/types", params={"local": "yes"}), 400, "BadRequestData")
