"""The Temporal API through HTTP (ETSI GS CIM 009 v1.8 clauses 5.6.11-5.6.16, 5.7.3-5.7.4)."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from support.backends import BACKENDS, client_on

from cityvisor.config import Settings

API = "/ngsi-ld/v1"
T = f"{API}/temporal/entities"
E1 = "urn:ngsi-ld:Sensor:1"
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def at(hours: float) -> str:
    return iso(T0 + timedelta(hours=hours))


def history(values: list[tuple[float, float]], name: str = "temp") -> dict[str, object]:
    return {"id": E1, "type": "Sensor", name: [
        {"type": "Property", "value": v, "observedAt": at(h)} for h, v in values]}


def services(client: TestClient) -> Any:
    """The app's Services."""
    app = client.app
    while not hasattr(app, "state"):  # SecurityHeaders -> LoopbackHostGuard -> Starlette
        app = app.app  # type: ignore[attr-defined]
    return app.state.services  # type: ignore[attr-defined]


# ------------------------------------------------------------------ recording from the core API


def test_recording_from_core_operations(client: TestClient) -> None:
    body = {"id": E1, "type": "Sensor",
            "temp": {"type": "Property", "value": 1, "observedAt": at(0)},
            "status": {"type": "Property", "value": "ok"}}
    assert client.post(f"{API}/entities", json=body).status_code == 201
    r = client.patch(f"{API}/entities/{E1}/attrs/temp", json={"value": 2, "observedAt": at(1)})
    assert r.status_code == 204
    r = client.post(f"{API}/entityOperations/upsert?options=update", json=[
        {"id": E1, "type": "Sensor", "temp": {"type": "Property", "value": 3,
                                             "observedAt": at(2)}}])
    assert r.status_code == 204
    r = client.patch(f"{API}/entities/{E1}", json={"temp": {"value": 4, "observedAt": at(3)},
                                                  "extra": {"type": "Property", "value": "x"}})
    assert r.status_code == 204
    # an unchanged attribute is not recorded again
    r = client.get(f"{T}/{E1}")
    assert r.status_code == 200
    data = r.json()
    assert [i["value"] for i in data["temp"]] == [1, 2, 3, 4]
    assert [i["value"] for i in data["status"]] == ["ok"]
    assert all(i["instanceId"].startswith("urn:ngsi-ld:instance:") for i in data["temp"])
    assert client.delete(f"{API}/entities/{E1}/attrs/extra").status_code == 204
    extra = client.get(f"{T}/{E1}", params={"attrs": "extra"}).json()["extra"]
    assert extra[0]["value"] == "x"
    assert extra[-1]["value"] == "urn:ngsi-ld:null" and "deletedAt" in extra[-1]
    assert client.delete(f"{API}/entities/{E1}").status_code == 204
    data = client.get(f"{T}/{E1}").json()  # the history outlives the entity
    assert data["temp"][-1]["value"] == "urn:ngsi-ld:null"
    assert data["status"][-1]["deletedAt"]
    # batch create, batch delete, multi-attributes with datasetId
    r = client.post(f"{API}/entityOperations/create", json=[
        {"id": "urn:ngsi-ld:Sensor:2", "type": "Sensor", "temp": [
            {"type": "Property", "value": 1},
            {"type": "Property", "value": 5, "datasetId": "urn:ngsi-ld:Dataset:b"}]}])
    assert r.status_code == 201
    r = client.patch(f"{API}/entities/urn:ngsi-ld:Sensor:2/attrs/temp",
                     json={"value": 6, "datasetId": "urn:ngsi-ld:Dataset:b"})
    assert r.status_code == 204
    temp = client.get(f"{T}/urn:ngsi-ld:Sensor:2").json()["temp"]
    assert [(i["value"], i.get("datasetId")) for i in temp] == [
        (1, None), (5, "urn:ngsi-ld:Dataset:b"), (6, "urn:ngsi-ld:Dataset:b")]
    values = client.get(f"{T}/urn:ngsi-ld:Sensor:2", params={
        "options": "temporalValues", "timeproperty": "modifiedAt"}).json()["temp"]
    assert len(values) == 2 and values[1]["datasetId"] == "urn:ngsi-ld:Dataset:b"
    assert [v[0] for v in values[1]["values"]] == [5, 6]
    r = client.post(f"{API}/entityOperations/delete", json=["urn:ngsi-ld:Sensor:2"])
    assert r.status_code == 204
    temp = client.get(f"{T}/urn:ngsi-ld:Sensor:2").json()["temp"]
    assert sum(1 for i in temp if "deletedAt" in i) == 2


# ------------------------------------------------------------------ temporal writes


def test_create_append_and_delete_temporal_representation(client: TestClient) -> None:
    r = client.post(T, json=history([(0, 1), (1, 2)]))
    assert r.status_code == 201
    assert r.headers["location"] == f"{T}/{E1}"
    assert client.post(T, json=history([(2, 3)])).status_code == 204
    r = client.post(f"{T}/{E1}/attrs", json={"humidity": [
        {"type": "Property", "value": 50, "observedAt": at(0)}]})
    assert r.status_code == 204
    data = client.get(f"{T}/{E1}").json()
    assert data["type"] == "Sensor"
    assert [i["value"] for i in data["temp"]] == [1, 2, 3]
    assert data["humidity"][0]["value"] == 50
    # modify and delete one instance
    first = data["temp"][0]["instanceId"]
    r = client.patch(f"{T}/{E1}/attrs/temp/{first}", json={"value": 10})
    assert r.status_code == 204
    temp = client.get(f"{T}/{E1}").json()["temp"]
    assert temp[0]["value"] == 10 and temp[0]["observedAt"] == at(0)
    assert client.delete(f"{T}/{E1}/attrs/temp/{first}").status_code == 204
    assert [i["value"] for i in client.get(f"{T}/{E1}").json()["temp"]] == [2, 3]
    assert client.delete(f"{T}/{E1}/attrs/temp/{first}").status_code == 404
    assert client.patch(f"{T}/{E1}/attrs/temp/{first}", json={"value": 1}).status_code == 404
    assert client.patch(f"{T}/{E1}/attrs/temp/urn:x:1", json={"value": 1}).status_code == 404
    assert client.delete(f"{T}/{E1}/attrs/temp/not-a-uri").status_code == 400
    # delete an attribute's history, then the whole entity
    assert client.delete(f"{T}/{E1}/attrs/humidity").status_code == 204
    assert "humidity" not in client.get(f"{T}/{E1}").json()
    assert client.delete(f"{T}/{E1}/attrs/humidity").status_code == 404
    assert client.delete(f"{T}/{E1}").status_code == 204
    assert client.get(f"{T}/{E1}").status_code == 404
    assert client.delete(f"{T}/{E1}").status_code == 404


def test_delete_attribute_history_by_dataset(client: TestClient) -> None:
    body = {"id": E1, "type": "Sensor", "temp": [
        {"type": "Property", "value": 1, "observedAt": at(0)},
        {"type": "Property", "value": 2, "observedAt": at(1), "datasetId": "urn:ngsi-ld:D:a"},
        {"type": "Property", "value": 3, "observedAt": at(2), "datasetId": "urn:ngsi-ld:D:b"}]}
    assert client.post(T, json=body).status_code == 201
    r = client.delete(f"{T}/{E1}/attrs/temp", params={"datasetId": "urn:ngsi-ld:D:a"})
    assert r.status_code == 204
    assert [i["value"] for i in client.get(f"{T}/{E1}").json()["temp"]] == [1, 3]
    assert client.delete(f"{T}/{E1}/attrs/temp").status_code == 204  # the default instance
    assert [i["value"] for i in client.get(f"{T}/{E1}").json()["temp"]] == [3]
    assert client.delete(f"{T}/{E1}/attrs/temp", params={"deleteAll": "true"}).status_code == 204
    assert "temp" not in client.get(f"{T}/{E1}").json()


def test_write_errors(client: TestClient) -> None:
    assert client.post(T, json={"type": "Sensor"}).status_code == 400
    assert client.post(T, json={"id": E1}).status_code == 400
    assert client.post(T, json=[1]).status_code == 400
    assert client.post(T, json={"id": E1, "type": "S", "a": []}).status_code == 400
    assert client.post(T, json={"id": E1, "type": "S", "a": [{"type": "Property"}]}).status_code == 400
    assert client.post(f"{T}/{E1}/attrs", json={"a": {"value": 1}}).status_code == 404
    assert client.post(T, json=history([(0, 1)])).status_code == 201
    assert client.post(f"{T}/{E1}/attrs", json={}).status_code == 400
    assert client.post(f"{T}/{E1}/attrs", json={"id": "urn:x:other"}).status_code == 400
    assert client.delete(f"{T}/urn:ngsi-ld:Sensor:404/attrs/temp").status_code == 404
    r = client.delete(f"{T}/{E1}", headers={"NGSILD-Tenant": "nobody"})
    assert r.status_code == 404 and r.json()["type"].endswith("NonexistentTenant")


# ------------------------------------------------------------------ temporal queries


@pytest.fixture
def series(client: TestClient) -> TestClient:
    """temp observed every hour of 2024-01-01, values 0..9."""
    assert client.post(T, json=history([(h, h) for h in range(10)])).status_code == 201
    return client


def values(client: TestClient, **params: object) -> list[object]:
    r = client.get(f"{T}/{E1}", params={"options": "temporalValues", **params})
    assert r.status_code == 200, r.text
    temp = r.json().get("temp")
    return [v[0] for v in temp["values"]] if temp else []


def test_timerel_observed_at(series: TestClient) -> None:
    assert values(series) == list(range(10))
    assert values(series, timerel="before", timeAt=at(3)) == [0, 1, 2]
    assert values(series, timerel="after", timeAt=at(7)) == [8, 9]
    assert values(series, timerel="between", timeAt=at(2), endTimeAt=at(5)) == [2, 3, 4]
    assert values(series, timerel="after", timeAt="2024-01-01T08:30:00+01:00") == [8, 9]
    assert values(series, timerel="after", timeAt=at(9)) == []


def test_timerel_created_and_modified_at(client: TestClient) -> None:
    assert client.post(f"{API}/entities", json={
        "id": E1, "type": "Sensor", "temp": {"type": "Property", "value": 0}}).status_code == 201
    for value in (1, 2):
        client.patch(f"{API}/entities/{E1}/attrs/temp", json={"value": value})
    data = client.get(f"{T}/{E1}", params={"options": "sysAttrs"}).json()["temp"]
    modified = [i["modifiedAt"] for i in data]
    assert len(set(modified)) == 3
    assert values(client, timeproperty="modifiedAt", timerel="after", timeAt=modified[0]) == [1, 2]
    assert values(client, timeproperty="modifiedAt", timerel="before", timeAt=modified[2]) == [0, 1]
    created = data[0]["createdAt"]  # the attribute's creation time, kept by every version
    assert values(client, timeproperty="createdAt", timerel="between", timeAt=created,
                  endTimeAt="2999-01-01T00:00:00Z") == [0, 1, 2]
    assert values(client, timeproperty="createdAt", timerel="after", timeAt=created) == []
    # observedAt falls back to modifiedAt for instances without observedAt
    assert values(client, timerel="after", timeAt=modified[1]) == [2]


def test_last_n(series: TestClient) -> None:
    assert values(series, lastN=3) == [7, 8, 9]
    assert values(series, lastN=2, timerel="before", timeAt=at(5)) == [3, 4]
    normalized = series.get(f"{T}/{E1}", params={"lastN": 1}).json()["temp"]
    assert [i["value"] for i in normalized] == [9]
    assert values(series, lastN=100) == list(range(10))


def test_representations_and_contexts(series: TestClient) -> None:
    r = series.get(f"{T}/{E1}", headers={"Accept": "application/ld+json"})
    assert r.headers["content-type"].startswith("application/ld+json")
    assert "@context" in r.json()
    r = series.get(f"{T}/{E1}")
    assert "rel=" in r.headers["link"]
    context = {"temperature": "https://uri.etsi.org/ngsi-ld/default-context/temp"}
    r = series.post(f"{API}/jsonldContexts", json={"@context": context})
    assert r.status_code == 201
    url = r.headers["location"]
    link = f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
    data = series.get(f"{T}/{E1}", headers={"Link": link}).json()
    assert "temperature" in data and "temp" not in data
    data = series.get(f"{T}/{E1}", params={"attrs": "temperature"}, headers={"Link": link}).json()
    assert len(data["temperature"]) == 10


def test_query_temporal_entities(client: TestClient) -> None:
    for n in range(1, 4):
        r = client.post(f"{API}/entities", json={
            "id": f"urn:ngsi-ld:Sensor:{n}", "type": "Sensor",
            "temp": {"type": "Property", "value": n, "observedAt": at(0)},
            "location": {"type": "GeoProperty",
                         "value": {"type": "Point", "coordinates": [4.36 + n / 100, 43.84]}}})
        assert r.status_code == 201
        client.patch(f"{API}/entities/urn:ngsi-ld:Sensor:{n}/attrs/temp",
                     json={"value": n * 10, "observedAt": at(1)})
    client.post(f"{API}/entities", json={"id": "urn:ngsi-ld:Other:1", "type": "Other",
                                          "temp": {"type": "Property", "value": 0}})
    r = client.get(T, params={"type": "Sensor", "count": "true", "limit": 2})
    assert r.status_code == 200 and r.headers["ngsild-results-count"] == "3"
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Sensor:1", "urn:ngsi-ld:Sensor:2"]
    r = client.get(T, params={"type": "Sensor", "limit": 2, "offset": 2})
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Sensor:3"]
    r = client.get(T, params={"idPattern": ".*Other.*", "type": "Sensor,Other"})
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Other:1"]
    # clause 5.7.4.4 (as 5.7.2.4): ids or an id pattern alone are too wide a query
    for params in ({"idPattern": ".*Other.*"}, {"id": "urn:ngsi-ld:Sensor:2"}):
        r = client.get(T, params=params)
        assert r.status_code == 400 and "Too wide" in r.json()["detail"]
    r = client.get(T, params={"type": "Sensor,Other", "attrs": "temp", "lastN": 1})
    assert len(r.json()) == 4
    r = client.get(T, params={"id": "urn:ngsi-ld:Sensor:2,urn:ngsi-ld:Sensor:3",
                              "type": "Sensor", "timerel": "after", "timeAt": at(0.5),
                              "options": "temporalValues"})
    assert [e["temp"]["values"][0][0] for e in r.json()] == [20, 30]
    # q on the instances of the time window (here the whole history)
    r = client.get(T, params={"type": "Sensor", "q": "temp>15"})
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Sensor:2", "urn:ngsi-ld:Sensor:3"]
    assert len(r.json()[0]["temp"]) == 2
    r = client.get(T, params={"type": "Sensor", "georel": "near;maxDistance==500",
                              "geometry": "Point", "coordinates": "[4.37,43.84]",
                              "attrs": "temp"})
    assert [e["id"] for e in r.json()] == ["urn:ngsi-ld:Sensor:1"]
    # POST query with temporalQ
    r = client.post(f"{API}/temporal/entityOperations/query", json={
        "type": "Query", "entities": [{"type": "Sensor"}], "attrs": ["temp"],
        "temporalQ": {"timerel": "before", "timeAt": at(0.5)}},
        params={"options": "temporalValues", "count": "true"})
    assert r.status_code == 200 and r.headers["ngsild-results-count"] == "3"
    assert [e["temp"]["values"] for e in r.json()][0] == [[1, "2024-01-01T00:00:00Z"]]
    r = client.post(f"{API}/temporal/entityOperations/query", json={
        "type": "Query", "entities": [{"id": "urn:ngsi-ld:Sensor:1", "type": "Sensor"}],
        "temporalQ": {"lastN": 1}})
    assert [i["value"] for i in r.json()[0]["temp"]] == [10]
    for bad in ({"type": "Nope"}, {"entities": {}}, {"temporalQ": []}, {"attrs": "temp"},
                {"entities": [{"type": "Sensor"}], "temporalQ": {"timerel": "during"}},
                {"entities": [{"type": "Sensor"}], "temporalQ": {"lastN": 0}}, []):
        r = client.post(f"{API}/temporal/entityOperations/query", json=bad)
        assert r.status_code == 400, (bad, r.text)


@pytest.mark.parametrize(("params", "word"), [
    ({"timerel": "during", "timeAt": at(0)}, "timerel"),
    ({"timerel": "before"}, "timeAt"),
    ({"timeAt": at(0)}, "timerel"),
    ({"timerel": "between", "timeAt": at(0)}, "endTimeAt"),
    ({"timerel": "between", "timeAt": at(2), "endTimeAt": at(1)}, "after"),
    ({"timerel": "after", "timeAt": "yesterday"}, "timeAt"),
    ({"timeproperty": "expiredAt"}, "timeproperty"),
    ({"lastN": "0"}, "lastN"),
    ({"lastN": "x"}, "lastN"),
    ({"options": "aggregatedValues"}, "aggrMethods"),
    ({"options": "aggregatedValues", "aggrMethods": "median"}, "median"),
    ({"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "1H"}, "duration"),
    ({"options": "aggregatedValues", "aggrMethods": "avg", "aggrPeriodDuration": "P1MT1H"}, "mixes"),
    ({"options": "temporalValues,aggregatedValues"}, "only one"),
    ({"options": "bogus"}, "bogus"),
    ({"aggrMethods": "avg"}, "aggregatedValues"),
])
def test_query_validation(series: TestClient, params: dict[str, str], word: str) -> None:
    for url, extra in ((f"{T}/{E1}", {}), (T, {"type": "Sensor"})):
        r = series.get(url, params={**params, **extra})
        assert r.status_code == 400, r.text
        assert r.json()["type"].endswith("BadRequestData")
        assert word in r.json()["detail"]


def test_read_errors(series: TestClient) -> None:
    assert series.get(f"{T}/urn:ngsi-ld:Sensor:404").status_code == 404
    assert series.get(f"{T}/not-a-uri").status_code == 400
    assert series.get(T).status_code == 400  # no filter at all
    assert series.get(T, params={"type": "Sensor", "limit": "5000"}).status_code == 400
    assert series.get(T, params={"type": "Sensor", "csf": "))x(("}).status_code == 400
    assert series.get(T, params={"type": "Sensor", "csf": "x"}).status_code == 200
    r = series.get(T, params={"type": "Sensor"}, headers={"NGSILD-Tenant": "nobody"})
    assert r.status_code == 404
    assert series.get(T, params={"type": "Sensor", "q": "temp>"}).status_code == 400


def test_tenants_are_isolated(client: TestClient) -> None:
    assert client.post(T, json=history([(0, 1)]), headers={"NGSILD-Tenant": "a"}).status_code == 201
    assert client.post(T, json=history([(0, 2), (1, 3)]),
                       headers={"NGSILD-Tenant": "b"}).status_code == 201
    a = client.get(f"{T}/{E1}", headers={"NGSILD-Tenant": "a"}).json()
    b = client.get(f"{T}/{E1}", headers={"NGSILD-Tenant": "b"}).json()
    assert [i["value"] for i in a["temp"]] == [1]
    assert [i["value"] for i in b["temp"]] == [2, 3]
    assert client.get(f"{T}/{E1}").status_code == 404  # the default tenant has none


# ------------------------------------------------------------------ pagination (clause 6.3.10)


@pytest.fixture(params=BACKENDS)
def small_client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "data", auth=False, allow_context_fetch=False,
                        temporal_max_instances=25)
    with client_on(request.param, settings) as test_client:
        yield test_client


def test_pagination_of_long_histories(small_client: TestClient) -> None:
    client = small_client
    body = history([(h / 60, h) for h in range(60)])  # one per minute
    body["hum"] = [{"type": "Property", "value": h, "observedAt": at(h / 60)} for h in range(5)]
    assert client.post(T, json=body).status_code == 201
    r = client.get(f"{T}/{E1}", params={"timerel": "after", "timeAt": "2023-12-31T00:00:00Z"})
    assert r.status_code == 206
    first = r.json()["temp"]
    assert len(first) == 25
    end = "2024-01-01T00:24:00Z"
    assert r.headers["content-range"] == f"date-time 2023-12-31T00:00:00Z-{end}/*"
    assert len(r.json()["hum"]) == 5
    seen = [i["value"] for i in first]
    while r.status_code == 206:  # follow the pages
        end = r.headers["content-range"].split("-", 3)[3].rsplit("/", 1)[0]
        end = r.headers["content-range"][len("date-time "):].split("Z-")[1].split("/")[0]
        r = client.get(f"{T}/{E1}", params={"timerel": "after", "timeAt": end,
                                            "options": "temporalValues"})
        assert r.status_code in (200, 206)
        seen.extend(v[0] for v in r.json()["temp"]["values"])
    assert seen == list(range(60))
    # no timerel: the range starts at the first instance
    r = client.get(f"{T}/{E1}", params={"attrs": "temp"})
    assert r.status_code == 206
    assert r.headers["content-range"].startswith("date-time 2024-01-01T00:00:00Z-")
    # lastN larger than the limit: the most recent ones, the size is lastN
    r = client.get(f"{T}/{E1}", params={"lastN": 40, "attrs": "temp"})
    assert r.status_code == 206
    assert [i["value"] for i in r.json()["temp"]] == list(range(35, 60))
    assert r.headers["content-range"] == (
        "date-time 2024-01-01T00:59:00Z-2024-01-01T00:35:00Z/40")
    r = client.get(f"{T}/{E1}", params={"lastN": 10, "attrs": "temp"})
    assert r.status_code == 200 and "content-range" not in r.headers
    r = client.get(T, params={"type": "Sensor", "timerel": "before", "timeAt": at(2)})
    assert r.status_code == 206 and len(r.json()[0]["temp"]) == 25


# ------------------------------------------------------------------ aggregations


def _buckets(series: list[tuple[datetime, float]], start: datetime, period: timedelta
             ) -> dict[int, list[float]]:
    groups: dict[int, list[float]] = {}
    for moment, value in series:
        groups.setdefault((moment - start) // period, []).append(value)
    return groups


@pytest.mark.parametrize("period", ["PT1H", "PT15M", "P1D"])
def test_aggregations_match_python(client: TestClient, period: str) -> None:
    rng = random.Random(period)
    moments = sorted(T0 + timedelta(seconds=rng.randrange(0, 86400)) for _ in range(500))
    data = [(m, round(rng.uniform(-20, 40), 3)) for m in moments]
    data[3] = (data[3][0], 7)  # an integer value too
    body = {"id": E1, "type": "Sensor", "temp": [
        {"type": "Property", "value": v, "observedAt": iso(m)} for m, v in data]}
    assert client.post(T, json=body).status_code == 201
    methods = "totalCount,distinctCount,sum,avg,min,max,stddev,sumsq"
    start = T0 + timedelta(hours=2)
    end = T0 + timedelta(hours=20)
    r = client.get(f"{T}/{E1}", params={
        "options": "aggregatedValues", "aggrMethods": methods, "aggrPeriodDuration": period,
        "timerel": "between", "timeAt": iso(start), "endTimeAt": iso(end)})
    assert r.status_code == 200, r.text
    temp = r.json()["temp"]
    assert temp["type"] == "Property"
    step = {"PT1H": timedelta(hours=1), "PT15M": timedelta(minutes=15),
            "P1D": timedelta(days=1)}[period]
    groups = _buckets([(m, v) for m, v in data if start <= m < end], start, step)
    assert len(temp["avg"]) == len(groups)
    for index, (bucket, group) in enumerate(sorted(groups.items())):
        lo = start + bucket * step
        assert temp["avg"][index][1:] == [iso(lo), iso(lo + step)]
        expected = {"totalCount": len(group), "distinctCount": len(set(group)),
                    "sum": math.fsum(group), "avg": statistics.fmean(group), "min": min(group),
                    "max": max(group), "sumsq": math.fsum(v * v for v in group),
                    "stddev": statistics.stdev(group) if len(group) > 1 else None}
        for method, value in expected.items():
            got = temp[method][index][0]
            if value is None:
                assert got is None
            else:
                assert got == pytest.approx(value, rel=1e-9, abs=1e-9), (method, bucket)


def test_aggregation_whole_range_months_and_non_numbers(client: TestClient) -> None:
    body = {"id": E1, "type": "Sensor",
            "temp": [{"type": "Property", "value": v, "observedAt": iso(T0 + timedelta(days=d))}
                     for d, v in ((0, 1), (10, 2), (40, 4), (70, 8))],
            "state": [{"type": "Property", "value": s, "observedAt": at(h)}
                      for h, s in ((0, "on"), (1, "off"), (2, "on"))]}
    assert client.post(T, json=body).status_code == 201
    r = client.get(f"{T}/{E1}", params={"options": "aggregatedValues",
                                        "aggrMethods": "sum,totalCount,distinctCount,max"})
    data = r.json()
    assert data["temp"]["sum"] == [[15.0, "2024-01-01T00:00:00Z",
                                     "2024-03-11T00:00:00Z"]]
    assert data["state"]["totalCount"][0][0] == 3
    assert data["state"]["distinctCount"][0][0] == 2
    assert data["state"]["max"][0][0] is None  # numeric methods ignore strings
    r = client.get(f"{T}/{E1}", params={"options": "aggregatedValues", "aggrMethods": "sum",
                                        "aggrPeriodDuration": "P1M", "attrs": "temp"})
    assert r.json()["temp"]["sum"] == [
        [3.0, "2024-01-01T00:00:00Z", "2024-02-01T00:00:00Z"],
        [4.0, "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"],
        [8.0, "2024-03-01T00:00:00Z", "2024-04-01T00:00:00Z"]]
    r = client.get(T, params={"type": "Sensor", "options": "aggregatedValues",
                              "aggrMethods": "avg", "aggrPeriodDuration": "PT0S",
                              "timerel": "before", "timeAt": at(1.5), "attrs": "temp"})
    assert r.json()[0]["temp"]["avg"] == [[1.0, "2024-01-01T00:00:00Z",
                                           "2024-01-01T01:30:00Z"]]


# ------------------------------------------------------------------ retention


def test_retention_purge_with_an_injected_clock(client: TestClient) -> None:
    body = {"id": E1, "type": "Sensor",
            "temp": [{"type": "Property", "value": d, "observedAt": iso(T0 + timedelta(days=d))}
                     for d in range(10)],
            "hum": [{"type": "Property", "value": d, "observedAt": iso(T0 + timedelta(days=d))}
                    for d in range(10)]}
    for tenant in ("a", "b"):
        assert client.post(T, json=body, headers={"NGSILD-Tenant": tenant}).status_code == 201
    svc = services(client)
    client.portal.call(svc.store.set_retention, "a", "", 5)
    client.portal.call(svc.store.set_retention, "a",
                       "https://uri.etsi.org/ngsi-ld/default-context/hum", 2)
    now = T0 + timedelta(days=10)
    deleted = client.portal.call(svc.temporal.purge, now)  # type: ignore[union-attr]
    assert deleted == 5 + 8
    a = client.get(f"{T}/{E1}", headers={"NGSILD-Tenant": "a"}).json()
    assert [i["value"] for i in a["temp"]] == [5, 6, 7, 8, 9]
    assert [i["value"] for i in a["hum"]] == [8, 9]
    b = client.get(f"{T}/{E1}", headers={"NGSILD-Tenant": "b"}).json()
    assert len(b["temp"]) == 10  # no retention in tenant b
    svc.temporal.retention_days = 1  # the global default
    assert client.portal.call(svc.temporal.purge, now) == 18  # type: ignore[union-attr]
    assert client.portal.call(svc.temporal.purge, now) == 0  # type: ignore[union-attr]
