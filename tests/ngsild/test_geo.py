"""Tests of cityvisor.ngsild.geo: geo-queries (ETSI GS CIM 009 v1.8, clause 4.10) and
GeoProperty values (clause 4.7.1), with real places in Nîmes."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import shapely
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cityvisor.ngsild.errors import BadRequestData
from cityvisor.ngsild.geo import (
    DEFAULT_GEOPROPERTY,
    EARTH_RADIUS_M,
    GEORELS,
    GeoQuery,
    bbox,
    distance_m,
    haversine_m,
    matches,
    parse_geojson,
    parse_geoquery,
    prefilter_bbox,
)

VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"


def expand(term: str) -> str:
    return VOCAB + term


def gq(georel: str, geometry: str, coordinates: object, geoproperty: str | None = None
       ) -> GeoQuery:
    if not isinstance(coordinates, str):
        coordinates = json.dumps(coordinates)
    q = parse_geoquery(georel, geometry, coordinates, geoproperty, expand)
    assert q is not None
    return q


def point(lon: float, lat: float) -> dict:
    return {"type": "Point", "coordinates": [lon, lat]}


def in_box(box: tuple[float, float, float, float], lon: float, lat: float) -> bool:
    return box[0] <= lon <= box[2] and box[1] <= lat <= box[3]


ARENES = (4.3597, 43.8349)
MAISON_CARREE = (4.3561, 43.8384)
TOUR_MAGNE = (4.3472, 43.8452)
JARDINS_FONTAINE = (4.3494, 43.8408)
GARE = (4.3661, 43.8326)
MONTPELLIER = (3.8767, 43.6108)
NIMES = (4.3601, 43.8367)
# a box around the Écusson (historic centre), counter-clockwise
ECUSSON = [[[4.3540, 43.8330], [4.3640, 43.8330], [4.3640, 43.8400], [4.3540, 43.8400],
            [4.3540, 43.8330]]]
ECUSSON_GEOJSON = {"type": "Polygon", "coordinates": ECUSSON}
# the Avenue Jean Jaurès, running north-south west of the Écusson... and a line crossing it
CROSSING_LINE = {"type": "LineString", "coordinates": [[4.3500, 43.8360], [4.3700, 43.8370]]}
OUTSIDE_LINE = {"type": "LineString", "coordinates": [[4.3400, 43.8450], [4.3450, 43.8460]]}


# --------------------------------------------------------------------------------------------
# distances
# --------------------------------------------------------------------------------------------


def test_haversine_known_distances() -> None:
    # one degree of latitude on the mean sphere
    assert haversine_m(0, 0, 0, 1) == pytest.approx(EARTH_RADIUS_M * math.pi / 180, rel=1e-12)
    # Paris (Notre-Dame) - London (Charing Cross): 343.56 km on the mean sphere
    assert haversine_m(2.3522, 48.8566, -0.1278, 51.5074) == pytest.approx(343_556, abs=50)
    # Nîmes - Montpellier, city centres: about 46 km as the crow flies
    assert haversine_m(*NIMES, *MONTPELLIER) == pytest.approx(46_260, rel=0.01)
    assert haversine_m(*ARENES, *ARENES) == 0.0
    assert haversine_m(*ARENES, *MAISON_CARREE) == pytest.approx(485, abs=5)


def test_distance_to_line_and_polygon_local_projection() -> None:
    # a meridian segment 1 km east of the Arènes: the distance is ~ the east-west offset
    lon0, lat0 = ARENES
    dlon = 1000 / (EARTH_RADIUS_M * math.cos(math.radians(lat0))) * 180 / math.pi
    line = shapely.LineString([(lon0 + dlon, lat0 - 0.05), (lon0 + dlon, lat0 + 0.05)])
    assert distance_m(lon0, lat0, line) == pytest.approx(1000, rel=0.005)
    # nearest vertex far away (~ 40 km): agrees with haversine to the vertex
    far = shapely.LineString([MONTPELLIER, (3.80, 43.50)])
    assert distance_m(lon0, lat0, far) == pytest.approx(haversine_m(*ARENES, *MONTPELLIER),
                                                        rel=0.005)
    # inside a polygon: 0
    assert distance_m(lon0, lat0, parse_geojson(ECUSSON_GEOJSON)) == 0.0


# --------------------------------------------------------------------------------------------
# georels
# --------------------------------------------------------------------------------------------


def test_near_max_distance() -> None:
    assert matches(gq("near;maxDistance==1000", "Point", ARENES), point(*MAISON_CARREE))
    assert not matches(gq("near;maxDistance==300", "Point", ARENES), point(*MAISON_CARREE))
    assert matches(gq("near;maxDistance==300", "Point", ARENES), point(*ARENES))
    assert not matches(gq("near;maxDistance==1000", "Point", ARENES), point(*MONTPELLIER))


def test_near_min_distance() -> None:
    assert matches(gq("near;minDistance==300", "Point", ARENES), point(*MAISON_CARREE))
    assert not matches(gq("near;minDistance==1000", "Point", ARENES), point(*MAISON_CARREE))
    assert prefilter_bbox(gq("near;minDistance==300", "Point", ARENES)) is None


def test_near_takes_exactly_one_positive_distance() -> None:
    # clause 4.10: nearRel = nearOp andOp distance equal PositiveNumber
    for georel in ("near;minDistance==300;maxDistance==1000", "near;maxDistance==0",
                   "near;minDistance==0", "near;maxDistance==1e400"):
        with pytest.raises(BadRequestData):
            gq(georel, "Point", ARENES)


def test_near_an_extended_reference_measures_from_its_closest_point() -> None:
    # a line from the Arenes 1 km westwards: the Maison Carree (~485 m from the Arenes) lies
    # ~390 m north of the line; the Tour Magne ~1.1 km north of its western end
    line = [[ARENES[0] - 0.0125, ARENES[1]], list(ARENES)]
    assert matches(gq("near;maxDistance==600", "LineString", line), point(*MAISON_CARREE))
    assert not matches(gq("near;maxDistance==300", "LineString", line), point(*TOUR_MAGNE))
    far_line = [[lon + 1.0, lat] for lon, lat in line]
    assert not matches(gq("near;maxDistance==600", "LineString", far_line),
                       point(*MAISON_CARREE))
    box = prefilter_bbox(gq("near;maxDistance==600", "LineString", line))
    assert box is not None and box[0] < line[0][0] and box[2] > line[1][0]
    assert matches(gq("near;maxDistance==50", "LineString", line), ECUSSON_GEOJSON)


def test_near_non_point_geometries() -> None:
    q = gq("near;maxDistance==200", "Point", ARENES)
    # the Arènes lie inside the Écusson
    assert matches(q, ECUSSON_GEOJSON)
    assert matches(q, CROSSING_LINE)  # the line passes ~ 150 m north of the Arènes
    assert not matches(q, OUTSIDE_LINE)
    assert matches(q, {"type": "MultiPoint", "coordinates": [list(TOUR_MAGNE), list(GARE)]}) \
        is False
    assert matches(gq("near;maxDistance==600", "Point", ARENES),
                   {"type": "MultiPoint", "coordinates": [list(TOUR_MAGNE), list(GARE)]})
    assert matches(q, {"type": "GeometryCollection",
                       "geometries": [point(*TOUR_MAGNE), ECUSSON_GEOJSON]})
    assert not matches(gq("near;minDistance==10", "Point", ARENES), ECUSSON_GEOJSON)
    gc = {"type": "GeometryCollection", "geometries": [point(*ARENES), point(*MAISON_CARREE)]}
    assert matches(gq("within", "Polygon", ECUSSON), gc)
    assert not matches(gq("within", "Polygon", ECUSSON),
                       {"type": "GeometryCollection", "geometries": [point(*TOUR_MAGNE)]})


def test_within_point_in_and_out_of_polygon() -> None:
    q = gq("within", "Polygon", ECUSSON)
    assert matches(q, point(*ARENES))
    assert matches(q, point(*MAISON_CARREE))
    assert not matches(q, point(*TOUR_MAGNE))
    assert not matches(q, point(*GARE))
    assert not matches(q, point(4.3540, 43.8350))  # on the boundary: not within
    assert matches(q, {"type": "LineString", "coordinates": [list(ARENES), list(MAISON_CARREE)]})
    assert not matches(q, CROSSING_LINE)


def test_within_polygon_with_hole() -> None:
    hole = [[4.3590, 43.8340], [4.3590, 43.8360], [4.3610, 43.8360], [4.3610, 43.8340],
            [4.3590, 43.8340]]
    q = gq("within", "Polygon", [ECUSSON[0], hole])
    assert not matches(q, point(*ARENES))
    assert matches(q, point(*MAISON_CARREE))


def test_intersects_line_crossing_polygon() -> None:
    q = gq("intersects", "Polygon", ECUSSON)
    assert matches(q, CROSSING_LINE)
    assert not matches(q, OUTSIDE_LINE)
    assert matches(q, point(4.3540, 43.8350))  # boundary point intersects
    assert matches(q, point(*ARENES))
    q_line = gq("intersects", "LineString", CROSSING_LINE["coordinates"])
    assert matches(q_line, ECUSSON_GEOJSON)
    assert matches(q_line, point(4.3500, 43.8360))
    assert not matches(q_line, point(*ARENES))


def test_contains() -> None:
    # entity geometry contains the reference geometry
    q = gq("contains", "Point", ARENES)
    assert matches(q, ECUSSON_GEOJSON)
    assert not matches(q, {"type": "Polygon", "coordinates": [[
        list(TOUR_MAGNE), [4.3480, 43.8452], [4.3480, 43.8460], list(TOUR_MAGNE)]]})
    assert matches(q, point(*ARENES))
    assert not matches(q, point(*MAISON_CARREE))
    q_mp = gq("contains", "MultiPoint", [list(ARENES), list(ARENES)])
    assert matches(q_mp, point(*ARENES))
    q_poly = gq("contains", "Polygon", ECUSSON)
    assert not matches(q_poly, point(*ARENES))
    assert matches(q_poly, {"type": "Polygon", "coordinates": [[
        [4.35, 43.83], [4.37, 43.83], [4.37, 43.85], [4.35, 43.85], [4.35, 43.83]]]})


def test_equals_is_topological() -> None:
    q = gq("equals", "Polygon", ECUSSON)
    # same polygon, other start vertex and orientation
    ring = ECUSSON[0][:-1][::-1]
    rotated = ring[2:] + ring[:2]
    assert matches(q, {"type": "Polygon", "coordinates": [rotated + [rotated[0]]]})
    assert not matches(q, CROSSING_LINE)
    qp = gq("equals", "Point", ARENES)
    assert matches(qp, point(*ARENES))
    assert matches(qp, {"type": "Point", "coordinates": [*ARENES, 60.0]})
    assert not matches(qp, point(*GARE))
    assert matches(qp, {"type": "MultiPoint", "coordinates": [list(ARENES)]})


def test_disjoint() -> None:
    q = gq("disjoint", "Polygon", ECUSSON)
    assert matches(q, point(*TOUR_MAGNE))
    assert not matches(q, point(*ARENES))
    assert not matches(q, point(4.3540, 43.8350))  # boundary touches
    assert matches(q, OUTSIDE_LINE)
    assert not matches(q, CROSSING_LINE)
    assert prefilter_bbox(q) is None


def test_overlaps() -> None:
    q = gq("overlaps", "Polygon", ECUSSON)
    shifted = [[[4.3600, 43.8380], [4.3700, 43.8380], [4.3700, 43.8450], [4.3600, 43.8450],
                [4.3600, 43.8380]]]
    assert matches(q, {"type": "Polygon", "coordinates": shifted})
    assert not matches(q, ECUSSON_GEOJSON)  # equal geometries do not overlap
    assert not matches(q, point(*ARENES))
    assert not matches(q, CROSSING_LINE)  # different dimensions


def test_malformed_stored_values_never_match() -> None:
    q = gq("intersects", "Polygon", ECUSSON)
    for bad in ({}, {"type": "Point"}, {"type": "Point", "coordinates": []},
                {"type": "Polygon", "coordinates": "x"}, {"type": "Circle", "coordinates": [0]}):
        assert matches(q, bad) is False


def test_geoproperty_expansion() -> None:
    assert gq("within", "Polygon", ECUSSON).geoproperty == DEFAULT_GEOPROPERTY
    assert gq("within", "Polygon", ECUSSON, "observationSpace").geoproperty == \
        "https://uri.etsi.org/ngsi-ld/observationSpace"
    assert gq("within", "Polygon", ECUSSON, "operationSpace").geoproperty == \
        "https://uri.etsi.org/ngsi-ld/operationSpace"
    assert gq("within", "Polygon", ECUSSON, "footprint").geoproperty == VOCAB + "footprint"


def test_parse_geoquery_list_coordinates_and_absent() -> None:
    q = parse_geoquery("near;maxDistance==2000", "Point", [4.36, 43.84], None, expand)
    assert q is not None and q.georel == "near" and q.max_distance == 2000.0
    assert q.geometry.equals(shapely.Point(4.36, 43.84))
    assert parse_geoquery(None, None, None, None, expand) is None
    assert parse_geoquery(None, None, None, "location", expand) is None
    # cached reference geometries are shared and prepared
    q2 = parse_geoquery("near;maxDistance==10", "Point", "[4.36,43.84]", None, expand)
    q3 = parse_geoquery("near;minDistance==10", "Point", "[4.36,43.84]", None, expand)
    assert q2 is not None and q3 is not None and shapely.is_prepared(q2.geometry)
    assert q2.geometry is q3.geometry


@pytest.mark.parametrize(
    ("georel", "geometry", "coordinates", "fragment"),
    [
        ("near;maxDistance==100", None, None, "without geometry, coordinates"),
        (None, "Point", "[4.36,43.84]", "without georel"),
        ("within", "Polygon", None, "without coordinates"),
        ("around", "Point", "[4.36,43.84]", "Unknown georel 'around'"),
        ("Within", "Point", "[4.36,43.84]", "Unknown georel"),
        ("near", "Point", "[4.36,43.84]", "requires maxDistance or minDistance"),
        ("near;", "Point", "[4.36,43.84]", "requires maxDistance"),
        ("near;maxDistance", "Point", "[4.36,43.84]", "not of the form maxDistance=="),
        ("near;maxDistance==", "Point", "[4.36,43.84]", "maxDistance has no value"),
        ("near;maxDistance==2km", "Point", "[4.36,43.84]", "without units"),
        ("near;maxDistance==-5", "Point", "[4.36,43.84]", "must be a positive number"),
        ("near;maxDistance==0", "Point", "[4.36,43.84]", "must be a positive number"),
        ("near;maxDistance==inf", "Point", "[4.36,43.84]", "not a number of metres"),
        ("near;maxDistance:2000", "Point", "[4.36,43.84]", "Unknown georel modifier"),
        ("near;radius==2000", "Point", "[4.36,43.84]", "Unknown georel modifier"),
        ("near;maxDistance==1;maxDistance==2", "Point", "[4.36,43.84]", "exactly one"),
        ("near;minDistance==5;maxDistance==2", "Point", "[4.36,43.84]", "exactly one"),
        ("within;maxDistance==2", "Polygon", json.dumps(ECUSSON), "takes no modifier"),
        ("within", "Circle", "[4.36,43.84]", "Unsupported geometry 'Circle'"),
        ("within", "point", "[4.36,43.84]", "Unsupported geometry"),
        ("within", "GeometryCollection", "[]", "Unsupported geometry"),
        ("intersects", "Point", "4.36,43.84", "not a JSON array"),
        ("intersects", "Point", "[4.36,43.84", "not a JSON array"),
        ("intersects", "Point", "", "empty"),
        ("intersects", "Point", '{"a": 1}', "not a JSON array"),
        ("intersects", "Point", "[4.36]", "not a position"),
        ("intersects", "Point", "[4.36, 43.84, 1, 2]", "not a position"),
        ("intersects", "Point", '[4.36, "43.84"]', "coordinates[1] is not a number"),
        ("intersects", "Point", "[true, 43.84]", "coordinates[0] is not a number"),
        ("intersects", "Point", "[NaN, 43.84]", "not a finite number"),
        ("intersects", "Point", "[190, 43.84]", "longitude 190 is out of range"),
        ("intersects", "Point", "[4.36, -91]", "latitude -91 is out of range"),
        ("intersects", "Point", "[[4.36, 43.84]]", "not a position"),
        ("intersects", "MultiPoint", "[]", "at least 1"),
        ("intersects", "LineString", "[[4.36, 43.84]]", "at least 2"),
        ("intersects", "MultiLineString", "[[4.36, 43.84], [4.37, 43.85]]", "not a position"),
        ("within", "Polygon", "[[[4.35,43.83],[4.37,43.83],[4.37,43.85],[4.35,43.85]]]",
         "not a closed linear ring"),
        ("within", "Polygon", "[[[4.35,43.83],[4.37,43.83],[4.35,43.83]]]", "at least 4"),
        ("within", "Polygon", "[]", "at least 1"),
        ("within", "Polygon", "[[4.35,43.83],[4.37,43.83],[4.37,43.85],[4.35,43.83]]",
         "not a position"),
        ("within", "Polygon",
         "[[[4.35,43.83],[4.37,43.85],[4.37,43.83],[4.35,43.85],[4.35,43.83]]]",
         "Self-intersection"),
        ("within", "MultiPolygon", "[[[4.35,43.83],[4.37,43.83],[4.37,43.85],[4.35,43.83]]]",
         "not a position"),
    ],
)
def test_parse_geoquery_errors(georel: str | None, geometry: str | None,
                               coordinates: str | None, fragment: str) -> None:
    with pytest.raises(BadRequestData) as err:
        parse_geoquery(georel, geometry, coordinates, None, expand)
    assert fragment in err.value.detail
    assert err.value.status == 400


@pytest.mark.parametrize("geoproperty", ["", "  ", "my location"])
def test_parse_geoquery_bad_geoproperty(geoproperty: str) -> None:
    with pytest.raises(BadRequestData, match="geoproperty"):
        parse_geoquery("within", "Polygon", ECUSSON, geoproperty, expand)


def test_geoquery_constructor_checks() -> None:
    with pytest.raises(BadRequestData):
        GeoQuery("close", shapely.Point(*ARENES))
    with pytest.raises(BadRequestData):
        GeoQuery("near", shapely.Point(*ARENES))
    assert GeoQuery("near", shapely.LineString([ARENES, GARE]), max_distance=5.0).georel == "near"
    with pytest.raises(BadRequestData):
        GeoQuery("within", shapely.Point(*ARENES), max_distance=5.0)
    q = GeoQuery("near", shapely.Point(*ARENES), max_distance=1000.0)
    assert q == GeoQuery("near", shapely.Point(*ARENES), max_distance=1000.0)
    assert matches(q, point(*MAISON_CARREE))
    assert {"near", "within", "contains", "intersects", "equals", "disjoint",
                       "overlaps"} == GEORELS


# --------------------------------------------------------------------------------------------
# parse_geojson and bbox
# --------------------------------------------------------------------------------------------


def test_parse_geojson_valid() -> None:
    assert parse_geojson(point(*ARENES)).equals(shapely.Point(*ARENES))
    g = parse_geojson({"type": "Point", "coordinates": [4.36, 43.84, 55]})
    assert g.has_z
    assert parse_geojson(ECUSSON_GEOJSON).area > 0
    gc = parse_geojson({"type": "GeometryCollection",
                        "geometries": [point(*ARENES), CROSSING_LINE]})
    assert len(gc.geoms) == 2
    mixed = parse_geojson({"type": "LineString", "coordinates": [[4.36, 43.84, 1], [4.37, 43.85]]})
    assert not mixed.has_z
    assert parse_geojson({"type": "Point", "coordinates": [180, -90], "bbox": [0, 0, 0, 0]})


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("POINT (4 43)", "not a GeoJSON geometry object"),
        ({"coordinates": [4, 43]}, "unsupported GeoJSON type"),
        ({"type": "Feature", "geometry": point(4, 43)}, "unsupported GeoJSON type 'Feature'"),
        ({"type": "Point"}, "has no 'coordinates'"),
        ({"type": "GeometryCollection"}, "has no 'geometries'"),
        ({"type": "GeometryCollection", "geometries": []}, "at least 1"),
        ({"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [999, 0]}]},
         "geometries[0].coordinates: longitude 999"),
        ({"type": "Point", "coordinates": [False, 43]}, "coordinates[0] is not a number"),
        ({"type": "Point", "coordinates": [4, None]}, "coordinates[1] is not a number"),
        ({"type": "Point", "coordinates": [4, 91]}, "latitude 91 is out of range"),
        ({"type": "Point", "coordinates": [-181, 0]}, "longitude -181 is out of range"),
        ({"type": "Point", "coordinates": [float("inf"), 0]}, "not a finite number"),
        ({"type": "Point", "coordinates": 4}, "not a position"),
        ({"type": "LineString", "coordinates": [[4, 43]]}, "at least 2"),
        ({"type": "Polygon", "coordinates": [[[4, 43], [5, 43], [5, 44], [4, 43.5]]]},
         "coordinates[0] is not a closed linear ring"),
        ({"type": "MultiPolygon", "coordinates": [ECUSSON, [[[4, 43], [5, 43], [5, 44]]]]},
         "coordinates[1][0] has 3 positions, at least 4"),
        ({"type": "MultiLineString", "coordinates": []}, "at least 1"),
    ],
)
def test_parse_geojson_errors(value: object, fragment: str) -> None:
    with pytest.raises(BadRequestData) as err:
        parse_geojson(value)
    assert fragment in err.value.detail


def test_bbox() -> None:
    assert bbox(point(*ARENES)) == (ARENES[0], ARENES[1], ARENES[0], ARENES[1])
    assert bbox(ECUSSON_GEOJSON) == (4.3540, 43.8330, 4.3640, 43.8400)
    assert bbox(CROSSING_LINE) == (4.35, 43.836, 4.37, 43.837)
    assert bbox({"type": "MultiPolygon", "coordinates": [ECUSSON]}) == bbox(ECUSSON_GEOJSON)
    assert bbox({"type": "MultiLineString", "coordinates": [CROSSING_LINE["coordinates"]]}) == \
        bbox(CROSSING_LINE)
    assert bbox({"type": "GeometryCollection",
                 "geometries": [point(*TOUR_MAGNE), point(*GARE)]}) == \
        (TOUR_MAGNE[0], GARE[1], GARE[0], TOUR_MAGNE[1])
    with pytest.raises(BadRequestData):
        bbox({"type": "Point"})
    with pytest.raises(BadRequestData):
        bbox({"type": "Circle", "coordinates": []})


def test_prefilter_boxes() -> None:
    assert prefilter_bbox(gq("within", "Polygon", ECUSSON)) == (4.3540, 43.8330, 4.3640, 43.8400)
    box = prefilter_bbox(gq("near;maxDistance==1000", "Point", ARENES))
    assert box is not None and in_box(box, *MAISON_CARREE) and not in_box(box, *MONTPELLIER)
    # near the pole and across the antimeridian: whole longitude range
    polar = prefilter_bbox(gq("near;maxDistance==50000", "Point", [10, 89.9]))
    assert polar is not None and polar[0] == -180 and polar[2] == 180 and polar[3] == 90
    anti = prefilter_bbox(gq("near;maxDistance==50000", "Point", [179.9, 0]))
    assert anti is not None and anti[0] == -180 and anti[2] == 180


# --------------------------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------------------------

lons = st.floats(-180, 180, allow_nan=False)
lats = st.floats(-89, 89, allow_nan=False)
near_nimes = st.tuples(st.floats(4.0, 4.7), st.floats(43.6, 44.1))
distances = st.floats(0, 200_000, allow_nan=False)
offsets = st.floats(-2.0, 2.0, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(st.tuples(lons, lats), st.tuples(offsets, offsets), distances)
def test_near_max_min_partition(ref: tuple[float, float], off: tuple[float, float],
                                d: float) -> None:
    lon = max(-180.0, min(180.0, ref[0] + off[0]))
    lat = max(-90.0, min(90.0, ref[1] + off[1]))
    value = point(lon, lat)
    within_max = matches(GeoQuery("near", shapely.Point(*ref), max_distance=d), value)
    beyond_min = matches(GeoQuery("near", shapely.Point(*ref), min_distance=d), value)
    dist = haversine_m(ref[0], ref[1], lon, lat)
    if abs(dist - d) > 1e-6:
        assert within_max != beyond_min
        assert within_max == (dist < d)
    else:
        assert within_max or beyond_min


@settings(max_examples=200, deadline=None)
@given(st.tuples(lons, lats), st.tuples(offsets, offsets), distances)
def test_near_matches_lie_in_prefilter_box(ref: tuple[float, float],
                                           off: tuple[float, float], d: float) -> None:
    lon = max(-180.0, min(180.0, ref[0] + off[0]))
    lat = max(-90.0, min(90.0, ref[1] + off[1]))
    q = GeoQuery("near", shapely.Point(*ref), max_distance=d)
    box = prefilter_bbox(q)
    assert box is not None
    if matches(q, point(lon, lat)):
        assert in_box(box, lon, lat)


@st.composite
def star_polygons(draw: st.DrawFn, centre: st.SearchStrategy = near_nimes) -> list:
    """A simple (star-shaped) polygon ring around a centre: always valid."""
    cx, cy = draw(centre)
    n = draw(st.integers(3, 12))
    angles = sorted(draw(st.lists(st.floats(0, 2 * math.pi, exclude_max=True), min_size=n,
                                  max_size=n, unique=True)))
    assume(all(b - a > 1e-3 for a, b in itertools.pairwise(angles)))
    assume(2 * math.pi - angles[-1] + angles[0] > 1e-3)
    radii = draw(st.lists(st.floats(0.001, 0.05), min_size=n, max_size=n))
    ring = [[cx + r * math.cos(a), cy + r * math.sin(a)] for a, r in zip(angles, radii,
                                                                         strict=True)]
    assume(shapely.Polygon(ring).is_valid)
    return ring + [ring[0]]


@settings(max_examples=100, deadline=None)
@given(star_polygons(), st.lists(near_nimes, min_size=1, max_size=20))
def test_within_and_intersects_agree_with_shapely(ring: list, pts: list) -> None:
    poly = shapely.Polygon(ring)
    q_within = gq("within", "Polygon", [ring])
    q_inter = gq("intersects", "Polygon", [ring])
    box = prefilter_bbox(q_within)
    assert box is not None and box == prefilter_bbox(q_inter)
    for lon, lat in pts:
        p = shapely.Point(lon, lat)
        assert matches(q_within, point(lon, lat)) == poly.contains(p)
        assert matches(q_inter, point(lon, lat)) == poly.intersects(p)
        if matches(q_within, point(lon, lat)) or matches(q_inter, point(lon, lat)):
            assert in_box(box, lon, lat)
        assert matches(gq("disjoint", "Polygon", [ring]), point(lon, lat)) == poly.disjoint(p)


positions = st.lists(st.tuples(st.floats(-180, 180), st.floats(-90, 90)).map(list),
                     min_size=1, max_size=6)


@st.composite
def valid_geojson(draw: st.DrawFn, depth: int = 0) -> dict:
    kinds = ["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"]
    if depth == 0:
        kinds.append("GeometryCollection")
    kind = draw(st.sampled_from(kinds))
    if kind == "Point":
        return {"type": kind, "coordinates": draw(positions)[0]}
    if kind == "MultiPoint":
        return {"type": kind, "coordinates": draw(positions)}
    if kind == "LineString":
        return {"type": kind, "coordinates": draw(positions.filter(lambda p: len(p) >= 2))}
    if kind == "MultiLineString":
        return {"type": kind, "coordinates": draw(st.lists(
            positions.filter(lambda p: len(p) >= 2), min_size=1, max_size=3))}
    if kind == "Polygon":
        return {"type": kind, "coordinates": [draw(star_polygons())]}
    if kind == "MultiPolygon":
        # two stars far apart never intersect
        a = draw(star_polygons(st.just((4.3, 43.8))))
        b = draw(star_polygons(st.just((5.3, 44.8))))
        return {"type": kind, "coordinates": [[a], [b]]}
    members = draw(st.lists(valid_geojson(depth + 1), min_size=1, max_size=3))
    return {"type": kind, "geometries": members}


@settings(max_examples=150, deadline=None)
@given(valid_geojson())
def test_parse_geojson_round_trip(value: dict) -> None:
    geom = parse_geojson(value)
    assert shapely.is_valid(geom) or value["type"] in ("MultiLineString", "GeometryCollection",
                                                        "LineString")
    back = json.loads(shapely.to_geojson(geom))
    assert back["type"] == value["type"]
    assert shapely.equals_exact(parse_geojson(back), geom, tolerance=0)
    assert shapely.equals_exact(shapely.geometry.shape(value), geom, tolerance=0)
    # bbox agrees with shapely for everything but collections of polygons with holes
    assert bbox(value) == pytest.approx(tuple(shapely.bounds(geom)))


corruptions = st.sampled_from([
    ("lon", 180.5), ("lon", -1000), ("lat", 90.01), ("lat", -95), ("lon", True),
    ("lat", "43.8"), ("lon", None), ("lat", float("nan")),
])


@settings(max_examples=100, deadline=None)
@given(valid_geojson(depth=1), corruptions, st.data())
def test_parse_geojson_rejects_corrupted_positions(value: dict, corruption: tuple,
                                                   data: st.DataObject) -> None:
    coords = value["coordinates"]
    # walk down to a random position
    holder, index = value, "coordinates"
    node = coords
    while isinstance(node[0], list):
        i = data.draw(st.integers(0, len(node) - 1))
        holder, index, node = node, i, node[i]
    axis, bad = corruption
    node = list(node)
    node[0 if axis == "lon" else 1] = bad
    holder[index] = node
    with pytest.raises(BadRequestData):
        parse_geojson(value)


@settings(max_examples=50, deadline=None)
@given(star_polygons(), st.sampled_from(["unclose", "shorten", "flatten", "extra"]))
def test_parse_geojson_rejects_bad_polygons(ring: list, how: str) -> None:
    if how == "unclose":
        ring = ring[:-1]
        assume(len(ring) >= 4)
    elif how == "shorten":
        ring = ring[:2] + [ring[0]]
    elif how == "flatten":
        value = {"type": "Polygon", "coordinates": ring}
        with pytest.raises(BadRequestData):
            parse_geojson(value)
        return
    else:
        ring = [p + [0.0, 0.0] for p in ring]
    with pytest.raises(BadRequestData):
        parse_geojson({"type": "Polygon", "coordinates": [ring]})
