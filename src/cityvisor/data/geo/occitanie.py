"""The bundled geography of Occitanie: 13 départements and their 4,485 communes (COG 2018).

Read-only and cached: :func:`departements` and :func:`communes` parse the small property sets
once; :func:`commune_geometry` parses a département's polygons the first time one of its
communes is asked for. Files are built by :mod:`cityvisor.data.geo.simplify_communes` (see the
README next to them for source and licence).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable

import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

DEPARTEMENTS_RESOURCE = "departements-occitanie-simplified.geojson"
REGION_RESOURCE = "region-occitanie.geojson"


@dataclass(frozen=True)
class Departement:
    code: str  # "30"
    name: str  # "Gard"
    bbox: tuple[float, float, float, float]  # west, south, east, north


@dataclass(frozen=True)
class Commune:
    code: str  # INSEE code, "30189"
    name: str  # official name, "Nîmes"
    departement: str  # "30"
    lon: float  # a point inside the commune (label / weather station)
    lat: float
    bbox: tuple[float, float, float, float]


def _folder() -> Traversable:
    return resources.files("cityvisor.data.geo")


def _bbox(geometry: dict[str, object]) -> tuple[float, float, float, float]:
    west, south, east, north = shapely.bounds(shape(geometry)).tolist()
    return (round(west, 4), round(south, 4), round(east, 4), round(north, 4))


def departements_bytes() -> bytes:
    """The départements as a GeoJSON FeatureCollection (properties ``code``, ``nom``)."""
    return _folder().joinpath(DEPARTEMENTS_RESOURCE).read_bytes()


def region_bytes() -> bytes:
    """The region outline as GeoJSON."""
    return _folder().joinpath(REGION_RESOURCE).read_bytes()


def communes_bytes(departement: str) -> bytes:
    """The communes of one département as a GeoJSON FeatureCollection; KeyError if unknown."""
    if departement not in departements_by_code():
        raise KeyError(departement)
    return _folder().joinpath("communes", f"{departement}.geojson").read_bytes()


@lru_cache(maxsize=1)
def departements() -> tuple[Departement, ...]:
    """The 13 départements of Occitanie, by code."""
    features = json.loads(departements_bytes())["features"]
    return tuple(Departement(f["properties"]["code"], f["properties"]["nom"],
                             _bbox(f["geometry"])) for f in features)


@lru_cache(maxsize=1)
def departements_by_code() -> dict[str, Departement]:
    return {d.code: d for d in departements()}


@lru_cache(maxsize=1)
def communes() -> tuple[Commune, ...]:
    """All 4,485 communes of Occitanie, by département then INSEE code."""
    out: list[Commune] = []
    for departement in departements():
        for feature in json.loads(communes_bytes(departement.code))["features"]:
            props = feature["properties"]
            out.append(Commune(props["code"], props["nom"], departement.code,
                               props["lon"], props["lat"], _bbox(feature["geometry"])))
    return tuple(out)


@lru_cache(maxsize=1)
def communes_by_code() -> dict[str, Commune]:
    return {c.code: c for c in communes()}


@lru_cache(maxsize=13)
def _geometries(departement: str) -> dict[str, BaseGeometry]:
    features = json.loads(communes_bytes(departement))["features"]
    out = {}
    for feature in features:
        geometry = shape(feature["geometry"])
        shapely.prepare(geometry)
        out[feature["properties"]["code"]] = geometry
    return out


def commune_geometry(code: str) -> BaseGeometry:
    """The (simplified, prepared) polygon of a commune; KeyError if unknown."""
    commune = communes_by_code()[code]
    return _geometries(commune.departement)[code]


@lru_cache(maxsize=1)
def _tree() -> tuple[shapely.STRtree, list[str]]:
    codes = [c.code for c in communes()]
    boxes = [shapely.box(*c.bbox) for c in communes()]
    return shapely.STRtree(boxes), codes


def commune_at(lon: float, lat: float) -> Commune | None:
    """The commune of Occitanie containing the point, or None (outside the region)."""
    tree, codes = _tree()
    point = shapely.Point(lon, lat)
    candidates = [codes[i] for i in tree.query(point)]
    for code in candidates:
        if commune_geometry(code).covers(point):
            return communes_by_code()[code]
    return None
