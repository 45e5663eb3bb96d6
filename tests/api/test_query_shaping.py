"""HTTP tests of the Query Entities parameters that select and arrange the page: scopeQ
(clause 4.19), orderBy / orderFrom / collation (clause 4.23), page links (clause 4.12),
entity selectors of POST /entityOperations/query (clause 5.2.33) and geometryProperty."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

BASE = "/ngsi-ld/v1"
QUERY = f"{BASE}/entityOperations/query"


def place(key: str, name: str, lon: float, lat: float, scope: Any = None,
          **extra: Any) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "id": f"urn:ngsi-ld:Place:{key}", "type": "Place",
        "name": {"type": "Property", "value": name},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
        **extra}
    if scope is not None:
        entity["scope"] = scope
    return entity


PLACES = [
    place("b", "b", 9, 41, "/Nimes/Gare"),
    place("a", "A", 10, 45, ["/Nimes/Ecusson", "/Agency/Water"]),
    place("c", "á", 8.01, 40.01),
]


@pytest.fixture
def places(client: TestClient) -> TestClient:
    response = client.post(f"{BASE}/entityOperations/create", json=PLACES)
    assert response.status_code == 201, response.text
    return client


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [e["id"].rsplit(":", 1)[1] for e in response.json()]


def get(client: TestClient, **params: Any) -> Any:
    return client.get(f"{BASE}/entities", params={"type": "Place", **params})


def test_scope_q(places: TestClient) -> None:
    assert ids(get(places, scopeQ="/Nimes/#")) == ["b", "a"]
    assert ids(get(places, scopeQ="(/Nimes/Ecusson;/Agency/Water)|/Nimes/Gare")) == ["b", "a"]
    assert ids(get(places, scopeQ="(/Nimes/Ecusson;/Agency/Sewer)")) == []
    assert ids(get(places, scopeQ="/Nimes/+,/Nowhere")) == ["b", "a"]
    assert get(places, scopeQ="Nimes").status_code == 400


def test_scope_q_in_a_post_query(places: TestClient) -> None:
    response = places.post(QUERY, json={"type": "Query", "entities": [{"type": "Place"}],
                                        "scopeQ": "/Agency/#"})
    assert ids(response) == ["a"]


def test_order_by_and_collation(places: TestClient) -> None:
    assert ids(get(places, orderBy="name")) == ["a", "b", "c"]  # A b á: code points
    assert ids(get(places, orderBy="name", collation="und")) == ["a", "c", "b"]  # A á b
    assert ids(get(places, orderBy="name;desc")) == ["c", "b", "a"]
    assert ids(get(places, orderBy="location;dist-asc", orderFrom="[8,40]")) == ["c", "b", "a"]
    assert ids(get(places, orderBy="location;dist-desc", orderFrom="[8,40]")) == ["a", "b", "c"]
    assert ids(get(places, orderBy="id", limit=1, offset=1)) == ["b"]


@pytest.mark.parametrize("params", [
    {"orderBy": "location;dist-asc"}, {"orderBy": "name", "collation": "!!nope"},
    {"orderBy": "name;up"}, {"orderFrom": "[8,40]"},
])
def test_invalid_ordering_is_400(places: TestClient, params: dict[str, str]) -> None:
    response = get(places, **params)
    assert response.status_code == 400, response.text
    assert response.json()["type"].endswith("/BadRequestData")


def links(response: Any) -> dict[str, str]:
    found = {}
    for part in response.headers.get("link", "").split(", <"):
        if 'rel="prev"' in part or 'rel="next"' in part:
            url = part.lstrip("<").split(">", 1)[0]
            found["prev" if 'rel="prev"' in part else "next"] = url
    return found


def test_page_links(places: TestClient) -> None:
    first = get(places, idPattern="Place:.*", limit=1, offset=0, count="true")
    assert links(first) == {"next": f"{BASE}/entities?count=true&idPattern=Place:.*&limit=1"
                                    "&offset=1&type=Place"}
    middle = get(places, limit=1, offset=1)
    assert links(middle) == {"prev": f"{BASE}/entities?limit=1&offset=0&type=Place",
                             "next": f"{BASE}/entities?limit=1&offset=2&type=Place"}
    last = get(places, limit=2, offset=2)
    assert links(last) == {"prev": f"{BASE}/entities?limit=2&offset=0&type=Place"}
    assert links(get(places)) == {}
    assert links(get(places, limit=0, count="true")) == {}
    # the @context link stays
    assert 'rel="http://www.w3.org/ns/json-ld#context"' in middle.headers["link"]


def test_post_selectors_need_a_type_and_id_wins_over_id_pattern(places: TestClient) -> None:
    # clause 5.2.33: type is mandatory; "id takes precedence over idPattern"
    untyped = places.post(QUERY, json={"type": "Query",
                                       "entities": [{"id": "urn:ngsi-ld:Place:a"}]})
    assert untyped.status_code == 400, untyped.text
    both = places.post(QUERY, json={"type": "Query", "entities": [
        {"type": "Place", "id": "urn:ngsi-ld:Place:a", "idPattern": ":b$"}]})
    assert ids(both) == ["a"]


def test_post_query_in_geojson(places: TestClient) -> None:
    response = places.post(QUERY, json={"type": "Query", "entities": [{"type": "Place"}]},
                           headers={"Accept": "application/geo+json"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "FeatureCollection"
    assert [f["geometry"]["coordinates"] for f in body["features"]] == [[9, 41], [10, 45],
                                                                        [8.01, 40.01]]


def test_geometry_property_needs_geojson(places: TestClient) -> None:
    response = get(places, geometryProperty="location")
    assert response.status_code == 400, response.text
    response = places.get(f"{BASE}/entities", params={"type": "Place",
                                                      "geometryProperty": "location"},
                          headers={"Accept": "application/geo+json"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("name", ["\x00\x00", "x\x01y"])
def test_a_picked_name_with_a_control_character_is_400(places: TestClient, name: str) -> None:
    # the picked names select the entities as attrs does: they are checked as attrs are
    response = get(places, pick=name)
    assert response.status_code == 400, response.text
