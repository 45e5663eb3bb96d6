"""Tests for the Nîmes Métropole demo-city generator (cityvisor.sim.nimes)."""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from dataclasses import asdict
from importlib import resources
from pathlib import Path

import pytest
import shapely
from shapely.geometry import shape

from cityvisor.ngsild.context import sdm_context
from cityvisor.sim import geography as geo
from cityvisor.sim.nimes import DemoCounts, build_city

DATA = Path(str(resources.files("cityvisor").joinpath("data")))
ID_RE = re.compile(r"^urn:ngsi-ld:([A-Za-z]+):nimes:([1-9][0-9]*)$")
SMALL = DemoCounts(streetlights=800, cameras=60, rain_gauges=25, water_level_gauges=25,
                   weather_stations=8, seismometers=10, ev_stations=20, waste_containers=100,
                   traffic_counters=20)


@pytest.fixture(scope="module")
def city():
    start = time.perf_counter()
    batches = build_city()
    return batches, time.perf_counter() - start


@pytest.fixture(scope="module")
def entities(city):
    return [e for _, ents in city[0] for e in ents]


def test_counts_per_type(entities):
    c = DemoCounts()
    got = Counter(e["type"] for e in entities)
    assert got == {
        "Streetlight": c.streetlights, "StreetlightGroup": 39, "Camera": c.cameras,
        "Device": c.seismometers, "WeatherObserved": c.rain_gauges + c.weather_stations,
        "FloodMonitoring": c.water_level_gauges, "EVChargingStation": c.ev_stations,
        "WasteContainer": c.waste_containers, "TrafficFlowObserved": c.traffic_counters,
    }


def test_batches_grouped_by_sdm_context(city):
    domains = {"Streetlight": "Streetlighting", "StreetlightGroup": "Streetlighting",
               "Camera": "Device", "Device": "Device", "WeatherObserved": "Weather",
               "FloodMonitoring": "Environment", "EVChargingStation": "Transportation",
               "TrafficFlowObserved": "Transportation", "WasteContainer": "WasteManagement"}
    seen = []
    for ctx, ents in city[0]:
        assert len(ctx) == 1 and ents
        for e in ents:
            assert ctx == [sdm_context(domains[e["type"]])]
            assert "@context" not in e
        seen.append(ctx[0])
    assert len(seen) == len(set(seen))


def test_context_urls_are_bundled(city):
    for ctx, _ in city[0]:
        domain = re.search(r"dataModel\.(\w+)/", ctx[0]).group(1)
        path = DATA / "smart-data-models" / f"dataModel.{domain}" / "context.jsonld"
        assert "@context" in json.loads(path.read_text("utf-8"))
    assert (DATA / "smart-data-models" / "README.md").exists()


def test_ids_unique_and_sequential(entities):
    ids = [e["id"] for e in entities]
    assert len(ids) == len(set(ids))
    by_type: dict[str, list[int]] = {}
    for e in entities:
        m = ID_RE.match(e["id"])
        assert m, e["id"]
        assert m.group(1) == e["type"]
        by_type.setdefault(e["type"], []).append(int(m.group(2)))
    for numbers in by_type.values():
        assert sorted(numbers) == list(range(1, len(numbers) + 1))


def test_deterministic():
    assert build_city(SMALL, seed=7) == build_city(SMALL, seed=7)


def test_other_seed_other_coordinates():
    def coords(batches):
        return [e["location"]["value"]["coordinates"] for _, es in batches for e in es
                if e["type"] == "Streetlight"]
    a, b = coords(build_city(SMALL, seed=1)), coords(build_city(SMALL, seed=2))
    assert len(a) == len(b) and sum(x != y for x, y in zip(a, b, strict=False)) > 0.99 * len(a)


def test_counts_are_independent_streams():
    base = build_city(SMALL, seed=3)
    more = build_city(DemoCounts(**{**asdict(SMALL), "cameras": 61}), seed=3)

    def pick(batches, etype):
        return [e for _, es in batches for e in es if e["type"] == etype]

    for etype in ("Streetlight", "WasteContainer", "FloodMonitoring", "Device"):
        assert pick(base, etype) == pick(more, etype)
    assert len(pick(more, "Camera")) == 61


def test_located_entities_inside_their_commune(entities):
    geojson = json.loads((DATA / "geo" / "nimes-metropole-communes.geojson").read_text("utf-8"))
    polys = {f["properties"]["nom"]: shape(f["geometry"]) for f in geojson["features"]}
    outline = shapely.union_all(list(polys.values()))
    rnd = random.Random(0)
    sample = rnd.sample(entities, 500) + [e for e in entities if e["type"] not in
                                          ("Streetlight", "WasteContainer", "Camera")]
    for e in sample:
        lon, lat = e["location"]["value"]["coordinates"]
        point = shapely.Point(lon, lat)
        commune = e["address"]["value"]["addressLocality"]
        assert polys[commune].contains(point), (e["id"], commune, lon, lat)
        assert outline.contains(point)
        assert e["address"]["value"]["postalCode"].startswith("30")


def test_streetlights_denser_in_nimes(entities):
    lights = [e for e in entities if e["type"] == "Streetlight"]
    in_nimes = sum(e["address"]["value"]["addressLocality"] == "Nîmes" for e in lights)
    assert 0.45 < in_nimes / len(lights) < 0.75
    near_core = sum(abs(e["location"]["value"]["coordinates"][0] - geo.NIMES_CORE[0]) < 0.02
                    and abs(e["location"]["value"]["coordinates"][1] - geo.NIMES_CORE[1]) < 0.015
                    for e in lights)
    # the 4 km x 3.3 km box around the Écusson holds > 2x its area share of Nîmes' lights
    nimes_area = next(c.area for c in geo.load_communes() if c.code == geo.NIMES_INSEE)
    assert near_core / in_nimes > 2 * (0.04 * 0.03) / nimes_area


def _check_attr(name, attr):
    assert isinstance(attr, dict), name
    kind = attr.get("type")
    assert kind in ("Property", "GeoProperty", "Relationship"), name
    if kind == "Relationship":
        assert isinstance(attr["object"], str) and ":" in attr["object"]
    else:
        assert "value" in attr and attr["value"] is not None, name
    if kind == "GeoProperty":
        assert attr["value"]["type"] == "Point"
        lon, lat = attr["value"]["coordinates"]
        assert 4.0 < lon < 4.7 and 43.6 < lat < 44.1
    if "unitCode" in attr:
        assert re.fullmatch(r"[A-Z0-9]{2,3}", attr["unitCode"])
        assert isinstance(attr["value"], (int, float))
    if "observedAt" in attr:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", attr["observedAt"])


def test_normalized_ngsi_ld(entities):
    for e in entities:
        assert re.fullmatch(r"urn:[a-z0-9][a-z0-9-]*:\S+", e["id"])
        assert isinstance(e["type"], str) and e["type"]
        assert "location" in e and "address" in e
        for name, attr in e.items():
            if name not in ("id", "type"):
                _check_attr(name, attr)
    json.dumps(entities)  # plain JSON types only (no numpy scalars)


def test_relationships_resolve(entities):
    ids = {e["id"] for e in entities}
    rels = [a["object"] for e in entities for a in e.values()
            if isinstance(a, dict) and a.get("type") == "Relationship"]
    assert len(rels) == DemoCounts().streetlights
    assert set(rels) <= ids


def test_gauges_named_after_cadereaux(entities):
    gauges = [e for e in entities if e["type"] == "FloodMonitoring"
              or (e["type"] == "WeatherObserved" and "temperature" not in e)]
    assert len(gauges) == 50
    names = {g["name"]["value"].split(" — ")[0] for g in gauges}
    assert names <= set(geo.CADEREAUX) and len(names) >= 8


def test_generation_time(city):
    # well under 3 s on a laptop; generous bound for slow CI runners
    assert city[1] < 10.0


def test_bundled_geojson():
    geojson = json.loads((DATA / "geo" / "nimes-metropole-communes.geojson").read_text("utf-8"))
    feats = geojson["features"]
    assert len(feats) == 39
    props = [f["properties"] for f in feats]
    assert len({p["code"] for p in props}) == 39
    assert props[0]["code"] == "30189" and props[0]["nom"] == "Nîmes"
    assert 230_000 < sum(p["population"] for p in props) < 280_000
    for f in feats:
        assert shape(f["geometry"]).is_valid
    for name in ("README.md", "LICENCE.md", "departements-occitanie.geojson",
                 "region-occitanie.geojson"):
        assert (DATA / "geo" / name).exists()
    assert "Licence Ouverte" in (DATA / "geo" / "README.md").read_text("utf-8")
    assert len(geo.load_communes()) == 39
