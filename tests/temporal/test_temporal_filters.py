"""Filters of temporal queries: q and geo-queries judged on the instances of the temporal
window (ETSI GS CIM 009 v1.8 clause 5.7.4.4)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

API = "/ngsi-ld/v1"
T = f"{API}/temporal/entities"
IN = "2026-03-01T12:00:00Z"
OUT = "2026-01-05T00:00:00Z"
WINDOW = {"timerel": "between", "timeAt": "2026-03-01T00:00:00Z",
          "endTimeAt": "2026-03-02T00:00:00Z"}


def vehicle(key: str, **attrs: list[tuple[Any, str]]) -> dict[str, Any]:
    body: dict[str, Any] = {"id": f"urn:ngsi-ld:Vehicle:{key}", "type": "Vehicle"}
    for attr, instances in attrs.items():
        body[attr] = [{"type": "Property", "value": v, "observedAt": t} for v, t in instances]
    return body


@pytest.fixture
def fleet(client: TestClient) -> TestClient:
    for body in (
            vehicle("fast", speed=[(30, IN), (90, OUT)], heading=[(45, IN)]),
            vehicle("slow", speed=[(10, IN), (80, OUT)], heading=[(170, IN)]),
            vehicle("nowin", speed=[(99, OUT)]),
            vehicle("still", speed=[(0, IN)])):
        assert client.post(T, json=body).status_code == 201
    return client


def ids(client: TestClient, **params: object) -> list[str]:
    r = client.get(T, params={"type": "Vehicle", **WINDOW, **params})
    assert r.status_code == 200, r.text
    return [e["id"].rsplit(":", 1)[1] for e in r.json()]


@pytest.mark.parametrize(("q", "expected"), [
    ("speed>25", ["fast"]),                    # slow's 80 and nowin's 99 are out of the window
    ("speed>=5;heading<90", ["fast"]),
    ("!heading;speed<5", ["still"]),
    ("speed>25|heading>100", ["fast", "slow"]),
    ("!heading", ["still"]),                   # nowin has no instance in the window at all
    ("speed==0..40", ["fast", "slow", "still"]),
    ("speed", ["fast", "slow", "still"]),
])
def test_q_is_judged_on_the_windowed_instances(fleet: TestClient, q: str,
                                               expected: list[str]) -> None:
    assert ids(fleet, q=q) == expected


def test_the_answer_holds_only_windowed_instances_and_pages_over_matches(
        fleet: TestClient) -> None:
    r = fleet.get(T, params={"type": "Vehicle", "q": "speed>=5", **WINDOW, "limit": 1,
                             "count": "true"})
    assert r.headers["NGSILD-Results-Count"] == "2"
    [entity] = r.json()
    assert entity["id"].endswith(":fast")
    assert [i["value"] for i in entity["speed"]] == [30]
    r = fleet.get(T, params={"type": "Vehicle", "q": "speed>=5", **WINDOW, "offset": 1})
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Vehicle:slow"]


def test_q_without_a_time_window_looks_at_the_whole_history(fleet: TestClient) -> None:
    r = fleet.get(T, params={"type": "Vehicle", "q": "speed>85"})
    assert [e["id"].rsplit(":", 1)[1] for e in r.json()] == ["fast", "nowin"]


def test_an_entity_known_only_to_the_temporal_api_matches_q(fleet: TestClient) -> None:
    assert fleet.get(f"{API}/entities/urn:ngsi-ld:Vehicle:fast").status_code == 404
    assert ids(fleet, q="heading==45") == ["fast"]


def test_geo_query_is_judged_on_the_windowed_positions(client: TestClient) -> None:
    def located(name: str, *positions: tuple[list[float], str]) -> dict[str, Any]:
        return {"id": f"urn:ngsi-ld:Vehicle:{name}", "type": "Vehicle", "location": [
            {"type": "GeoProperty", "value": {"type": "Point", "coordinates": c},
             "observedAt": t} for c, t in positions]}

    for body in (located("geoin", ([17.1001, 48.1001], IN)),
                 located("geoout", ([10.0, 40.0], IN), ([17.1, 48.1], OUT))):
        assert client.post(T, json=body).status_code == 201
    near = {"georel": "near;maxDistance==1000", "geometry": "Point",
            "coordinates": "[17.1,48.1]"}
    assert ids(client, **near) == ["geoin"]
    r = client.get(T, params={"type": "Vehicle", **near})  # no window: every position counts
    assert len(r.json()) == 2


# ------------------------------------------------------------------ simplified representation


def test_temporal_values_show_whole_seconds_without_fraction_and_wrap_language_maps(
        client: TestClient) -> None:
    body = {"id": "urn:ngsi-ld:Vehicle:lang", "type": "Vehicle",
            "street": [{"type": "LanguageProperty", "languageMap": {"fr": "Grand Place"},
                        "observedAt": IN}],
            "speed": [{"type": "Property", "value": 1, "observedAt": "2026-03-01T12:00:00.25Z"}]}
    assert client.post(T, json=body).status_code == 201
    r = client.get(f"{T}/urn:ngsi-ld:Vehicle:lang", params={"options": "temporalValues"})
    assert r.json()["street"] == {"type": "LanguageProperty", "languageMaps": [
        [{"languageMap": {"fr": "Grand Place"}}, IN]]}
    assert r.json()["speed"]["values"] == [[1, "2026-03-01T12:00:00.250000Z"]]


# ------------------------------------------------------------------ POST query: aggregation

QUERY = f"{API}/temporal/entityOperations/query"


@pytest.mark.parametrize("body", [
    {"aggrParams": {"aggrMethods": ["avg"], "aggrPeriodDuration": "PT0S"}},
    {"temporalQ": {"timerel": "after", "timeAt": "2026-01-01T00:00:00Z", "aggrMethods": ["avg", "max"]}},
    {"temporalQ": {"timerel": "after", "timeAt": "2026-01-01T00:00:00Z", "aggrMethods": "avg,max"}},
])
def test_aggregation_asked_in_the_query_body(fleet: TestClient, body: dict[str, Any]) -> None:
    r = fleet.post(QUERY, json={"type": "Query", "entities": [
        {"id": "urn:ngsi-ld:Vehicle:fast", "type": "Vehicle"}], **body})
    assert r.status_code == 200, r.text
    assert r.json()[0]["speed"]["avg"][0][0] == 60.0
    assert "instanceId" not in r.text


@pytest.mark.parametrize(("body", "word"), [
    ({"aggrParams": {"aggrMethods": ["bogus"]}}, "aggrMethods"),
    ({"aggrParams": {"aggrMethods": ["avg"], "aggrPeriodDuration": "bogus"}},
     "aggrPeriodDuration"),
    ({"temporalQ": {"aggrMethods": ["avg"], "aggrPeriodDuration": "bogus"}},
     "aggrPeriodDuration"),
    ({"aggrParams": ["avg"]}, "aggrParams"),
    ({"temporalQ": {"lastN": 2.5}}, "lastN"),
    ({"temporalQ": {"lastN": 2.0}}, "lastN"),
])
def test_bad_aggregation_or_last_n_in_the_query_body(fleet: TestClient, body: dict[str, Any],
                                                     word: str) -> None:
    r = fleet.post(QUERY, json={"type": "Query", "entities": [{"type": "Vehicle"}], **body})
    assert r.status_code == 400 and word in r.text, r.text


# ------------------------------------------------------------------ GET query parameters


def test_entities_without_instances_in_the_window_are_left_out(fleet: TestClient) -> None:
    assert ids(fleet) == ["fast", "slow", "still"]  # nowin has only January instances
    assert ids(fleet, attrs="heading") == ["fast", "slow"]


def test_format_takes_precedence_over_options(fleet: TestClient) -> None:
    r = fleet.get(T, params={"id": "urn:ngsi-ld:Vehicle:fast", **WINDOW, "attrs": "speed",
                             "format": "temporalValues", "options": "aggregatedValues",
                             "aggrMethods": "sum"})
    assert r.status_code == 200, r.text
    assert r.json()[0]["speed"] == {"type": "Property", "values": [[30, IN]]}
    r = fleet.get(T, params={"type": "Vehicle", "format": "keyValues"})
    assert r.status_code == 400 and "format" in r.text


def test_dataset_id_filter(client: TestClient) -> None:
    body = {"id": "urn:ngsi-ld:Vehicle:multi", "type": "Vehicle",
            "speed": [{"type": "Property", "value": 1, "observedAt": IN},
                      {"type": "Property", "value": 2, "observedAt": IN,
                       "datasetId": "urn:ngsi-ld:Dataset:a"}],
            "fuel": [{"type": "Property", "value": 3, "observedAt": IN,
                      "datasetId": "urn:ngsi-ld:Dataset:b"}]}
    assert client.post(T, json=body).status_code == 201

    def speed_and_fuel(**params: str) -> Any:
        r = client.get(T, params={"type": "Vehicle", "options": "temporalValues", **params})
        assert r.status_code == 200, r.text
        return [{k: v for k, v in e.items() if k not in ("id", "type")} for e in r.json()]

    [only_a] = speed_and_fuel(datasetId="urn:ngsi-ld:Dataset:a")
    assert only_a == {"speed": {"type": "Property", "datasetId": "urn:ngsi-ld:Dataset:a",
                                "values": [[2, IN]]}}
    [default] = speed_and_fuel(datasetId="@none")
    assert default == {"speed": {"type": "Property", "values": [[1, IN]]}}
    [both] = speed_and_fuel(datasetId="@none,urn:ngsi-ld:Dataset:b")
    assert set(both) == {"speed", "fuel"}
    assert speed_and_fuel(datasetId="urn:ngsi-ld:Dataset:b", attrs="speed") == []
    r = client.get(T, params={"type": "Vehicle", "datasetId": "not a uri"})
    assert r.status_code == 400


@pytest.mark.parametrize(("order", "expected"), [
    ("id", ["fast", "slow", "still"]), ("id;asc", ["fast", "slow", "still"]),
    ("id;desc", ["still", "slow", "fast"])])
def test_order_by_id(fleet: TestClient, order: str, expected: list[str]) -> None:
    assert ids(fleet, orderBy=order) == expected
    assert ids(fleet, orderBy=order, limit=1, offset=1) == expected[1:2]


@pytest.mark.parametrize("order", ["name", "createdAt", "name.sub", "id,name", "id;up"])
def test_order_by_other_than_id_is_rejected(fleet: TestClient, order: str) -> None:
    r = fleet.get(T, params={"type": "Vehicle", **WINDOW, "orderBy": order})
    assert r.status_code == 400 and r.json()["type"].endswith("BadRequestData")


def test_attrs_naming_only_entity_members_is_rejected(fleet: TestClient) -> None:
    r = fleet.get(T, params={**WINDOW, "attrs": "createdAt"})
    assert r.status_code == 400 and r.json()["type"].endswith("BadRequestData")


def test_retrieve_of_attributes_without_history_is_not_found(fleet: TestClient) -> None:
    url = f"{T}/urn:ngsi-ld:Vehicle:fast"
    assert fleet.get(url, params={"attrs": "unknown"}).status_code == 404
    r = fleet.get(url, params={"attrs": "unknown,heading"})
    assert r.status_code == 200 and "heading" in r.json()


@pytest.fixture
def typed(client: TestClient) -> TestClient:
    bodies = [
        vehicle("num", name=[(5, IN)], speed=[(30, IN)]),
        vehicle("m", name=[("m", IN)]),
        vehicle("z", name=[("z", IN)], tags=[(["a", "b"], IN)]),
        {"id": "urn:ngsi-ld:Vehicle:rel", "type": "Vehicle", "ref": [
            {"type": "Relationship", "object": "urn:dest:A", "observedAt": IN}]},
        {"id": "urn:ngsi-ld:Vehicle:lang", "type": "Vehicle", "label": [
            {"type": "LanguageProperty", "languageMap": {"en": "red", "fr": "rouge"},
             "observedAt": IN}]},
    ]
    for body in bodies:
        assert client.post(T, json=body).status_code == 201
    return client


@pytest.mark.parametrize(("q", "expected"), [
    ('name!="m"', ["num", "z"]),              # another data type is unequal (clause 4.9)
    ('name!="m","z"', ["num"]),
    ('speed!="thirty"', ["num"]),
    ('tags!="a"', []), ('tags!="c"', ["z"]),  # an array is unequal when no element is equal
    ('ref>"urn:a"', []), ('ref=="urn:dest:A"', ["rel"]),  # a relationship has no order
    ('label[en]=="red"', ["lang"]), ('label[fr]=="red"', []), ('label[*]=="rouge"', ["lang"]),
])
def test_q_operators_on_the_windowed_instances(typed: TestClient, q: str,
                                               expected: list[str]) -> None:
    assert ids(typed, q=q) == expected
