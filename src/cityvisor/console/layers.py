"""Map layers of the operator console: one per kind of asset, built from one broker query.

A layer is served as compact columns, not GeoJSON, so that 35,000 streetlights travel in one
small response and the browser builds its WebGL source in one loop::

    {"kind": "streetlights", "type": "Streetlight", "context": "<SDM @context URL>",
     "count": 35000, "ids": [...], "lon": [...], "lat": [...], "state": [...], "value": [...]}

``state`` is the styling class of each asset (e.g. ``on``/``dimmed``/``off``/``faulty`` for a
lamp, a vigilance colour for a water-level gauge), ``value`` its main number (or null). The
same :func:`classify` feeds the live events, so the map and its updates agree.
"""

from __future__ import annotations

import gc
import gzip
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from cityvisor.broker.entities import QueryParams
from cityvisor.ngsild.context import CORE_IRI, TermMap, sdm_context
from cityvisor.ngsild.errors import ResourceNotFound

from .assets import file_response
from .session import ConsoleServices, Operator, json_response

LOCATION = CORE_IRI + "location"
GEO_DIR = Path(__file__).resolve().parent.parent / "data" / "geo"
GEO_FILES = {
    "communes": "nimes-metropole-communes.geojson",
    "departements": "departements-occitanie.geojson",
    "region": "region-occitanie.geojson",
}
Values = Callable[[str], Any]  # attribute term -> value of its default instance (or None)


@dataclass(frozen=True)
class Kind:
    """One map layer: which entities, which @context, how to style each one."""

    name: str
    entity_type: str
    domain: str
    classify: Callable[[Values], tuple[str, Any]]  # -> (state, value)
    accepts: Callable[[Values], bool] = lambda values: True

    @property
    def context(self) -> str:
        return sdm_context(self.domain)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _streetlight(v: Values) -> tuple[str, Any]:
    level = _number(v("illuminanceLevel"))
    status = v("status")
    if status not in (None, "ok"):
        return "faulty", level
    power = v("powerState")
    if power == "off":
        return "off", level
    if power == "low" or (level is not None and 0 < level < 0.9):
        return "dimmed", level
    return ("on" if power in ("on", "bootingUp") else "unknown"), level


def _camera(v: Values) -> tuple[str, Any]:
    on = v("on")
    return ("on" if on is True else "off" if on is False else "unknown"), None


def _rain(v: Values) -> tuple[str, Any]:
    mm = _number(v("precipitation"))
    if mm is None:
        return "unknown", None
    return ("heavy" if mm >= 10 else "moderate" if mm >= 2 else "light" if mm > 0 else "dry"), mm


def _water_level(v: Values) -> tuple[str, Any]:
    level = _number(v("currentLevel"))
    vigilance = v("vigilanceLevel")
    if vigilance in ("green", "yellow", "orange", "red"):
        return vigilance, level
    if level is None:
        return "unknown", None
    danger, alert = _number(v("dangerLevel")), _number(v("alertLevel"))
    if danger is not None and level >= danger:
        return "red", level
    if alert is not None and level >= alert:
        return "orange", level
    return "green", level


def _device(v: Values) -> tuple[str, Any]:
    state = v("deviceState")
    return ("ok" if state == "ok" else "faulty" if state else "unknown"), _number(v("batteryLevel"))


def _station(v: Values) -> tuple[str, Any]:
    return "ok", _number(v("temperature"))


def _charger(v: Values) -> tuple[str, Any]:
    status = v("status")
    known = {"working": "available", "available": "available", "full": "full",
             "outOfService": "outOfService", "withIncidence": "outOfService"}
    return known.get(status, "unknown"), _number(v("availableCapacity"))


def _waste(v: Values) -> tuple[str, Any]:
    fill = _number(v("fillingLevel"))
    status = v("status")
    if status not in (None, "ok"):
        return "incident", fill
    if fill is None:
        return "unknown", None
    return ("full" if fill >= 0.9 else "high" if fill >= 0.7 else "ok"), fill


def _traffic(v: Values) -> tuple[str, Any]:
    speed = _number(v("averageVehicleSpeed"))
    if v("congested") is True or (speed is not None and speed < 20):
        return "congested", speed
    return ("slow" if speed is not None and speed < 35 else "fluid"), speed


def _is_station(v: Values) -> bool:
    return v("temperature") is not None


def _is_seismometer(v: Values) -> bool:
    controlled = v("controlledProperty")
    return isinstance(controlled, list) and "vibration" in controlled


KINDS: dict[str, Kind] = {k.name: k for k in [
    Kind("streetlights", "Streetlight", "Streetlighting", _streetlight),
    Kind("cameras", "Camera", "Device", _camera),
    Kind("rainGauges", "WeatherObserved", "Weather", _rain, lambda v: not _is_station(v)),
    Kind("waterLevels", "FloodMonitoring", "Environment", _water_level),
    Kind("seismometers", "Device", "Device", _device, _is_seismometer),
    Kind("weatherStations", "WeatherObserved", "Weather", _station, _is_station),
    Kind("evChargers", "EVChargingStation", "Transportation", _charger),
    Kind("wasteContainers", "WasteContainer", "WasteManagement", _waste),
    Kind("trafficCounters", "TrafficFlowObserved", "Transportation", _traffic),
]}


def values_of(entity: dict[str, Any], terms: TermMap) -> Values:
    """Read the default instance's value of a compact attribute name in an expanded entity."""
    attrs = entity.get("attrs", {})

    def value(term: str) -> Any:
        instances = attrs.get(terms.expand(term))
        if not instances:
            return None
        first = instances[0]
        if "datasetId" in first:  # the default instance comes first, if any
            return None
        return first.get("value", first.get("object"))

    return value


def point_of(entity: dict[str, Any]) -> tuple[float, float] | None:
    instances = entity.get("attrs", {}).get(LOCATION)
    if not instances:
        return None
    geometry = instances[0].get("value")
    if not isinstance(geometry, dict):
        return None
    if geometry.get("type") == "Point":
        lon, lat = geometry["coordinates"][:2]
        return float(lon), float(lat)
    # lines and polygons are drawn as a point at their first vertex: enough to find them
    coordinates: Any = geometry.get("coordinates")
    while isinstance(coordinates, list) and coordinates and isinstance(coordinates[0], list):
        coordinates = coordinates[0]
    if isinstance(coordinates, list) and len(coordinates) >= 2:
        return float(coordinates[0]), float(coordinates[1])
    return None


def short_type(entity: dict[str, Any]) -> str:
    types = entity.get("type") or [""]
    return str(types[0]).rsplit("/", 1)[-1].rsplit("#", 1)[-1]


def kinds_of_type(short: str) -> list[Kind]:
    return [kind for kind in KINDS.values() if kind.entity_type == short]


async def term_map(services: ConsoleServices, kind: Kind) -> TermMap:
    return await services.contexts.term_map([kind.context])


def styled(kind: Kind, entity: dict[str, Any],
           terms: TermMap) -> tuple[tuple[float, float], str, Any] | None:
    """(point, state, value) of an asset of ``kind``, or None if it is not one (or has no
    place): what both a layer and the live events show of it."""
    values = values_of(entity, terms)
    point = point_of(entity)
    if point is None or not kind.accepts(values):
        return None
    state, value = kind.classify(values)
    return point, state, value


def feature(kind: Kind, entity: dict[str, Any], terms: TermMap) -> dict[str, Any] | None:
    """One asset of a layer as the live events carry it, or None if not of this kind."""
    found = styled(kind, entity, terms)
    if found is None:
        return None
    (lon, lat), state, value = found
    return {"kind": kind.name, "id": entity["id"], "lon": lon, "lat": lat,
            "state": state, "value": value}


async def build_layer(services: ConsoleServices, tenant: str | None, kind: Kind) -> dict[str, Any]:
    """Every asset of one kind (the whole table, not a page), in one query and one pass."""
    started = time.perf_counter()
    terms = await term_map(services, kind)
    params = QueryParams(type=kind.entity_type)
    # tens of thousands of small acyclic dicts: the cyclic GC would rescan them many times
    # while they are decoded (3-5x slower); pause it for this one query
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        entities = await services.broker.query_all(tenant, params, terms)
    finally:
        if gc_was_enabled:
            gc.enable()
    ids: list[str] = []
    lons: list[float] = []
    lats: list[float] = []
    states: list[str] = []
    numbers: list[Any] = []
    for entity in entities:
        found = styled(kind, entity, terms)
        if found is None:
            continue
        (lon, lat), state, value = found
        ids.append(entity["id"])
        lons.append(round(lon, 6))
        lats.append(round(lat, 6))
        states.append(state)
        numbers.append(value)
    return {"kind": kind.name, "type": kind.entity_type, "context": kind.context,
            "count": len(ids), "ids": ids, "lon": lons, "lat": lats, "state": states,
            "value": numbers, "builtMs": round((time.perf_counter() - started) * 1000, 1)}


def kind_named(name: str) -> Kind:
    kind = KINDS.get(name)
    if kind is None:
        raise ResourceNotFound(f"Unknown layer {name!r}; layers: {', '.join(KINDS)}")
    return kind


def layer_response(request: Request, data: dict[str, Any], served_ms: float) -> Response:
    """A layer as JSON, gzip-compressed when the client accepts it; ``Server-Timing`` gives
    the layer's build time and this answer's time (cache or build, plus serialisation)."""
    started = time.perf_counter()
    body = orjson.dumps(data)
    encoding = {}
    if len(body) > 4096 and "gzip" in request.headers.get("accept-encoding", ""):
        # repetitive ids and states: ~8x smaller, for consoles away from the server
        body = gzip.compress(body, compresslevel=1)
        encoding = {"content-encoding": "gzip"}
    served_ms += (time.perf_counter() - started) * 1000
    headers = {"server-timing": f"build;dur={data['builtMs']}, serve;dur={served_ms:.1f}",
               "vary": "accept-encoding", **encoding}
    return Response(body, media_type="application/json", headers=headers)


async def layer_list(request: Request, operator: Operator) -> Response:
    """GET /console/api/layers: the layer names, types and @contexts."""
    return json_response([{"kind": k.name, "type": k.entity_type, "context": k.context}
                          for k in KINDS.values()])


async def geography(request: Request, operator: Operator) -> Response:
    """GET /console/api/geo/{name}: bundled outlines (communes, departements, region)."""
    name = request.path_params["name"]
    file = GEO_FILES.get(name)
    if file is None:
        raise ResourceNotFound(f"Unknown geography {name!r}; choose one of {', '.join(GEO_FILES)}")
    return file_response(GEO_DIR / file, cache="public, max-age=3600")
