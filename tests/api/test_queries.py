"""HTTP tests of Query Entities (clause 6.4.3.2, 6.23): id, idPattern, type expressions, attrs,
the q language, geo-queries, paging and counting, errors, and POST /entityOperations/query.

Sixty entities around Nîmes are created once per module; every expected result is computed
here from the Python list of entities, independently of the broker."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from cityvisor.api.app import create_app
from cityvisor.config import Settings
from cityvisor.services import Services

BASE = "/ngsi-ld/v1"
ERR = "https://uri.etsi.org/ngsi-ld/errors/"
KINDS = ["Streetlight", "Gauge", "Camera"]
STATUSES = ["on", "off", "broken", "maintenance"]
CITIES = ["Nîmes", "Milhaud", "Caissargues", "Marguerittes"]
CENTER = (4.36, 43.84)
N = 60


def lonlat(i: int) -> tuple[float, float]:
    """A 10 x 6 grid, ~400 m (lon) by ~555 m (lat) apart, around CENTER."""
    return (round(CENTER[0] + (i % 10 - 5) * 0.005, 6), round(CENTER[1] + (i // 10 - 3) * 0.005, 6))


def make_entity(i: int) -> dict[str, Any]:
    kind = KINDS[i % 3]
    lon, lat = lonlat(i)
    entity: dict[str, Any] = {
        "id": f"urn:ngsi-ld:{kind}:{i:03d}",
        "type": [kind, "Asset"] if i % 10 == 9 else kind,
        "name": {"type": "Property", "value": f"item-{i:02d}"},
        "status": {"type": "Property", "value": STATUSES[i % 4]},
        "active": {"type": "Property", "value": i % 2 == 0},
        "installed": {"type": "Property", "value": f"2024-01-{i % 28 + 1:02d}T12:00:00Z"},
        "refGroup": {"type": "Relationship", "object": f"urn:ngsi-ld:Group:{i % 5}"},
        "address": {"type": "Property", "value": {"city": CITIES[i % 4],
                                                  "geo": {"floor": i % 3}}},
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
    }
    if i % 11 != 10:
        entity["level"] = {"type": "Property", "value": i % 20,
                           "observedAt": f"2024-02-{i % 28 + 1:02d}T08:00:00Z",
                           "quality": {"type": "Property", "value": i % 3}}
    if i % 6 == 0:
        d = 0.001
        entity["area"] = {"type": "GeoProperty", "value": {"type": "Polygon", "coordinates": [[
            [lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d],
            [lon - d, lat - d]]]}}
    return entity


ENTITIES = [make_entity(i) for i in range(N)]
ALL_IDS = [e["id"] for e in ENTITIES]


def types_of(e: dict[str, Any]) -> list[str]:
    return e["type"] if isinstance(e["type"], list) else [e["type"]]


def val(e: dict[str, Any], name: str) -> Any:
    return e[name]["value"] if name in e else None


def ids_where(pred: Callable[[dict[str, Any]], bool]) -> set[str]:
    return {e["id"] for e in ENTITIES if pred(e)}


def haversine(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    r = 6371008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(math.sqrt(a))


def dist(e: dict[str, Any]) -> float:
    lon, lat = e["location"]["value"]["coordinates"]
    return haversine(CENTER[0], CENTER[1], lon, lat)


@pytest.fixture(scope="module")
def qclient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data: Path = tmp_path_factory.mktemp("queries")
    settings = Settings(data_dir=data, auth=False, allow_context_fetch=False)
    with TestClient(create_app(settings, build_services=Services.build), base_url="http://127.0.0.1:1026") as client:
        response = client.post(f"{BASE}/entityOperations/create", json=ENTITIES)
        assert response.status_code == 201, response.text
        assert sorted(response.json()) == sorted(ALL_IDS)
        yield client


def query(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    params.setdefault("limit", 1000)
    response = client.get(f"{BASE}/entities", params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def query_ids(client: TestClient, **params: Any) -> set[str]:
    found = [e["id"] for e in query(client, **params)]
    assert len(found) == len(set(found)), "duplicates in a query result"
    return set(found)


def assert_problem(response: Any, status: int = 400, type_name: str = "BadRequestData") -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == ERR + type_name
    assert body["detail"]
    return body["detail"]  # type: ignore[no-any-return]


# ------------------------------------------------------------------ sanity of the data set


def test_data_set_is_varied() -> None:
    assert len(ALL_IDS) == N == len(set(ALL_IDS))
    assert len(ids_where(lambda e: "Asset" in types_of(e))) == 6
    assert len(ids_where(lambda e: "level" not in e)) == 5
    assert len(ids_where(lambda e: "area" in e)) == 10


# ------------------------------------------------------------------ id, idPattern, type


def test_id_list(qclient: TestClient) -> None:
    wanted = [ALL_IDS[3], ALL_IDS[17], "urn:ngsi-ld:Gauge:999"]
    assert query_ids(qclient, id=",".join(wanted), local="true") == {ALL_IDS[3], ALL_IDS[17]}


@pytest.mark.parametrize("params", [
    {"id": ALL_IDS[3]}, {"idPattern": ".*"}, {"attrs": "createdAt"}, {"attrs": "id,type"},
    {"q": 'modifiedAt>"2020-01-01T00:00:00Z"'}, {"id": ALL_IDS[3], "local": "false"},
])
def test_too_wide_queries_are_400(qclient: TestClient, params: dict[str, str]) -> None:
    # clause 5.7.2.4: ids, an id pattern or system members alone do not narrow a query
    detail = assert_problem(qclient.get(f"{BASE}/entities", params=params))
    assert "Too wide" in detail or "q" in params  # (that q is refused by the grammar first)


def test_type_wildcard_selects_every_type_and_implies_local(qclient: TestClient) -> None:
    # Table 6.4.3.2-1: type "*" is every type; local is implicitly true, never false
    assert query_ids(qclient, type="*") == set(ALL_IDS)
    assert query_ids(qclient, type="*", local="true") == set(ALL_IDS)
    assert_problem(qclient.get(f"{BASE}/entities", params={"type": "*", "local": "false"}))


def test_a_valid_csf_restricts_nothing_and_an_invalid_one_is_400(qclient: TestClient) -> None:
    # clause 5.7.2.4: a syntactically invalid context source filter is BadRequestData
    assert query_ids(qclient, type="Gauge", csf="endpoint==\"x\"") == query_ids(qclient,
                                                                               type="Gauge")
    assert_problem(qclient.get(f"{BASE}/entities", params={"type": "Gauge", "csf": "))bad(("}))


def test_id_list_and_type(qclient: TestClient) -> None:
    wanted = ALL_IDS[:6]
    expected = {i for i in wanted if ":Gauge:" in i}
    assert query_ids(qclient, id=",".join(wanted), type="Gauge") == expected


def test_id_with_non_uri_is_400(qclient: TestClient) -> None:
    assert_problem(qclient.get(f"{BASE}/entities", params={"id": "abc"}))


def test_id_pattern(qclient: TestClient) -> None:
    expected = {i for i in ALL_IDS if i.startswith("urn:ngsi-ld:Gauge:0") and i[-2] in "012"}
    assert expected
    assert query_ids(qclient, idPattern="^urn:ngsi-ld:Gauge:0[0-2].$", type="Gauge") == expected


def test_id_pattern_bad_regex_is_400(qclient: TestClient) -> None:
    assert_problem(qclient.get(f"{BASE}/entities", params={"idPattern": "urn:(["}))


@pytest.mark.parametrize(("expression", "predicate"), [
    ("Gauge", lambda t: "Gauge" in t),
    ("Asset", lambda t: "Asset" in t),
    ("Gauge,Camera", lambda t: "Gauge" in t or "Camera" in t),
    ("Gauge|Camera", lambda t: "Gauge" in t or "Camera" in t),
    ("Camera;Asset", lambda t: "Camera" in t and "Asset" in t),
    ("(Gauge;Asset)|Streetlight", lambda t: ("Gauge" in t and "Asset" in t) or "Streetlight" in t),
    ("Streetlight;(Asset|Gauge)", lambda t: "Streetlight" in t and ("Asset" in t or "Gauge" in t)),
    ("Nothing", lambda t: False),
])
def test_type_expressions(qclient: TestClient, expression: str,
                          predicate: Callable[[list[str]], bool]) -> None:
    expected = ids_where(lambda e: predicate(types_of(e)))
    assert query_ids(qclient, type=expression) == expected


def test_multi_typed_entities_show_all_types(qclient: TestClient) -> None:
    found = query(qclient, type="Asset", attrs="name")
    assert found
    for entity in found:
        assert isinstance(entity["type"], list)
        assert "Asset" in entity["type"]


@pytest.mark.parametrize("expression", ["Gauge;", "(Gauge", "Gauge||Camera", "Ga uge", ""])
def test_bad_type_expression_is_400(qclient: TestClient, expression: str) -> None:
    assert_problem(qclient.get(f"{BASE}/entities", params={"type": expression}))


# ------------------------------------------------------------------ attrs


def test_attrs_selects_and_projects(qclient: TestClient) -> None:
    found = query(qclient, attrs="area")
    assert {e["id"] for e in found} == ids_where(lambda e: "area" in e)
    for entity in found:
        assert set(entity) == {"id", "type", "area"}


def test_attrs_with_type(qclient: TestClient) -> None:
    found = query(qclient, type="Gauge", attrs="level,area")
    expected = ids_where(lambda e: "Gauge" in types_of(e) and ("level" in e or "area" in e))
    assert {e["id"] for e in found} == expected
    for entity in found:
        assert set(entity) <= {"id", "type", "level", "area"}


# ------------------------------------------------------------------ q


def _in_range(e: dict[str, Any], low: float, high: float) -> bool:
    return "level" in e and low <= val(e, "level") <= high


Q_CASES: list[tuple[str, Callable[[dict[str, Any]], bool]]] = [
    ("level==5", lambda e: val(e, "level") == 5),
    ("level!=5", lambda e: "level" in e and val(e, "level") != 5),
    ("level>10", lambda e: "level" in e and val(e, "level") > 10),
    ("level<3", lambda e: "level" in e and val(e, "level") < 3),
    ("level>=18", lambda e: "level" in e and val(e, "level") >= 18),
    ("level<=1", lambda e: "level" in e and val(e, "level") <= 1),
    ("level==3..7", lambda e: _in_range(e, 3, 7)),
    ("level!=3..17", lambda e: "level" in e and not 3 <= val(e, "level") <= 17),
    ("level==1,5,9", lambda e: val(e, "level") in (1, 5, 9)),
    ('status=="on"', lambda e: val(e, "status") == "on"),
    ('status!="on"', lambda e: val(e, "status") != "on"),
    ('status=="on","broken"', lambda e: val(e, "status") in ("on", "broken")),
    ("name~=^item-1[0-4]$", lambda e: val(e, "name") in {f"item-1{d}" for d in range(5)}),
    ("name!~=^item-.0$", lambda e: not val(e, "name").endswith("0")),
    ("!level", lambda e: "level" not in e),
    ("level", lambda e: "level" in e),
    ("active==true", lambda e: val(e, "active") is True),
    ("active==false", lambda e: val(e, "active") is False),
    ('level>10;status=="on"', lambda e: _in_range(e, 11, 99) and val(e, "status") == "on"),
    ("level<3|level>17", lambda e: "level" in e and (val(e, "level") < 3 or val(e, "level") > 17)),
    ("(level<3|level>17);active==true",
     lambda e: "level" in e and (val(e, "level") < 3 or val(e, "level") > 17)
     and val(e, "active") is True),
    ("active==true;(level<3|!level)",
     lambda e: val(e, "active") is True and ("level" not in e or val(e, "level") < 3)),
    ("level.quality==2", lambda e: "level" in e and e["level"]["quality"]["value"] == 2),
    ("level.quality==0;level>15",
     lambda e: "level" in e and e["level"]["quality"]["value"] == 0 and val(e, "level") > 15),
    ("address[geo.floor]==1", lambda e: val(e, "address")["geo"]["floor"] == 1),
    ('address[city]=="Milhaud"', lambda e: val(e, "address")["city"] == "Milhaud"),
    ('refGroup=="urn:ngsi-ld:Group:2"', lambda e: e["refGroup"]["object"] == "urn:ngsi-ld:Group:2"),
    ("installed>=2024-01-15T00:00:00Z", lambda e: val(e, "installed") >= "2024-01-15T00:00:00Z"),
    ("installed<2024-01-03T12:00:00Z", lambda e: val(e, "installed") < "2024-01-03T12:00:00Z"),
    ("level.observedAt>=2024-02-20T00:00:00Z",
     lambda e: "level" in e and e["level"]["observedAt"] >= "2024-02-20T00:00:00Z"),
    ("nothing==1", lambda e: False),
]


@pytest.mark.parametrize(("q", "predicate"), Q_CASES, ids=[c[0] for c in Q_CASES])
def test_q(qclient: TestClient, q: str, predicate: Callable[[dict[str, Any]], bool]) -> None:
    expected = ids_where(predicate)
    assert query_ids(qclient, q=q) == expected


def test_q_combined_with_type(qclient: TestClient) -> None:
    expected = ids_where(lambda e: "Camera" in types_of(e) and _in_range(e, 5, 99))
    assert expected
    assert query_ids(qclient, type="Camera", q="level>=5") == expected


@pytest.mark.parametrize("q", ["level>>3", "level==", "(level==1", "level==1;", "level===1",
                               "level==1)", ";level==1", 'status=="on', "level==1..",
                               "lev el==1", "level[==1"])
def test_bad_q_is_400_with_useful_detail(qclient: TestClient, q: str) -> None:
    detail = assert_problem(qclient.get(f"{BASE}/entities", params={"q": q}))
    assert q in detail  # the detail names the expression (and where it goes wrong)
    assert "unexpected error" not in detail.lower()


# ------------------------------------------------------------------ geo-queries


def geo(client: TestClient, georel: str, geometry: str, coordinates: str, **extra: Any) -> set[str]:
    return query_ids(client, georel=georel, geometry=geometry, coordinates=coordinates, **extra)


def test_near_max_distance(qclient: TestClient) -> None:
    limit = 750
    assert all(abs(dist(e) - limit) > 20 for e in ENTITIES)
    expected = ids_where(lambda e: dist(e) <= limit)
    assert 3 < len(expected) < N
    assert geo(qclient, f"near;maxDistance=={limit}", "Point", "[4.36,43.84]") == expected


def test_near_min_distance(qclient: TestClient) -> None:
    limit = 1500
    assert all(abs(dist(e) - limit) > 20 for e in ENTITIES)
    expected = ids_where(lambda e: dist(e) >= limit)
    assert 3 < len(expected) < N
    assert geo(qclient, f"near;minDistance=={limit}", "Point", "[4.36,43.84]") == expected


def test_near_takes_one_distance_modifier(qclient: TestClient) -> None:
    # clause 4.10 nearRel: exactly one distance, a positive number
    for georel in ("near;minDistance==750;maxDistance==1500", "near;maxDistance==0"):
        assert_problem(qclient.get(f"{BASE}/entities", params={
            "georel": georel, "geometry": "Point", "coordinates": "[4.36,43.84]"}))


def test_near_an_extended_reference(qclient: TestClient) -> None:
    expected = ids_where(lambda e: dist(e) <= 300)
    assert expected
    line = "[[4.36,43.84],[4.36,43.85]]"  # from the centre northwards
    assert expected <= geo(qclient, "near;maxDistance==300", "LineString", line)


def test_near_with_type(qclient: TestClient) -> None:
    expected = ids_where(lambda e: dist(e) <= 1050 and "Gauge" in types_of(e))
    assert all(abs(dist(e) - 1050) > 20 for e in ENTITIES)
    assert geo(qclient, "near;maxDistance==1050", "Point", "[4.36,43.84]",
               type="Gauge") == expected


BOX = (4.3425, 43.8275, 4.3625, 43.8425)  # no grid point on the border
BOX_POLYGON = (f"[[[{BOX[0]},{BOX[1]}],[{BOX[2]},{BOX[1]}],[{BOX[2]},{BOX[3]}],"
               f"[{BOX[0]},{BOX[3]}],[{BOX[0]},{BOX[1]}]]]")


def in_box(lon: float, lat: float) -> bool:
    return BOX[0] < lon < BOX[2] and BOX[1] < lat < BOX[3]


def test_within_polygon(qclient: TestClient) -> None:
    expected = ids_where(lambda e: in_box(*e["location"]["value"]["coordinates"]))
    assert 3 < len(expected) < N
    assert geo(qclient, "within", "Polygon", BOX_POLYGON) == expected


def test_disjoint_polygon(qclient: TestClient) -> None:
    expected = ids_where(lambda e: not in_box(*e["location"]["value"]["coordinates"]))
    assert geo(qclient, "disjoint", "Polygon", BOX_POLYGON) == expected


def test_within_with_q(qclient: TestClient) -> None:
    expected = ids_where(lambda e: in_box(*e["location"]["value"]["coordinates"])
                         and val(e, "active") is True)
    assert geo(qclient, "within", "Polygon", BOX_POLYGON, q="active==true") == expected


def test_intersects_line_on_other_geoproperty(qclient: TestClient) -> None:
    # a horizontal line at the latitude of grid row 2, from lon 4.34 to 4.37
    lat = round(CENTER[1] - 0.005, 6)
    line = f"[[4.34,{lat + 0.0002}],[4.37,{lat + 0.0002}]]"

    def crosses(e: dict[str, Any]) -> bool:
        if "area" not in e:
            return False
        lon, elat = lonlat(ALL_IDS.index(e["id"]))
        return abs(elat - lat) < 1e-9 and lon + 0.001 >= 4.34 and lon - 0.001 <= 4.37

    expected = ids_where(crosses)
    assert expected
    assert geo(qclient, "intersects", "LineString", line, geoproperty="area") == expected
    # the same line hits no Point location
    assert geo(qclient, "intersects", "LineString", line) == set()


def test_within_on_other_geoproperty(qclient: TestClient) -> None:
    def area_in_box(e: dict[str, Any]) -> bool:
        if "area" not in e:
            return False
        ring = e["area"]["value"]["coordinates"][0]
        return all(in_box(lon, lat) for lon, lat in ring)

    expected = ids_where(area_in_box)
    assert expected
    assert geo(qclient, "within", "Polygon", BOX_POLYGON, geoproperty="area") == expected


@pytest.mark.parametrize(("georel", "geometry", "coordinates"), [
    ("near", "Point", "[4.36,43.84]"),
    ("near;maxDistance==-5", "Point", "[4.36,43.84]"),
    ("near;maxDistance==10km", "Point", "[4.36,43.84]"),
    ("closeTo", "Point", "[4.36,43.84]"),
    ("within", "Circle", "[4.36,43.84]"),
    ("within", "Polygon", "[[[4.3,43.8],[4.4,43.8],[4.4,43.9]]]"),
    ("within", "Point", "[4.36]"),
    ("within", "Point", "[400,43.84]"),
    ("within", "Point", "not json"),
    ("within;maxDistance==3", "Polygon", BOX_POLYGON),
])
def test_bad_geo_query_is_400(qclient: TestClient, georel: str, geometry: str,
                              coordinates: str) -> None:
    response = qclient.get(f"{BASE}/entities", params={
        "georel": georel, "geometry": geometry, "coordinates": coordinates})
    assert_problem(response)


def test_incomplete_geo_query_is_400(qclient: TestClient) -> None:
    response = qclient.get(f"{BASE}/entities", params={"georel": "within", "type": "Gauge"})
    assert_problem(response)
    response = qclient.get(f"{BASE}/entities",
                           params={"geometry": "Point", "coordinates": "[4.36,43.84]"})
    assert_problem(response)


# ------------------------------------------------------------------ paging and counting


def test_default_limit_is_20(qclient: TestClient) -> None:
    response = qclient.get(f"{BASE}/entities", params={"type": "Streetlight,Gauge"})
    assert response.status_code == 200
    assert len(response.json()) == 20


def test_paging_has_no_duplicates_and_stable_order(qclient: TestClient) -> None:
    expected = ids_where(lambda e: "Gauge" in types_of(e) or "Camera" in types_of(e))
    pages: list[str] = []
    offset = 0
    while True:
        page = [e["id"] for e in query(qclient, type="Gauge,Camera", limit=7, offset=offset)]
        pages.extend(page)
        if len(page) < 7:
            break
        offset += 7
    assert len(pages) == len(set(pages))
    assert set(pages) == expected
    # the same query again gives the same order
    again = [e["id"] for e in query(qclient, type="Gauge,Camera", limit=1000)]
    assert again == pages
    assert query(qclient, type="Gauge,Camera", offset=1000) == []


def test_paging_with_inexact_filters(qclient: TestClient) -> None:
    expected = ids_where(lambda e: dist(e) >= 1500)
    pages: list[str] = []
    for offset in range(0, N, 5):
        pages.extend(e["id"] for e in query(qclient, georel="near;minDistance==1500",
                                            geometry="Point", coordinates="[4.36,43.84]",
                                            limit=5, offset=offset))
    assert len(pages) == len(set(pages))
    assert set(pages) == expected


def test_count(qclient: TestClient) -> None:
    expected = ids_where(lambda e: "Camera" in types_of(e))
    response = qclient.get(f"{BASE}/entities", params={"type": "Camera", "count": "true",
                                                       "limit": 3})
    assert response.status_code == 200
    assert response.headers["NGSILD-Results-Count"] == str(len(expected))
    assert len(response.json()) == 3
    plain = qclient.get(f"{BASE}/entities", params={"type": "Camera"})
    assert "NGSILD-Results-Count" not in plain.headers


def test_count_with_q_and_geo(qclient: TestClient) -> None:
    expected = ids_where(lambda e: dist(e) <= 1050 and "level" in e and val(e, "level") > 5)
    response = qclient.get(f"{BASE}/entities", params={
        "q": "level>5", "georel": "near;maxDistance==1050", "geometry": "Point",
        "coordinates": "[4.36,43.84]", "count": "true", "limit": 1})
    assert response.status_code == 200, response.text
    assert response.headers["NGSILD-Results-Count"] == str(len(expected))


def test_limit_zero_with_count(qclient: TestClient) -> None:
    response = qclient.get(f"{BASE}/entities", params={"q": "level>10", "count": "true",
                                                       "limit": 0})
    assert response.status_code == 200
    assert response.json() == []
    expected = ids_where(lambda e: "level" in e and val(e, "level") > 10)
    assert response.headers["NGSILD-Results-Count"] == str(len(expected))


def test_count_option(qclient: TestClient) -> None:
    response = qclient.get(f"{BASE}/entities", params={"type": "Gauge", "options": "count",
                                                       "limit": 0})
    assert response.status_code == 200
    assert response.headers["NGSILD-Results-Count"] == str(len(
        ids_where(lambda e: "Gauge" in types_of(e))))


@pytest.mark.parametrize("params", [
    {"type": "Gauge", "limit": "1001"},
    {"type": "Gauge", "limit": "-1"},
    {"type": "Gauge", "limit": "0"},
    {"type": "Gauge", "limit": "ten"},
    {"type": "Gauge", "offset": "-3"},
    {"type": "Gauge", "count": "yes"},
    {},
    {"limit": "5", "count": "true"},
    {"options": "keyValues"},
    {"attrs": "createdAt,modifiedAt"},  # clause 5.7.2.4: system attributes do not qualify
])
def test_bad_paging_or_missing_filter_is_400(qclient: TestClient, params: dict[str, str]) -> None:
    assert_problem(qclient.get(f"{BASE}/entities", params=params))


def test_limit_1000_is_allowed(qclient: TestClient) -> None:
    assert len(query(qclient, type="Gauge,Camera,Streetlight", limit=1000)) == N


def test_query_unknown_tenant_is_404(qclient: TestClient) -> None:
    response = qclient.get(f"{BASE}/entities", params={"type": "Gauge"},
                           headers={"NGSILD-Tenant": "nobody"})
    assert_problem(response, 404, "NonexistentTenant")


def test_key_values_query(qclient: TestClient) -> None:
    found = query(qclient, id=ALL_IDS[4], type="Gauge", options="keyValues")
    assert found == [{
        "id": ALL_IDS[4], "type": "Gauge", "name": "item-04", "status": "on", "active": True,
        "installed": "2024-01-05T12:00:00Z", "refGroup": "urn:ngsi-ld:Group:4",
        "address": {"city": "Nîmes", "geo": {"floor": 1}},
        "location": {"type": "Point", "coordinates": list(lonlat(4))}, "level": 4}]


# ------------------------------------------------------------------ POST /entityOperations/query


def post_query(client: TestClient, body: dict[str, Any], **params: Any) -> Any:
    params.setdefault("limit", 1000)
    return client.post(f"{BASE}/entityOperations/query", json=body, params=params)


def post_ids(client: TestClient, body: dict[str, Any], **params: Any) -> set[str]:
    response = post_query(client, body, **params)
    assert response.status_code == 200, response.text
    found = [e["id"] for e in response.json()]
    assert len(found) == len(set(found))
    return set(found)


def test_post_query_type_and_q(qclient: TestClient) -> None:
    body = {"type": "Query", "entities": [{"type": "Gauge"}], "q": "level>10"}
    expected = ids_where(lambda e: "Gauge" in types_of(e) and _in_range(e, 11, 99))
    assert post_ids(qclient, body) == expected


def test_post_query_several_type_selectors(qclient: TestClient) -> None:
    body = {"type": "Query", "entities": [{"type": "Gauge"}, {"type": "Camera"}]}
    expected = ids_where(lambda e: "Gauge" in types_of(e) or "Camera" in types_of(e))
    assert post_ids(qclient, body) == expected


def test_post_query_id_pattern(qclient: TestClient) -> None:
    body = {"type": "Query", "entities": [{"idPattern": "^urn:ngsi-ld:Camera:01", "type": "Camera"}]}
    expected = {i for i in ALL_IDS if i.startswith("urn:ngsi-ld:Camera:01")}
    assert expected
    assert post_ids(qclient, body) == expected


def test_post_query_geo_q(qclient: TestClient) -> None:
    body = {"type": "Query", "entities": [{"type": "Streetlight"}],
            "geoQ": {"georel": "near;maxDistance==1050", "geometry": "Point",
                     "coordinates": [4.36, 43.84]}}
    expected = ids_where(lambda e: dist(e) <= 1050 and "Streetlight" in types_of(e))
    assert expected
    assert post_ids(qclient, body) == expected


def test_post_query_geo_q_polygon_and_geoproperty(qclient: TestClient) -> None:
    body = {"type": "Query", "geoQ": {
        "georel": "intersects", "geometry": "Polygon", "geoproperty": "area",
        "coordinates": [[[BOX[0], BOX[1]], [BOX[2], BOX[1]], [BOX[2], BOX[3]],
                         [BOX[0], BOX[3]], [BOX[0], BOX[1]]]]}}

    def touches(e: dict[str, Any]) -> bool:
        if "area" not in e:
            return False
        ring = e["area"]["value"]["coordinates"][0]
        lons = [p[0] for p in ring]
        lats = [p[1] for p in ring]
        return (min(lons) <= BOX[2] and max(lons) >= BOX[0]
                and min(lats) <= BOX[3] and max(lats) >= BOX[1])

    expected = ids_where(touches)
    assert expected
    assert post_ids(qclient, body) == expected


def test_post_query_attrs_selects(qclient: TestClient) -> None:
    body = {"type": "Query", "entities": [{"type": "Streetlight"}], "attrs": ["area"]}
    expected = ids_where(lambda e: "Streetlight" in types_of(e) and "area" in e)
    assert expected
    assert post_ids(qclient, body) == expected


def test_post_query_attrs_projects(qclient: TestClient) -> None:
    body = {"type": "Query", "entities": [{"type": "Streetlight"}], "attrs": ["area"]}
    response = post_query(qclient, body)
    assert response.status_code == 200
    assert response.json()
    for entity in response.json():
        assert set(entity) == {"id", "type", "area"}


def test_post_query_selectors_are_alternatives(qclient: TestClient) -> None:
    body = {"type": "Query", "entities": [{"id": ALL_IDS[0], "type": "Streetlight"},
                                          {"type": "Gauge"}]}
    expected = {ALL_IDS[0]} | ids_where(lambda e: "Gauge" in types_of(e))
    assert post_ids(qclient, body) == expected


def test_post_query_count_and_paging(qclient: TestClient) -> None:
    body = {"type": "Query", "entities": [{"type": "Gauge"}]}
    response = post_query(qclient, body, limit=4, count="true")
    assert response.status_code == 200
    assert len(response.json()) == 4
    assert response.headers["NGSILD-Results-Count"] == str(
        len(ids_where(lambda e: "Gauge" in types_of(e))))


@pytest.mark.parametrize("body", [
    {"type": "Subscription", "entities": [{"type": "Gauge"}]},
    {"type": "Query"},
    {"type": "Query", "entities": {"type": "Gauge"}},
    {"type": "Query", "entities": ["Gauge"]},
    {"type": "Query", "q": "level>>1", "entities": [{"type": "Gauge"}]},
    {"type": "Query", "q": 5, "entities": [{"type": "Gauge"}]},
    {"type": "Query", "attrs": "level", "entities": [{"type": "Gauge"}]},
    {"type": "Query", "geoQ": {"georel": "near", "geometry": "Point", "coordinates": [4.3, 43.8]}},
])
def test_post_query_errors(qclient: TestClient, body: dict[str, Any]) -> None:
    assert_problem(post_query(qclient, body))


def test_post_query_not_an_object_is_400(qclient: TestClient) -> None:
    response = qclient.post(f"{BASE}/entityOperations/query", json=[{"type": "Gauge"}])
    assert_problem(response)


@pytest.mark.parametrize("param", ["expandValues=speed", "collectValues=speed"])
def test_unsupported_query_parameters_are_refused(client: TestClient, param: str) -> None:
    response = client.get(f"/ngsi-ld/v1/entities?type=Thing&{param}")
    assert response.status_code == 422
    assert response.json()["type"].endswith("/OperationNotSupported")
