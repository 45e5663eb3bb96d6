"""NGSI-LD Temporal API endpoints (clauses 6.18-6.22 and 6.24 of ETSI GS CIM 009 v1.8).

Each handler parses and validates the request, makes one ``TemporalBroker`` call and builds
the response. Semantics and choices: ``broker/temporal.py`` and ``docs/temporal.md``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cityvisor.api.entity_maps import MAPPED, map_headers, map_request
from cityvisor.api.http import (
    Call,
    bool_param,
    int_param,
    json_response,
    location,
    negotiate,
    read_body,
    services_of,
)
from cityvisor.broker.entities import QueryParams
from cityvisor.broker.entity_maps import MAX_ENTITIES, MapAnswer
from cityvisor.broker.temporal import Projection, TemporalBroker, TemporalQuery, TemporalResult
from cityvisor.ngsild.errors import BadRequestData, OperationNotSupported
from cityvisor.ngsild.query import parse_q

BASE = "/ngsi-ld/v1"
UNSUPPORTED = ("scopeQ", "join", "joinLevel", "entityMap", "containedBy",
               "expandValues", "collectValues")
#: the endpoints that take an entity map (clauses 5.7.3.4, 5.7.4.4)
#: entity members that are not attributes: ``attrs`` naming only these selects nothing
_CORE_MEMBERS = frozenset({"id", "type", "scope", "createdAt", "modifiedAt", "deletedAt"})


def _temporal(request: Request) -> TemporalBroker:
    return services_of(request).temporal


async def _body(request: Request, call: Call) -> tuple[Any, Call]:
    body, context = await read_body(request, services_of(request).settings.max_body_bytes)
    return body, replace(call, context=context)


def _refuse_unsupported(request: Request, allowed: tuple[str, ...] = ()) -> None:
    for name in UNSUPPORTED:
        if name in request.query_params and name not in allowed:
            raise OperationNotSupported(f"Parameter {name} is not supported by the Temporal API")


def _temporal_query(request: Request) -> TemporalQuery:
    params = request.query_params
    return TemporalQuery.parse(
        timerel=params.get("timerel"), time_at=params.get("timeAt"),
        end_time_at=params.get("endTimeAt"), timeproperty=params.get("timeproperty"),
        last_n=params.get("lastN"), options=params.get("options"),
        aggr_methods=params.get("aggrMethods"), aggr_period=params.get("aggrPeriodDuration"),
        format=params.get("format"), dataset_ids=params.get("datasetId"))


def _projection(request: Request) -> Projection:
    params = request.query_params
    return Projection.parse(params.get("pick"), params.get("omit"), params.get("attrs"))


def _order_by_id(raw: str | None) -> bool | None:
    """``orderBy`` of a temporal query (clause 5.7.4.4): only ``id`` may be named, with an
    optional ``;asc`` / ``;desc`` direction (clause 4.23); True for descending."""
    if raw is None:
        return None
    name, _, direction = raw.strip().partition(";")
    if name != "id" or direction not in ("", "asc", "desc"):
        raise BadRequestData(f"orderBy of a temporal query may only name id (id, id;asc or "
                             f"id;desc), got {raw!r}")
    return direction == "desc"


def _check_csf(raw: str | None) -> None:
    """``csf`` (clause 4.9 grammar) is checked; the Temporal API answers from local data
    only, which a context source filter does not restrict."""
    if raw is not None:
        parse_q(raw, lambda name: name)


def _check_attrs(raw: str | None) -> None:
    if raw is None:
        return
    names = {a.strip() for a in raw.split(",")}
    if names and names <= _CORE_MEMBERS:
        raise BadRequestData(f"attrs names no attribute ({raw!r}): {', '.join(sorted(names))} "
                             "are entity members, not attributes")


def _count(request: Request) -> bool:
    options = [o.strip() for o in (request.query_params.get("options") or "").split(",")]
    return bool_param(request, "count") or "count" in options


def _without_geojson(request: Request, call: Call) -> Call:
    """Clause 6.3.4: GeoJSON (``application/geo+json``) is a representation of entities
    (Retrieve Entity, Query Entities), not of their temporal evolution: the answer's media
    type is negotiated among the others (NotAcceptable when the Accept header names none)."""
    if call.accept != "application/geo+json":
        return call
    return replace(call, accept=negotiate(request))


def _result_response(call: Call, result: TemporalResult, data: Any,
                     entity_map: MapAnswer | None = None, *, created: int = 200) -> Response:
    """The answer: 206 with Content-Range when instances were left out; else ``created``
    when the request made an entity map (a query: 201, clause 5.7.4.4), 200."""
    headers: dict[str, str] = {}
    if result.count is not None:
        headers["NGSILD-Results-Count"] = str(result.count)
    status = 200
    if entity_map is not None:
        headers.update(map_headers(entity_map))
        if entity_map.created is not None:
            status = created
    if result.content_range is not None:
        headers["Content-Range"] = result.content_range
        status = 206
    return json_response(call, data, status=status, headers=headers or None)


# ------------------------------------------------------------------ /temporal/entities


async def query_temporal(request: Request, call: Call) -> Response:
    """6.18.3.2 Query Temporal Evolution of Entities: id, idPattern, type, attrs, q, geo-query,
    timerel/timeAt/endTimeAt/timeproperty, lastN, limit/offset/count, pick/omit,
    options=temporalValues | aggregatedValues (aggrMethods, aggrPeriodDuration) | sysAttrs,
    entity maps (``entityMap``, header ``NGSILD-EntityMap``: 5.7.4.4, 5.5.14)."""
    _refuse_unsupported(request, MAPPED)
    call = _without_geojson(request, call)
    params = request.query_params
    tq = _temporal_query(request)
    descending = _order_by_id(params.get("orderBy"))
    _check_csf(params.get("csf"))
    _check_attrs(params.get("attrs"))
    query = QueryParams(
        id=params.get("id"), id_pattern=params.get("idPattern"), type=params.get("type"),
        attrs=params.get("attrs"), q=params.get("q"), georel=params.get("georel"),
        geometry=params.get("geometry"), coordinates=params.get("coordinates"),
        geoproperty=params.get("geoproperty"), limit=int_param(request, "limit"),
        offset=int_param(request, "offset", 0) or 0, count=_count(request),
        local=bool_param(request, "local"))
    temporal = _temporal(request)

    async def run(within: frozenset[str] | None) -> TemporalResult:
        return await temporal.query(call.tenant, call.context, replace(query, within=within),
                                    tq, descending=descending, projection=_projection(request))

    async def matched(_result: TemporalResult) -> list[str]:
        return await temporal.matching_ids(call.tenant, call.context, query, tq,
                                           limit=MAX_ENTITIES + 1)

    result, entity_map = await services_of(request).entity_maps.use(
        call.tenant, map_request(request), run, matched)
    return _result_response(call, result, result.entities, entity_map, created=201)


async def create_temporal(request: Request, call: Call) -> Response:
    """6.18.3.1 Create or Update Temporal Representation of an Entity: 201 or 204."""
    body, call = await _body(request, call)
    created = await _temporal(request).create_or_append(call.tenant, call.context, body)
    if created:
        entity_id = body["id"]
        return Response(status_code=201,
                        headers=location(f"{BASE}/temporal/entities/{entity_id}"))
    return Response(status_code=204)


async def retrieve_temporal(request: Request, call: Call) -> Response:
    """6.19.3.1 Retrieve Temporal Evolution of an Entity (attrs or pick/omit, the temporal
    parameters, entity maps: ``entityMap``, header ``NGSILD-EntityMap``, clause 5.7.3.4)."""
    _refuse_unsupported(request, MAPPED)
    call = _without_geojson(request, call)
    entity_id = request.path_params["entityId"]
    result, entity_map = await services_of(request).entity_maps.use_on_retrieve(
        call.tenant, map_request(request), entity_id,
        lambda: _temporal(request).retrieve(
            call.tenant, call.context, entity_id, _temporal_query(request),
            request.query_params.get("attrs"), _projection(request)))
    return _result_response(call, result, result.entities[0], entity_map)


async def delete_temporal(request: Request, call: Call) -> Response:
    """6.19.3.2 Delete Temporal Representation of an Entity."""
    await _temporal(request).delete_entity(call.tenant, request.path_params["entityId"])
    return Response(status_code=204)


async def append_temporal_attrs(request: Request, call: Call) -> Response:
    """6.20.3.1 Add Attributes to Temporal Representation of an Entity."""
    body, call = await _body(request, call)
    await _temporal(request).append_attributes(call.tenant, call.context,
                                               request.path_params["entityId"], body)
    return Response(status_code=204)


async def delete_temporal_attr(request: Request, call: Call) -> Response:
    """6.21.3.1 Delete Attribute from Temporal Representation (``datasetId``, ``deleteAll``)."""
    await _temporal(request).delete_attribute(
        call.tenant, call.context, request.path_params["entityId"],
        request.path_params["attrId"], dataset_id=request.query_params.get("datasetId"),
        delete_all=bool_param(request, "deleteAll"))
    return Response(status_code=204)


async def modify_instance(request: Request, call: Call) -> Response:
    """6.22.3.1 Modify Attribute Instance in Temporal Representation of an Entity."""
    body, call = await _body(request, call)
    path = request.path_params
    await _temporal(request).modify_instance(call.tenant, call.context, path["entityId"],
                                             path["attrId"], path["instanceId"], body)
    return Response(status_code=204)


async def delete_instance(request: Request, call: Call) -> Response:
    """6.22.3.2 Delete Attribute Instance from Temporal Representation of an Entity."""
    path = request.path_params
    await _temporal(request).delete_instance(call.tenant, call.context, path["entityId"],
                                             path["attrId"], path["instanceId"])
    return Response(status_code=204)


async def query_temporal_post(request: Request, call: Call) -> Response:
    """6.24.3.1 Query Temporal Evolution of Entities via POST (a Query with ``temporalQ``)."""
    _refuse_unsupported(request)
    call = _without_geojson(request, call)
    body, call = await _body(request, call)
    if isinstance(body, dict):
        for member in ("scopeQ", "csf"):
            if member in body:
                raise OperationNotSupported(f"Query member {member} is not supported here")
    elif not isinstance(body, dict):
        raise BadRequestData("The body must be a Query object (type Query)")
    query = QueryParams(limit=int_param(request, "limit"),
                        offset=int_param(request, "offset", 0) or 0, count=_count(request),
                        local=bool_param(request, "local"))
    result = await _temporal(request).batch_query(call.tenant, call.context, body, query,
                                                  dict(request.query_params),
                                                  _projection(request))
    return _result_response(call, result, result.entities)


R, W = "reader", "writer"
#: (path, {method: (handler, minimum role, has a JSON body)})
ROUTES: list[tuple[str, dict[str, tuple[Any, str, bool]]]] = [
    ("/temporal/entities", {"GET": (query_temporal, R, False),
                            "POST": (create_temporal, W, True)}),
    ("/temporal/entities/{entityId}", {"GET": (retrieve_temporal, R, False),
                                       "DELETE": (delete_temporal, W, False)}),
    ("/temporal/entities/{entityId}/attrs", {"POST": (append_temporal_attrs, W, True)}),
    ("/temporal/entities/{entityId}/attrs/{attrId}", {"DELETE": (delete_temporal_attr, W, False)}),
    ("/temporal/entities/{entityId}/attrs/{attrId}/{instanceId}", {
        "PATCH": (modify_instance, W, True), "DELETE": (delete_instance, W, False)}),
    ("/temporal/entityOperations/query", {"POST": (query_temporal_post, R, True)}),
]
