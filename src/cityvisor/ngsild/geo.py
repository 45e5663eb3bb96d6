"""Geo-queries and GeoProperty values (ETSI GS CIM 009 v1.8, clause 4.10 and clause 4.7).

This module is pure: it parses the geo-query members of a query (``georel``, ``geometry``,
``coordinates``, ``geoproperty``; clause 4.10 and 6.4.3.2), validates GeoJSON GeoProperty values
(clause 4.7, RFC 7946), gives bounding boxes for a spatial index, and evaluates the exact
predicate of a geo-query against a stored GeoProperty value.

Conventions (clause 4.10):

* coordinates are WGS84 ``[longitude, latitude(, altitude)]``; the spatial relations
  ``within``, ``contains``, ``intersects``, ``equals``, ``disjoint``, ``overlaps`` are the
  planar DE-9IM relations of the *entity* geometry (left) and the *reference* geometry (right):
  ``within`` means the entity geometry lies within the reference geometry, ``contains`` that it
  contains the reference geometry;
* ``near;maxDistance==<m>`` / ``near;minDistance==<m>`` take a reference geometry and ONE
  distance in metres, a positive number (clause 4.10 ``nearRel``): the geodesic distance
  (sphere of radius 6371008.8 m) between the closest points of the reference geometry and of
  the entity geometry is at most / at least the distance.

Performance: :func:`matches` is called for every candidate row of a query. Reference geometries
are parsed once (LRU cache) and prepared (``shapely.prepare``); a :class:`GeoQuery` compiles its
predicate on construction; Point entity values (the common case) are tested with plain math or
the ``*_xy`` shapely functions, without building a shapely object.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np  # a hard dependency of shapely 2, used through shapely.transform
import shapely
import shapely.ops
from shapely.errors import GEOSException

from cityvisor.ngsild.errors import BadRequestData

GEORELS = frozenset({"near", "within", "contains", "intersects", "equals", "disjoint", "overlaps"})
#: geometry names allowed in a geo-query (clause 4.10)
QUERY_GEOMETRIES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon",
                    "MultiPolygon")
#: GeoJSON geometry types allowed as a GeoProperty value (clause 4.7.1)
GEOJSON_TYPES = QUERY_GEOMETRIES + ("GeometryCollection",)

CORE_IRI = "https://uri.etsi.org/ngsi-ld/"
DEFAULT_GEOPROPERTY = CORE_IRI + "location"
#: core GeoProperty names that map to core IRIs whatever the caller's context
CORE_GEOPROPERTIES = {name: CORE_IRI + name
                      for name in ("location", "observationSpace", "operationSpace")}

#: WGS84 mean radius (IUGG), metres
EARTH_RADIUS_M = 6371008.8
_DEG = math.pi / 180.0
#: relative safety margin for the ``near`` pre-filter box (the local projection used for
#: non-point geometries is accurate to well under 0.5% within 50 km)
_NEAR_BOX_MARGIN = 1.01

_DISTANCE_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_MAX_ECHO = 80

Box = tuple[float, float, float, float]


def _echo(value: object) -> str:
    """A short printable rendering of an offending value for error details."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=repr)
    return text if len(text) <= _MAX_ECHO else text[: _MAX_ECHO - 3] + "..."


# --------------------------------------------------------------------------------------------
# GeoJSON validation (clause 4.7.1, RFC 7946 section 3.1)
# --------------------------------------------------------------------------------------------


def _position(p: object, where: str, dims: set[int]) -> Sequence[float]:
    """Validate one position: 2 or 3 finite numbers, lon in [-180, 180], lat in [-90, 90]."""
    if not isinstance(p, (list, tuple)) or not 2 <= len(p) <= 3:
        raise BadRequestData(
            f"{where} is not a position (an array of 2 or 3 numbers): {_echo(p)}")
    for i, n in enumerate(p):
        if isinstance(n, bool) or not isinstance(n, (int, float)):
            raise BadRequestData(f"{where}[{i}] is not a number: {_echo(n)}")
        if not math.isfinite(n):
            raise BadRequestData(f"{where}[{i}] is not a finite number: {n}")
    lon, lat = p[0], p[1]
    if not -180.0 <= lon <= 180.0:
        raise BadRequestData(f"{where}: longitude {lon} is out of range [-180, 180]")
    if not -90.0 <= lat <= 90.0:
        raise BadRequestData(f"{where}: latitude {lat} is out of range [-90, 90]")
    dims.add(len(p))
    return p


def _array(value: object, where: str, what: str, item: str | None, min_len: int = 1
           ) -> list[Any]:
    """Check ``value`` is an array of at least ``min_len`` arrays (``item`` names them)."""
    if not isinstance(value, (list, tuple)):
        raise BadRequestData(f"{where} is not an array of {what}: {_echo(value)}")
    if item is not None:
        for i, element in enumerate(value):
            if not isinstance(element, (list, tuple)):
                raise BadRequestData(
                    f"{where}[{i}] is not {item} (an array): {_echo(element)}")
    if len(value) < min_len:
        raise BadRequestData(
            f"{where} has {len(value)} {what}, at least {min_len} are required")
    return list(value)


def _positions(value: object, where: str, dims: set[int], min_len: int = 1) -> list[Any]:
    items = _array(value, where, "positions", "a position", min_len)
    return [_position(p, f"{where}[{i}]", dims) for i, p in enumerate(items)]


def _ring(value: object, where: str, dims: set[int]) -> list[Any]:
    ring = _positions(value, where, dims, 4)
    if list(ring[0][:2]) != list(ring[-1][:2]) or (
            len(ring[0]) == len(ring[-1]) == 3 and ring[0][2] != ring[-1][2]):
        raise BadRequestData(
            f"{where} is not a closed linear ring: the first position {_echo(ring[0])} "
            f"differs from the last {_echo(ring[-1])}")
    return ring


def _rings(value: object, where: str, dims: set[int]) -> list[Any]:
    items = _array(value, where, "linear rings", "a linear ring")
    return [_ring(r, f"{where}[{i}]", dims) for i, r in enumerate(items)]


def _check_coordinates(gtype: str, coords: object, where: str, dims: set[int]) -> object:
    """Validate ``coords`` for the GeoJSON geometry type ``gtype``; returns them."""
    if gtype == "Point":
        return _position(coords, where, dims)
    if gtype == "MultiPoint":
        return _positions(coords, where, dims)
    if gtype == "LineString":
        return _positions(coords, where, dims, 2)
    if gtype == "MultiLineString":
        items = _array(coords, where, "line strings", "a line string")
        return [_positions(ls, f"{where}[{i}]", dims, 2) for i, ls in enumerate(items)]
    if gtype == "Polygon":
        return _rings(coords, where, dims)
    if gtype == "MultiPolygon":
        items = _array(coords, where, "polygons", "a polygon")
        return [_rings(poly, f"{where}[{i}]", dims) for i, poly in enumerate(items)]
    raise AssertionError(gtype)  # pragma: no cover - callers check the type


def _flat2(coords: Any, depth: int) -> Any:
    """Drop altitudes (used only when a geometry mixes 2D and 3D positions)."""
    if depth == 0:
        return coords[:2]
    return [_flat2(c, depth - 1) for c in coords]


_DEPTH = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2,
          "MultiPolygon": 3}


def _build(gtype: str, coords: Any) -> shapely.Geometry:
    """Build a shapely geometry from GeoJSON coordinates (no validation)."""
    if gtype == "Point":
        return shapely.Point(coords)
    if gtype == "MultiPoint":
        return shapely.MultiPoint(coords)
    if gtype == "LineString":
        return shapely.LineString(coords)
    if gtype == "MultiLineString":
        return shapely.MultiLineString(coords)
    if gtype == "Polygon":
        return shapely.Polygon(coords[0], coords[1:])
    if gtype == "MultiPolygon":
        return shapely.MultiPolygon([(p[0], p[1:]) for p in coords])
    raise ValueError(f"unknown geometry type {gtype!r}")


def _build_value(value: Any) -> shapely.Geometry:
    """Build a shapely geometry from a stored (already validated) GeoJSON dict."""
    gtype = value["type"]
    if gtype == "GeometryCollection":
        return shapely.GeometryCollection([_build_value(g) for g in value["geometries"]])
    return _build(gtype, value["coordinates"])


def _make(gtype: str, coords: Any, dims: set[int], where: str) -> shapely.Geometry:
    """Build a validated geometry; rejects polygons that are not valid (clause 4.7.1)."""
    if len(dims) > 1:
        coords = _flat2(coords, _DEPTH[gtype])
    try:
        geom = _build(gtype, coords)
    except (ValueError, TypeError, GEOSException) as exc:  # pragma: no cover - defensive
        raise BadRequestData(f"{where} is not a valid {gtype}: {exc}") from None
    if gtype in ("Polygon", "MultiPolygon") and not shapely.is_valid(geom):
        raise BadRequestData(
            f"{where} is not a valid {gtype}: {shapely.is_valid_reason(geom)}")
    return geom


def parse_geojson(value: object) -> shapely.Geometry:
    """Validate a GeoProperty value and return it as a shapely geometry (clause 4.7.1).

    ``value`` must be a GeoJSON geometry object (RFC 7946, section 3.1) of type Point,
    MultiPoint, LineString, MultiLineString, Polygon, MultiPolygon or GeometryCollection.
    Positions are 2 or 3 numbers (booleans are not numbers), longitude in [-180, 180] and
    latitude in [-90, 90]; line strings have at least 2 positions; polygon rings are closed and
    have at least 4 positions; polygons must be valid (no self-intersection). Arrays of
    positions, lines or polygons must not be empty. Raises :class:`BadRequestData` otherwise.
    """
    return _parse_geojson(value, "GeoProperty value")


def _parse_geojson(value: object, where: str) -> shapely.Geometry:
    if not isinstance(value, dict):
        raise BadRequestData(f"{where} is not a GeoJSON geometry object: {_echo(value)}")
    gtype = value.get("type")
    if gtype not in GEOJSON_TYPES:
        raise BadRequestData(
            f"{where} has an unsupported GeoJSON type {_echo(gtype)}: expected one of "
            f"{', '.join(GEOJSON_TYPES)}")
    if gtype == "GeometryCollection":
        if "geometries" not in value:
            raise BadRequestData(f"{where} (GeometryCollection) has no 'geometries' member")
        members = _array(value["geometries"], f"{where}.geometries", "geometries", None)
        return shapely.GeometryCollection(
            [_parse_geojson(g, f"{where}.geometries[{i}]") for i, g in enumerate(members)])
    if "coordinates" not in value:
        raise BadRequestData(f"{where} ({gtype}) has no 'coordinates' member")
    dims: set[int] = set()
    coords = _check_coordinates(gtype, value["coordinates"], f"{where}.coordinates", dims)
    return _make(gtype, coords, dims, where)


# --------------------------------------------------------------------------------------------
# Bounding boxes (for the R*Tree index)
# --------------------------------------------------------------------------------------------


def bbox(value_geojson: dict[str, Any]) -> Box:
    """``(minx, miny, maxx, maxy)`` of a (validated) GeoJSON geometry, in degrees.

    Pure Python, no shapely object; for a Point it only builds the result tuple. Polygons use
    their exterior rings only. Raises :class:`BadRequestData` for an unusable value.
    """
    try:
        gtype = value_geojson["type"]
        if gtype == "Point":
            c = value_geojson["coordinates"]
            x = float(c[0])
            y = float(c[1])
            return (x, y, x, y)
        if gtype == "GeometryCollection":
            boxes = [bbox(g) for g in value_geojson["geometries"]]
            return (min(b[0] for b in boxes), min(b[1] for b in boxes),
                    max(b[2] for b in boxes), max(b[3] for b in boxes))
        coords = value_geojson["coordinates"]
        if gtype in ("MultiPoint", "LineString"):
            pts = coords
        elif gtype == "MultiLineString":
            pts = [p for line in coords for p in line]
        elif gtype == "Polygon":
            pts = coords[0]
        elif gtype == "MultiPolygon":
            pts = [p for poly in coords for p in poly[0]]
        else:
            raise BadRequestData(f"Cannot compute the bounding box of a {_echo(gtype)}")
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        return (float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys)))
    except (KeyError, TypeError, IndexError, ValueError):
        raise BadRequestData(
            f"Cannot compute the bounding box of {_echo(value_geojson)}") from None


# --------------------------------------------------------------------------------------------
# Distances
# --------------------------------------------------------------------------------------------


def haversine_m(lon1: float, lat1: float, lon2: float, lat2: float) -> float:
    """Great-circle distance in metres on the WGS84 mean sphere (R = 6371008.8 m)."""
    p1 = lat1 * _DEG
    p2 = lat2 * _DEG
    a = (math.sin((p2 - p1) * 0.5) ** 2
         + math.cos(p1) * math.cos(p2) * math.sin((lon2 - lon1) * _DEG * 0.5) ** 2)
    return 2.0 * EARTH_RADIUS_M * math.asin(math.sqrt(min(a, 1.0)))


def _aeqd(lon0: float, lat0: float) -> Callable[[Any], Any]:
    """Forward azimuthal equidistant projection (sphere) centred on (lon0, lat0), in metres.

    Distances from the centre are exact great-circle distances; distances to a segment are
    accurate to well under 0.5% within 50 km of the centre.
    """
    lam0 = lon0 * _DEG
    sin0 = math.sin(lat0 * _DEG)
    cos0 = math.cos(lat0 * _DEG)

    def project(xy: Any) -> Any:
        lam = np.radians(xy[:, 0]) - lam0
        phi = np.radians(xy[:, 1])
        sinp, cosp, cosl = np.sin(phi), np.cos(phi), np.cos(lam)
        c = np.arccos(np.clip(sin0 * sinp + cos0 * cosp * cosl, -1.0, 1.0))
        sinc = np.sin(c)
        k = np.where(c > 1e-9, c / np.where(sinc == 0.0, 1.0, sinc), 1.0) * EARTH_RADIUS_M
        return np.column_stack((k * cosp * np.sin(lam), k * (cos0 * sinp - sin0 * cosp * cosl)))

    return project


def distance_m(lon: float, lat: float, geometry: shapely.Geometry) -> float:
    """Geodesic distance in metres from (lon, lat) to the nearest point of ``geometry``.

    Points (and multi-points) use the haversine formula; other geometries are projected into
    an azimuthal equidistant frame centred on (lon, lat) and measured there.
    """
    if isinstance(geometry, (shapely.Point, shapely.MultiPoint)):
        pts = shapely.get_coordinates(geometry)
        return min(haversine_m(lon, lat, float(x), float(y)) for x, y in pts)
    projected = shapely.transform(geometry, _aeqd(lon, lat))
    return float(shapely.distance(_ORIGIN, projected))


def geometry_distance_m(a: shapely.Geometry, b: shapely.Geometry) -> float:
    """Geodesic distance in metres between the closest points of two geometries.

    0 when they intersect; otherwise both are projected into an azimuthal equidistant frame
    centred on the point of ``a`` closest to ``b`` (in lon/lat), and measured there.
    """
    if isinstance(a, shapely.Point):
        return distance_m(float(a.x), float(a.y), b)
    if isinstance(b, shapely.Point):
        return distance_m(float(b.x), float(b.y), a)
    if shapely.intersects(a, b):
        return 0.0
    near_a, _ = shapely.ops.nearest_points(a, b)
    project = _aeqd(float(near_a.x), float(near_a.y))
    return float(shapely.distance(shapely.transform(a, project), shapely.transform(b, project)))


_ORIGIN = shapely.Point(0.0, 0.0)


# --------------------------------------------------------------------------------------------
# Geo-queries (clause 4.10)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeoQuery:
    """A parsed geo-query (clause 4.10).

    ``geometry`` is the reference geometry (lon/lat WGS84, prepared); ``geoproperty`` the
    expanded IRI of the GeoProperty to test; ``max_distance`` / ``min_distance`` in metres, for
    ``near`` only. The exact predicate and the pre-filter box are compiled on construction.
    """

    georel: str
    geometry: shapely.Geometry
    geoproperty: str = DEFAULT_GEOPROPERTY
    max_distance: float | None = None
    min_distance: float | None = None
    _on_xy: Callable[[float, float], bool] = field(init=False, repr=False, compare=False)
    _on_geom: Callable[[shapely.Geometry], bool] = field(init=False, repr=False, compare=False)
    _box: Box | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.georel not in GEORELS:
            raise BadRequestData(f"Unknown georel {_echo(self.georel)}")
        if self.georel == "near":
            if self.max_distance is None and self.min_distance is None:
                raise BadRequestData("Georel 'near' requires maxDistance or minDistance")
        elif self.max_distance is not None or self.min_distance is not None:
            raise BadRequestData(f"Georel '{self.georel}' takes no maxDistance/minDistance")
        shapely.prepare(self.geometry)
        on_xy, on_geom, box = _compile(self)
        object.__setattr__(self, "_on_xy", on_xy)
        object.__setattr__(self, "_on_geom", on_geom)
        object.__setattr__(self, "_box", box)


def _distance_check(max_d: float | None, min_d: float | None) -> Callable[[float], bool]:
    if max_d is not None and min_d is not None:
        return lambda d: min_d <= d <= max_d
    if max_d is not None:
        return lambda d: d <= max_d
    assert min_d is not None
    return lambda d: d >= min_d


def _near_box(bounds: Box, max_d: float) -> Box:
    """A lon/lat box containing every point within ``max_d`` metres of the box ``bounds``."""
    minx, miny, maxx, maxy = bounds
    dlat = max_d / EARTH_RADIUS_M / _DEG * _NEAR_BOX_MARGIN + 1e-9
    miny = max(-90.0, miny - dlat)
    maxy = min(90.0, maxy + dlat)
    extreme = max(abs(miny), abs(maxy))
    if extreme >= 89.999:
        return (-180.0, miny, 180.0, maxy)
    dlon = dlat / math.cos(extreme * _DEG)
    if dlon >= 180.0 or minx - dlon < -180.0 or maxx + dlon > 180.0:
        # crosses the antimeridian: be conservative rather than split the box
        return (-180.0, miny, 180.0, maxy)
    return (minx - dlon, miny, maxx + dlon, maxy)


def _compile(q: GeoQuery) -> tuple[Callable[[float, float], bool],
                                   Callable[[shapely.Geometry], bool], Box | None]:
    """Compile the exact predicate (for Point entities and for others) and the box."""
    ref = q.geometry
    rel = q.georel
    ref_box: Box = tuple(float(v) for v in shapely.bounds(ref))  # type: ignore[assignment]

    if rel == "near" and not isinstance(ref, shapely.Point):
        near_ok = _distance_check(q.max_distance, q.min_distance)

        def extended_xy(x: float, y: float) -> bool:
            return near_ok(distance_m(x, y, ref))

        def extended_geom(g: shapely.Geometry) -> bool:
            return near_ok(geometry_distance_m(g, ref))

        near_box = None if q.max_distance is None else _near_box(ref_box, q.max_distance)
        return extended_xy, extended_geom, near_box

    if rel == "near":
        assert isinstance(ref, shapely.Point)
        lon0, lat0 = float(ref.x), float(ref.y)
        phi0 = lat0 * _DEG
        cos0 = math.cos(phi0)
        lam0 = lon0 * _DEG
        ok = _distance_check(q.max_distance, q.min_distance)
        two_r = 2.0 * EARTH_RADIUS_M
        sin, cos, asin, sqrt = math.sin, math.cos, math.asin, math.sqrt

        def near_xy(x: float, y: float) -> bool:
            phi = y * _DEG
            a = sin((phi - phi0) * 0.5) ** 2 + cos0 * cos(phi) * sin((x * _DEG - lam0) * 0.5) ** 2
            return ok(two_r * asin(sqrt(min(1.0, a))))

        def near_geom(g: shapely.Geometry) -> bool:
            return ok(distance_m(lon0, lat0, g))

        box = None if q.max_distance is None else _near_box((lon0, lat0, lon0, lat0),
                                                             q.max_distance)
        return near_xy, near_geom, box

    if rel == "within":  # entity within reference  <=>  reference contains entity
        return (lambda x, y: bool(shapely.contains_xy(ref, x, y)),
                lambda g: bool(shapely.contains(ref, g)), ref_box)
    if rel == "intersects":
        return (lambda x, y: bool(shapely.intersects_xy(ref, x, y)),
                lambda g: bool(shapely.intersects(ref, g)), ref_box)
    if rel == "disjoint":
        return (lambda x, y: not shapely.intersects_xy(ref, x, y),
                lambda g: bool(shapely.disjoint(ref, g)), None)
    if rel == "overlaps":
        # a single point never overlaps anything (DE-9IM overlaps needs both geometries to
        # have points outside the other)
        return (lambda x, y: False, lambda g: bool(shapely.overlaps(ref, g)), ref_box)

    # contains (entity contains reference) and equals: a point entity can only contain or
    # equal a reference made of that very point.
    if isinstance(ref, shapely.Point):
        rx, ry = float(ref.x), float(ref.y)

        def same_xy(x: float, y: float) -> bool:
            return x == rx and y == ry
        point_pred = same_xy
    elif rel == "contains":
        def point_pred(x: float, y: float) -> bool:
            return bool(shapely.within(ref, shapely.Point(x, y)))
    else:
        def point_pred(x: float, y: float) -> bool:
            return bool(shapely.equals(ref, shapely.Point(x, y)))
    if rel == "contains":
        return point_pred, lambda g: bool(shapely.within(ref, g)), ref_box
    return point_pred, lambda g: bool(shapely.equals(ref, g)), ref_box


def prefilter_bbox(q: GeoQuery) -> Box | None:
    """A box that every geometry matching ``q`` intersects, for an R*Tree pre-filter.

    ``near``: the reference point expanded by maxDistance (converted to degrees, conservative
    at the box's most polar latitude, whole longitude range near the poles or across the
    antimeridian); the spatial relations other than ``disjoint``: the reference geometry's
    box. ``None`` where no box is possible (``disjoint``, ``near`` with only minDistance).
    """
    return q._box


def matches(q: GeoQuery, value_geojson: dict[str, Any]) -> bool:
    """The exact geo-query predicate for one stored GeoProperty value (clause 4.10).

    A value that is not a usable GeoJSON geometry never matches.
    """
    try:
        gtype = value_geojson["type"]
        if gtype == "Point":
            c = value_geojson["coordinates"]
            return q._on_xy(float(c[0]), float(c[1]))
        geom = _build_value(value_geojson)
        return q._on_geom(geom)
    except (KeyError, TypeError, IndexError, ValueError, GEOSException):
        return False


def _parse_distance(name: str, text: str) -> float:
    if not text:
        raise BadRequestData(
            f"Georel modifier {name} has no value: expected {name}==<distance in metres>")
    if not _DISTANCE_RE.match(text):
        raise BadRequestData(
            f"Georel modifier {name}=={text} is not a number of metres "
            "(give a plain number, without units)")
    value = float(text)
    if not math.isfinite(value):
        raise BadRequestData(f"Georel modifier {name}=={text} is not a finite distance")
    if value <= 0:
        raise BadRequestData(f"Georel modifier {name}=={text} must be a positive number of "
                             "metres (clause 4.10: PositiveNumber excludes 0 and negatives)")
    return value


def parse_georel(text: str) -> tuple[str, float | None, float | None]:
    """Parse a ``georel`` (clause 4.10): ``(relation, maxDistance, minDistance)``.

    Grammar: ``near;maxDistance==<m>`` or ``near;minDistance==<m>`` (``nearRel``: exactly one
    distance modifier, a positive number) or one of ``within``, ``contains``, ``intersects``,
    ``equals``, ``disjoint``, ``overlaps`` without modifiers.
    """
    parts = [p.strip() for p in text.split(";")]
    rel, mods = parts[0], parts[1:]
    if rel not in GEORELS:
        raise BadRequestData(
            f"Unknown georel {_echo(rel)}: expected one of {', '.join(sorted(GEORELS))}")
    if rel != "near":
        if mods:
            raise BadRequestData(
                f"Georel '{rel}' takes no modifier, got {_echo(';'.join(mods))}")
        return rel, None, None
    if not mods or mods == [""]:
        raise BadRequestData(
            "Georel 'near' requires maxDistance or minDistance, e.g. near;maxDistance==2000")
    if len(mods) > 1:
        raise BadRequestData(
            f"Georel 'near' takes exactly one distance modifier, got {_echo(';'.join(mods))}")
    found: dict[str, float] = {}
    for mod in mods:
        name, sep, num = mod.partition("==")
        name = name.strip()
        if name not in ("maxDistance", "minDistance"):
            raise BadRequestData(
                f"Unknown georel modifier {_echo(mod)}: expected maxDistance==<metres> or "
                "minDistance==<metres>")
        if not sep:
            raise BadRequestData(
                f"Georel modifier {_echo(mod)} is not of the form {name}==<distance in metres>")
        if name in found:
            raise BadRequestData(f"Georel modifier {name} is given twice")
        found[name] = _parse_distance(name, num.strip())
    return rel, found.get("maxDistance"), found.get("minDistance")


@lru_cache(maxsize=512)
def _reference(geometry: str, coordinates: str) -> shapely.Geometry:
    """Parse (and cache) a reference geometry; ``coordinates`` is JSON text."""
    if geometry not in QUERY_GEOMETRIES:
        raise BadRequestData(
            f"Unsupported geometry {_echo(geometry)}: expected one of "
            f"{', '.join(QUERY_GEOMETRIES)}")
    try:
        coords = json.loads(coordinates)
    except ValueError:
        raise BadRequestData(
            f"Coordinates {_echo(coordinates)} are not a JSON array") from None
    if not isinstance(coords, list):
        raise BadRequestData(f"Coordinates {_echo(coordinates)} are not a JSON array")
    dims: set[int] = set()
    checked = _check_coordinates(geometry, coords, "coordinates", dims)
    geom = _make(geometry, checked, dims, f"{geometry} coordinates")
    shapely.prepare(geom)
    return geom


def expand_geoproperty(geoproperty: str | None, expand: Callable[[str], str]) -> str:
    """Expand the ``geoproperty`` term (default ``location``) to its IRI (clause 4.10)."""
    if geoproperty is None:
        return DEFAULT_GEOPROPERTY
    if not isinstance(geoproperty, str) or not geoproperty.strip():
        raise BadRequestData(f"geoproperty {_echo(geoproperty)} is not an attribute name")
    name = geoproperty.strip()
    if any(ch.isspace() for ch in name):
        raise BadRequestData(f"geoproperty {_echo(name)} is not an attribute name")
    core = CORE_GEOPROPERTIES.get(name)
    return core if core is not None else expand(name)


def parse_geoquery(georel: str | None, geometry: str | None, coordinates: str | list[Any] | None,
                   geoproperty: str | None, expand: Callable[[str], str]) -> GeoQuery | None:
    """Parse the geo-query members of a query or subscription ``geoQ`` (clause 4.10).

    ``georel``, ``geometry`` and ``coordinates`` must be all present (a :class:`GeoQuery` is
    returned) or all absent (``None``; ``geoproperty`` alone is then ignored). ``coordinates``
    is the JSON text sent in a URL or the already-parsed array of a ``geoQ`` / query body.
    ``geoproperty`` is a term expanded with ``expand`` (the core names ``location``,
    ``observationSpace`` and ``operationSpace`` map to the core IRIs). Any malformed member
    raises :class:`BadRequestData`.
    """
    given = {"georel": georel, "geometry": geometry, "coordinates": coordinates}
    present = [k for k, v in given.items() if v is not None]
    if not present:
        return None
    if len(present) < 3:
        missing = [k for k in given if given[k] is None]
        raise BadRequestData(
            f"Incomplete geo-query: {', '.join(present)} given without {', '.join(missing)} "
            "(georel, geometry and coordinates go together)")
    assert georel is not None and geometry is not None and coordinates is not None
    if not isinstance(georel, str):
        raise BadRequestData(f"georel {_echo(georel)} is not a string")
    if not isinstance(geometry, str):
        raise BadRequestData(f"geometry {_echo(geometry)} is not a string")
    rel, max_d, min_d = parse_georel(georel)
    if isinstance(coordinates, str):
        coord_text = coordinates.strip()
        if not coord_text:
            raise BadRequestData("Coordinates are empty")
    elif isinstance(coordinates, (list, tuple)):
        try:
            coord_text = json.dumps(coordinates, allow_nan=True)
        except (TypeError, ValueError):
            raise BadRequestData(f"Coordinates {_echo(coordinates)} are not JSON") from None
    else:
        raise BadRequestData(f"Coordinates {_echo(coordinates)} are not an array")
    geometry = geometry.strip()
    ref = _reference(geometry, coord_text)
    return GeoQuery(rel, ref, expand_geoproperty(geoproperty, expand), max_d, min_d)
