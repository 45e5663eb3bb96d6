"""The public portal's read-only API (``/public/api/...``): no sign-in, only public data.

Routes (all ``GET``):

* ``/public/api/region`` — the outline of Occitanie (GeoJSON);
* ``/public/api/departements`` — its 13 départements (GeoJSON; ``code``, ``nom``, ``bbox``);
* ``/public/api/departements/{code}/communes`` — the communes of one (GeoJSON; ``code``,
  ``nom``, ``departement``, ``lon``/``lat`` a point inside);
* ``/public/api/departements/{code}/weather`` — latest public temperature and weather type of
  each of its communes (``{"communes": {"30189": {"temperature", "weatherType",
  "observedAt"}}}``), for the map's colours;
* ``/public/api/alerts`` — every active public alert, each with its commune and a position;
* ``/public/api/communes/search?q=...&limit=10`` — accent/case-insensitive prefix search
  (:mod:`cityvisor.console.communes`);
* ``/public/api/communes/at?lon=4.36&lat=43.84`` — the commune at a point ("locate me");
* ``/public/api/communes/{insee}`` — the commune view: current weather, forecast, active
  public alerts and flood warning points affecting it.

What may leave (``docs/data-contracts.md``, "Visibility"): an entity whose type is in
:data:`PUBLIC_TYPES` **and** which carries ``visibility`` = ``"public"``, reduced to the
attributes of its type's allow-list (:data:`PUBLIC_ATTRIBUTES`), each reduced to its value,
unit, ``observedAt`` and allowed sub-properties. Everything else — cameras, devices, operator
workflow (``workflowState``, ``assignee``, ``lastAction`` and its actor), unknown attributes —
is dropped here, whatever the query, so the portal can never show it. The data comes from the
tenant ``Settings.public_tenant`` through a :class:`~cityvisor.client.LocalContextClient`, each
type read with its Smart Data Models @context (the one its producers write with).

Work per request is small: the commune view runs eight queries (by ``inseeCode`` and by the
commune's bounding box), each capped at :data:`QUERY_LIMIT` entities; the alert overview one
(capped too); a département's weather one query of at most 1,000 entities (its communes).
"""

from __future__ import annotations

import time
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson
import shapely
from shapely.geometry import shape
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cityvisor.client import LocalContextClient
from cityvisor.console.communes import MAX_LIMIT, MAX_QUERY_LENGTH, commune_index
from cityvisor.data.geo import occitanie
from cityvisor.http_problems import problem_response
from cityvisor.ngsild.context import sdm_context
from cityvisor.ngsild.errors import BadRequestData, NgsiLdError, NonexistentTenant, ResourceNotFound
from cityvisor.ngsild.time import format_utc_seconds, parse_utc_or_none, utc_now

#: public type -> the @context its producers use (the type's Smart Data Models domain)
PUBLIC_TYPES = {
    "WeatherObserved": sdm_context("Weather"),
    "WeatherForecast": sdm_context("Weather"),
    "Alert": sdm_context("Alert"),
    "FloodMonitoring": sdm_context("Environment"),
}
_COMMON = ("name", "location", "address", "inseeCode", "dataProvider")
#: attributes the portal may show, per type (anything else is dropped)
PUBLIC_ATTRIBUTES: dict[str, frozenset[str]] = {
    "WeatherObserved": frozenset((*_COMMON, "dateObserved", "temperature", "relativeHumidity",
                                  "windSpeed", "windDirection", "gustSpeed", "precipitation",
                                  "atmosphericPressure", "weatherType", "feelsLikeTemperature",
                                  "snowHeight", "uVIndexMax", "illuminance")),
    "WeatherForecast": frozenset((*_COMMON, "dateIssued", "validFrom", "validTo", "dayMinimum",
                                  "dayMaximum", "temperature", "feelsLikeTemperature",
                                  "relativeHumidity", "precipitation", "precipitationProbability",
                                  "windSpeed", "windDirection", "weatherType", "uVIndexMax")),
    "Alert": frozenset((*_COMMON, "category", "subCategory", "severity", "description",
                        "dateIssued", "validFrom", "validTo", "vigilanceLevel", "domain",
                        "alertSource")),
    "FloodMonitoring": frozenset((*_COMMON, "vigilanceLevel", "currentLevel", "flow", "trend",
                                  "forecastPeak", "alertLevel", "dangerLevel",
                                  "observationDateTime")),
}
#: members kept inside an attribute (its value and, for a few, documented sub-properties)
_MEMBERS = frozenset(("type", "value", "object", "unitCode", "observedAt", "peakTime",
                      "leadMinutes", "issuedAt"))
#: workflow states after which an alert is no longer shown to the public
_CLOSED = frozenset(("resolved", "closed"))
QUERY_LIMIT = 100
PUBLIC_Q = 'visibility=="public"'
JSON = "application/json"
GEOJSON = "application/geo+json"
GEO_CACHE = "public, max-age=86400"


# ------------------------------------------------------------------ the filter


def is_public(entity: dict[str, Any]) -> bool:
    """True if the entity's type is public and it is marked ``visibility`` = ``public``."""
    if entity.get("type") not in PUBLIC_TYPES:
        return False
    found = False
    for key, attr in entity.items():
        if key == "visibility" or key.endswith("/visibility"):
            for instance in attr if isinstance(attr, list) else [attr]:
                value = instance.get("value") if isinstance(instance, dict) else instance
                if value != "public":
                    return False
                found = True
    return found


def public_entity(entity: dict[str, Any]) -> dict[str, Any] | None:
    """The public part of an entity, or None if it is not public (see the module doc)."""
    if not is_public(entity):
        return None
    allowed = PUBLIC_ATTRIBUTES[entity["type"]]
    out: dict[str, Any] = {"id": entity["id"], "type": entity["type"]}
    for key, attr in entity.items():
        if key not in allowed:
            continue
        instances = [_members(a) for a in (attr if isinstance(attr, list) else [attr])]
        out[key] = instances if isinstance(attr, list) else instances[0]
    return out


def _members(attr: Any) -> Any:
    if not isinstance(attr, dict):
        return attr
    kept = {}
    for name, member in attr.items():
        if name not in _MEMBERS:
            continue
        if isinstance(member, dict) and name in ("peakTime", "leadMinutes", "issuedAt"):
            member = {k: v for k, v in member.items() if k in ("type", "value", "unitCode")}
        kept[name] = member
    return kept


def value_of(entity: dict[str, Any], name: str) -> Any:
    """The plain value of a (first) Property; DateTime objects become their string."""
    attr = entity.get(name)
    if isinstance(attr, list):
        attr = attr[0] if attr else None
    value = attr.get("value") if isinstance(attr, dict) else attr
    if isinstance(value, dict) and "@value" in value:
        return value["@value"]
    return value


def is_active(alert: dict[str, Any], now: datetime) -> bool:
    """An alert is shown until it is resolved/closed or its ``validTo`` has passed."""
    if value_of(alert, "workflowState") in _CLOSED:
        return False
    valid_to = parse_utc_or_none(value_of(alert, "validTo"))
    return valid_to is None or valid_to > now


# ------------------------------------------------------------------ reading the broker


class PublicReader:
    """Public data of one tenant, read through the ``ContextClient`` (one per type context)."""

    def __init__(self, broker: Any, tenant: str) -> None:
        self.clients = {etype: LocalContextClient(broker, tenant=tenant, context=[context])
                        for etype, context in PUBLIC_TYPES.items()}

    async def _query(self, etype: str, limit: int = QUERY_LIMIT,
                     **filters: Any) -> list[dict[str, Any]]:
        try:
            return await self.clients[etype].query_entities(type=etype, limit=limit, **filters)
        except NonexistentTenant:
            return []

    async def about(self, etype: str, commune: occitanie.Commune) -> list[dict[str, Any]]:
        """Raw entities of ``etype`` whose ``inseeCode`` is the commune's or which lie in it."""
        # visibility is also pushed into the query so that many private entities of the same
        # commune (operator alerts, private stations) cannot crowd the public ones out of the
        # limit; public_entity() checks it again on what comes back
        by_code = await self._query(etype, q=f'inseeCode=="{commune.code}";{PUBLIC_Q}')
        west, south, east, north = commune.bbox
        box = [[[west, south], [east, south], [east, north], [west, north], [west, south]]]
        nearby = await self._query(etype, q=PUBLIC_Q, georel="intersects", geometry="Polygon",
                                   coordinates=orjson.dumps(box).decode())
        polygon = occitanie.commune_geometry(commune.code)
        seen = {e["id"] for e in by_code}
        inside = [e for e in nearby if e["id"] not in seen and _lies_in(e, polygon)]
        return by_code + inside

    async def active_alerts(self, now: datetime | None = None) -> list[dict[str, Any]]:
        """Active public alerts of the whole tenant, each placed in its commune."""
        now = now or utc_now()
        raw = await self._query("Alert", q=PUBLIC_Q)
        out = []
        for entity in raw:
            shown = public_entity(entity) if is_active(entity, now) else None
            if shown is None:
                continue
            place = _place(entity)
            if place is None:
                continue
            commune, lon, lat = place
            out.append({**shown, "commune": {"code": commune.code, "nom": commune.name,
                                             "departement": commune.departement},
                        "position": [lon, lat]})
        out.sort(key=_alert_order)
        return out

    async def departement_weather(self, departement: str) -> dict[str, Any]:
        """Latest public temperature and weather type of each commune of a département."""
        raw = await self._query("WeatherObserved", q=f'inseeCode~="^{departement}";{PUBLIC_Q}',
                                limit=1000, attrs="temperature,weatherType,dateObserved,"
                                                  "inseeCode,visibility")
        latest: dict[str, dict[str, Any]] = {}
        for entity in raw:
            shown = public_entity(entity)
            code = value_of(entity, "inseeCode")
            if shown is None or not isinstance(code, str):
                continue
            when = str(value_of(entity, "dateObserved") or "")
            if code not in latest or when > latest[code]["observedAt"]:
                latest[code] = {"temperature": value_of(entity, "temperature"),
                                "weatherType": value_of(entity, "weatherType"),
                                "observedAt": when}
        return latest

    async def commune_view(self, commune: occitanie.Commune,
                           now: datetime | None = None) -> dict[str, Any]:
        now = now or utc_now()
        observed = _public(await self.about("WeatherObserved", commune))
        observed.sort(key=lambda e: str(value_of(e, "dateObserved") or ""), reverse=True)
        forecast = [e for e in _public(await self.about("WeatherForecast", commune))
                    if (parse_utc_or_none(value_of(e, "validTo")) or now) >= now]
        forecast.sort(key=lambda e: str(value_of(e, "validFrom") or ""))
        raw_alerts = [e for e in await self.about("Alert", commune) if is_active(e, now)]
        alerts = _public(raw_alerts)
        alerts.sort(key=_alert_order)
        flood = _public(await self.about("FloodMonitoring", commune))
        flood.sort(key=lambda e: -_VIGILANCE.get(value_of(e, "vigilanceLevel"), 0))
        departement = occitanie.departements_by_code()[commune.departement]
        return {
            "commune": _commune_json(commune),
            "departement": {"code": departement.code, "nom": departement.name},
            "weather": observed[0] if observed else None,
            "stations": observed[1:5],
            "forecast": forecast[:10],
            "alerts": alerts[:20],
            "flood": flood[:20],
            "generatedAt": format_utc_seconds(now),
        }


_SEVERITY = {"informational": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}
_VIGILANCE = {"green": 1, "yellow": 2, "orange": 3, "red": 4}


def _alert_order(alert: dict[str, Any]) -> tuple[int, str]:
    """Most severe first, then the earliest issued."""
    return -_SEVERITY.get(value_of(alert, "severity"), 0), str(value_of(alert, "dateIssued") or "")


def _public(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in map(public_entity, entities) if p is not None]


def _lies_in(entity: dict[str, Any], polygon: Any) -> bool:
    geometry = value_of(entity, "location")
    if not isinstance(geometry, dict):
        return False
    try:
        return bool(shapely.intersects(polygon, shape(geometry)))
    except (ValueError, TypeError, AttributeError, shapely.errors.ShapelyError):
        return False


def _place(entity: dict[str, Any]) -> tuple[occitanie.Commune, float, float] | None:
    """(commune, lon, lat) of an alert: its ``inseeCode``, else where its location lies."""
    geometry = value_of(entity, "location")
    point = None
    if isinstance(geometry, dict):
        try:
            point = shape(geometry).representative_point()
        except (ValueError, TypeError, AttributeError, shapely.errors.ShapelyError):
            point = None
    code = value_of(entity, "inseeCode")
    commune = occitanie.communes_by_code().get(code) if isinstance(code, str) else None
    if commune is None and point is not None:
        commune = occitanie.commune_at(point.x, point.y)
    if commune is None:
        return None
    if point is None:
        return commune, commune.lon, commune.lat
    return commune, round(point.x, 5), round(point.y, 5)


def _commune_json(commune: occitanie.Commune) -> dict[str, Any]:
    return {"code": commune.code, "nom": commune.name, "departement": commune.departement,
            "lon": commune.lon, "lat": commune.lat, "bbox": list(commune.bbox)}


def _commune_found(commune: occitanie.Commune) -> dict[str, Any]:
    """A commune as search and "locate me" give it: with its département's name."""
    departement = occitanie.departements_by_code()[commune.departement]
    return {**_commune_json(commune), "departementNom": departement.name}


# ------------------------------------------------------------------ HTTP


def _json(data: Any, status: int = 200, cache: str | None = None) -> Response:
    headers = {"cache-control": cache} if cache else None
    return Response(orjson.dumps(data), status_code=status, media_type=JSON, headers=headers)


def _geojson(body: bytes) -> Response:
    return Response(body, media_type=GEOJSON, headers={"cache-control": GEO_CACHE})


def _errors(handler: Any) -> Any:
    async def run(request: Request) -> Response:
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except NgsiLdError as error:
            return problem_response(error)

    return run


async def region(request: Request) -> Response:
    return _geojson(occitanie.region_bytes())


async def departements(request: Request) -> Response:
    return _geojson(_departements_body())


@lru_cache(maxsize=1)
def _departements_body() -> bytes:
    """The départements with their bbox and number of communes (bundled data: built once)."""
    collection = orjson.loads(occitanie.departements_bytes())
    bboxes = {d.code: list(d.bbox) for d in occitanie.departements()}
    counts: dict[str, int] = {}
    for commune in occitanie.communes():
        counts[commune.departement] = counts.get(commune.departement, 0) + 1
    for feature in collection["features"]:
        code = feature["properties"]["code"]
        feature["properties"].update(bbox=bboxes[code], communes=counts.get(code, 0))
    return orjson.dumps(collection)


async def departement_communes(request: Request) -> Response:
    code = request.path_params["code"]
    try:
        return _geojson(occitanie.communes_bytes(code))
    except KeyError:
        raise ResourceNotFound(f"No département {code!r} in Occitanie") from None


async def search(request: Request) -> Response:
    query = request.query_params.get("q")
    if query is None or not query.strip():
        raise BadRequestData("Give the start of a commune name or INSEE code: ?q=nimes")
    if len(query) > MAX_QUERY_LENGTH:
        raise BadRequestData(f"q must be at most {MAX_QUERY_LENGTH} characters long")
    raw_limit = request.query_params.get("limit", "10")
    try:
        limit = int(raw_limit)
    except ValueError:
        raise BadRequestData(f"limit must be an integer, got {raw_limit!r}") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise BadRequestData(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    results = [_commune_found(c) for c in commune_index().search(query, limit)]
    return _json({"query": query, "results": results}, cache="public, max-age=3600")


def _coordinate(request: Request, name: str, low: float, high: float) -> float:
    raw = request.query_params.get(name)
    try:
        value = float(raw) if raw is not None else float("nan")
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # also refuses NaN
        raise BadRequestData(f"{name} must be a number between {low} and {high}, got {raw!r}")
    return value


async def commune_at(request: Request) -> Response:
    lon = _coordinate(request, "lon", -180, 180)
    lat = _coordinate(request, "lat", -90, 90)
    found = occitanie.commune_at(lon, lat)
    if found is None:
        raise ResourceNotFound(f"No commune of Occitanie at lon={lon}, lat={lat}")
    return _json(_commune_found(found))


async def commune(request: Request) -> Response:
    code = request.path_params["code"]
    found = occitanie.communes_by_code().get(code)
    if found is None:
        raise ResourceNotFound(f"No commune with INSEE code {code!r} in Occitanie")
    services = request.app.state.services
    reader = PublicReader(services.broker, services.settings.public_tenant)
    return _json(await reader.commune_view(found))


async def alerts(request: Request) -> Response:
    services = request.app.state.services
    reader = PublicReader(services.broker, services.settings.public_tenant)
    return _json({"alerts": await reader.active_alerts()})


#: a département's weather is read at most once a minute per server, whatever the number of
#: visitors (observations come every 10 minutes); the cache lives in the app's state
WEATHER_CACHE_S = 60.0


async def departement_weather(request: Request) -> Response:
    code = request.path_params["code"]
    if code not in occitanie.departements_by_code():
        raise ResourceNotFound(f"No département {code!r} in Occitanie")
    services = request.app.state.services
    tenant = services.settings.public_tenant
    cache: dict[tuple[str, str], tuple[float, dict[str, Any]]] = getattr(
        request.app.state, "public_weather_cache", None) or {}
    request.app.state.public_weather_cache = cache
    cached = cache.get((tenant, code))
    if cached is None or cached[0] < time.monotonic():
        reader = PublicReader(services.broker, tenant)
        answer = {"departement": code, "communes": await reader.departement_weather(code)}
        cached = cache[(tenant, code)] = (time.monotonic() + WEATHER_CACHE_S, answer)
    return _json(cached[1], cache=f"public, max-age={int(WEATHER_CACHE_S)}")


ROUTES = [
    Route("/public/api/region", _errors(region), methods=["GET"]),
    Route("/public/api/departements", _errors(departements), methods=["GET"]),
    Route("/public/api/departements/{code}/communes", _errors(departement_communes),
          methods=["GET"]),
    Route("/public/api/departements/{code}/weather", _errors(departement_weather),
          methods=["GET"]),
    Route("/public/api/alerts", _errors(alerts), methods=["GET"]),
    Route("/public/api/communes/search", _errors(search), methods=["GET"]),
    Route("/public/api/communes/at", _errors(commune_at), methods=["GET"]),
    Route("/public/api/communes/{code}", _errors(commune), methods=["GET"]),
]
