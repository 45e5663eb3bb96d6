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


def vehicle(name: str, **attrs: list[tuple[Any, str]]) -> dict[str, Any]:
    body: dict[str, Any] = {"id": f"urn:ngsi-ld:Vehicle:{name}", "type": "Vehicle"}
    for attr, instances in attrs.items():
        body[attr] = [{"type": "Property", "value": v, "observedAt": t} for v, t in instances]
    return body


@pytest.fixture
def fleet(client: TestClient) -> TestClient:
    for body in (
            vehicle("fast", speed=[(30, IN), (90, OUT)], heading=[(45, IN)]),
            vehicle("slow", speed=[(10, IN), (80, OUT)], heading=[(170, IN)]),
            vehicle("nowin", speed=[(99, OUT)])):
        assert client.post(T, json=body).status_code == 201
    return client


def ids(client: TestClient, **params: object) -> list[str]:
    r = client.get(T, params={"type": "Vehicle", **WINDOW, **params})
    assert r.status_code == 200, r.text
    return [e["id"].rsplit(":", 1)[1] for e in r.json()]


@pytest.mark.parametrize(("q", "expected"), [
    ("speed>25", ["fast"]),                    # slow's 80 and nowin's 99 are out of the window
    ("speed>=5;heading<90", ["fast"]),
    ("speed>25|heading>100", ["fast", "slow"]),
    ("!heading", ["nowin"]),                   # nowin has no instance in the window
    ("speed==10..40", ["fast", "slow"]),
    ("speed", ["fast", "slow"]),
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
