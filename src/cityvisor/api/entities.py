"""NGSI-LD entity, attribute and batch endpoints (clauses 6.4-6.8, 6.14-6.24).

Each handler parses and validates the request, makes one broker call and builds the response.
Unsupported parameters of the spec are listed in each docstring.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import Response

from cityvisor.api.entity_maps import MAPPED, map_headers, map_request
from cityvisor.api.http import (
    Call,
    bool_param,
    int_param,
    json_response,
    location,
    offers_geojson,
    read_batch_body,
    read_body,
    services_of,
)
from cityvisor.api.prefer import version_applied, version_preference
from cityvisor.broker.entities import (
    BatchResult,
    EntityBroker,
    QueryPage,
    QueryParams,
    UpdateResult,
)
from cityvisor.broker.entity_maps import MAX_ENTITIES, MapAnswer
from cityvisor.broker.options import Shape, form_of, option_set
from cityvisor.ngsild.errors import BadRequestData, OperationNotSupported
from cityvisor.ngsild.versions import amend_for_version, parse_version

BASE = "/ngsi-ld/v1"


def _broker(request: Request) -> EntityBroker:
    return services_of(request).broker


async def _body(request: Request, call: Call) -> tuple[Any, Call]:
    body, context = await read_body(request, services_of(request).settings.max_body_bytes)
    return body, replace(call, context=context)


async def _batch(request: Request, call: Call,
                 operation: Callable[[Any, Call], Awaitable[BatchResult]]) -> BatchResult:
    """Run a batch operation on the entities of the body; the entities refused while reading
    it (an @context under application/json, clause 6.3.5) fail one by one."""
    body, context, refused = await read_batch_body(
        request, services_of(request).settings.max_body_bytes)
    call = replace(call, context=context)
    result = await operation(body, call) if body or not refused else BatchResult()
    for item in refused:
        result.fail(item.get("id"), BadRequestData(
            "With application/json the @context must come in a Link header, not in the entity"))
    return result


def _shape(request: Request, call: Call) -> Shape:
    params = request.query_params
    form = params.get("format")
    if form is None and call.accept == "application/geo+json":
        form = "geojson"
    return Shape(options=params.get("options"), format=form,
                 attrs=params.get("attrs"), pick=params.get("pick"), omit=params.get("omit"),
                 lang=params.get("lang"), geometry_property=params.get("geometryProperty"),
                 dataset_id=params.get("datasetId"), join=params.get("join"),
                 join_level=params.get("joinLevel"), contained_by=params.get("containedBy"))


UNSUPPORTED_QUERY = ("entityMap", "expandValues", "collectValues")
#: the endpoints that take an entity map (clauses 5.7.1.4, 5.7.2.4)
NO_MAP_ANSWER = MapAnswer()


def _refuse_unsupported(request: Request, allowed: tuple[str, ...] = ()) -> None:
    """Answer 422 rather than silently ignore a filter we do not implement (wrong results)."""
    for name in UNSUPPORTED_QUERY:
        if name in request.query_params and name not in allowed:
            raise OperationNotSupported(f"Parameter {name} is not supported here")


def _local(request: Request) -> bool | None:
    """``local``: None when not given (``type=*`` implies it, Table 6.4.3.2-1)."""
    return bool_param(request, "local") if "local" in request.query_params else None


def _ordering(request: Request, query: QueryParams) -> QueryParams:
    """``query`` with the ordering parameters (clause 4.23), as sent."""
    params = request.query_params
    return replace(query, order_by=params.get("orderBy"), order_from=params.get("orderFrom"),
                   collation=params.get("collation"))


def _query_params(request: Request, allowed: tuple[str, ...] = ()) -> QueryParams:
    _refuse_unsupported(request, allowed)
    params = request.query_params
    options = option_set(params.get("options"))
    return _ordering(request, QueryParams(
        id=params.get("id"), id_pattern=params.get("idPattern"), type=params.get("type"),
        attrs=params.get("attrs"), q=params.get("q"), scope_q=params.get("scopeQ"),
        csf=params.get("csf"),
        georel=params.get("georel"), geometry=params.get("geometry"),
        coordinates=params.get("coordinates"), geoproperty=params.get("geoproperty"),
        limit=int_param(request, "limit"), offset=int_param(request, "offset", 0) or 0,
        count=bool_param(request, "count") or "count" in options, local=_local(request),
    ))


def _check_geometry_property(request: Request, call: Call, shape: Shape) -> None:
    """Clause 5.7.2.4 / 6.3.15: geometryProperty only applies to a GeoJSON representation."""
    if shape.geometry_property is not None and call.accept != "application/geo+json" \
            and shape.format != "geojson":
        raise BadRequestData("geometryProperty is only allowed with a GeoJSON representation "
                             "(Accept: application/geo+json)")


#: the URL parameters that a page link (clause 4.12) sets itself
_PAGE_PARAMS = ("limit", "offset")
#: characters left as they are in the parameter values of a page link
_LINK_SAFE = ":/@!$'()*,;"


def page_links(request: Request, page: QueryPage) -> str | None:
    """The ``Link`` header values ``rel="prev"`` / ``rel="next"`` of a page (clause 4.12):
    the same request with the offset of the previous / next page; none past either end."""
    if page.limit <= 0:
        return None
    links: list[str] = []
    if page.offset > 0:
        links.append(_page_link(request, max(0, page.offset - page.limit), page.limit, "prev"))
    if page.more:
        links.append(_page_link(request, page.offset + page.limit, page.limit, "next"))
    return ", ".join(links) or None


def _page_link(request: Request, offset: int, limit: int, rel: str) -> str:
    items = [(k, v) for k, v in request.query_params.multi_items() if k not in _PAGE_PARAMS]
    items += [("limit", str(limit)), ("offset", str(offset))]
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe=_LINK_SAFE)}"
                     for k, v in sorted(items, key=lambda item: item[0]))
    return f'<{request.url.path}?{query}>; rel="{rel}"; type="application/json"'


def _for_version(request: Request, shape: Shape, payload: Any,
                 headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    """Honour ``Prefer: ngsi-ld=<version>`` (clauses 4.3.6.8, 6.3.6): amend the payload in
    place for that version; 203 when it was altered, with Preference-Applied."""
    version = version_preference(request.headers.getlist("prefer"))
    out = {**(headers or {}), **version_applied(version)}
    if version is not None and amend_for_version(payload, parse_version(version),
                                                 form_of(shape)):
        return 203, out
    return 200, out


def _page_response(request: Request, call: Call, shape: Shape, page: QueryPage,
                   links: bool, entity_map: MapAnswer = NO_MAP_ANSWER) -> Response:
    """A page of entities; 201 when the query made an entity map (clause 5.7.2.4)."""
    headers = {"NGSILD-Results-Count": str(page.count)} if page.count is not None else {}
    link = page_links(request, page) if links else None
    if link:
        headers["Link"] = link
    headers.update(map_headers(entity_map))
    status, headers = _for_version(request, shape, page.entities, headers)
    if entity_map.created is not None:
        status = 201
    if call.accept == "application/geo+json":
        return json_response(call, {"type": "FeatureCollection", "features": page.entities},
                             status, headers or None)
    return json_response(call, page.entities, status, headers or None)


def _geojson_call(call: Call, shape: Shape) -> Call:
    if shape.format == "geojson" and call.accept == "application/json":
        return replace(call, accept="application/geo+json")
    return call


def _update_response(result: UpdateResult) -> Response:
    if result.not_updated:
        return Response(orjson.dumps(result.body()), status_code=207,
                        media_type="application/json")
    return Response(status_code=204)


def _batch_response(result: BatchResult, created_status: bool = False) -> Response:
    if result.errors:
        return Response(orjson.dumps(result.body()), status_code=207,
                        media_type="application/json")
    if created_status and result.created:
        return Response(orjson.dumps(result.created), status_code=201,
                        media_type="application/json")
    return Response(status_code=204)


# ------------------------------------------------------------------ /entities


@offers_geojson
async def query_entities(request: Request, call: Call) -> Response:
    """6.4.3.2 Query Entities, with scopeQ (4.19), orderBy/orderFrom/collation (4.23) and page
    links (4.12), Linked Entity retrieval (4.5.23), entity maps (``entityMap``, header
    ``NGSILD-EntityMap``: 5.7.2.4, 5.5.14). Unsupported (422): expandValues, collectValues;
    there are no context source registrations, so every query is local (a csf is checked,
    and restricts nothing)."""
    shape = _shape(request, call)
    _check_geometry_property(request, call, shape)
    params = _query_params(request, allowed=MAPPED)
    broker = _broker(request)

    async def run(within: frozenset[str] | None) -> QueryPage:
        return await broker.query_page(call.tenant, call.context,
                                       replace(params, within=within), shape)

    async def matched(_page: QueryPage) -> list[str]:
        return await broker.matching_ids(call.tenant, call.context, params,
                                         limit=MAX_ENTITIES + 1)

    page, entity_map = await services_of(request).entity_maps.use(
        call.tenant, map_request(request), run, matched)
    return _page_response(request, _geojson_call(call, shape), shape, page, links=True,
                          entity_map=entity_map)


async def purge_entities(request: Request, call: Call) -> Response:
    """6.4.3.3 Purge Entities (``keep``, ``drop``). Unsupported (422): scopeQ, csf."""
    params = request.query_params
    await _broker(request).purge_entities(call.tenant, call.context, _query_params(request),
                                          keep=params.get("keep"), drop=params.get("drop"))
    return Response(status_code=204)


async def create_entity(request: Request, call: Call) -> Response:
    """6.4.3.1 Create Entity."""
    body, call = await _body(request, call)
    entity_id = await _broker(request).create_entity(call.tenant, call.context, body)
    return Response(status_code=201, headers=location(f"{BASE}/entities/{entity_id}"))


@offers_geojson
async def retrieve_entity(request: Request, call: Call) -> Response:
    """6.5.3.1 Retrieve Entity, with the ``type`` selector, Linked Entity retrieval (4.5.23)
    and entity maps (``entityMap``, header ``NGSILD-EntityMap``: 5.7.1.4; the body stays the
    Entity, the header names the map)."""
    _refuse_unsupported(request, MAPPED)
    shape = _shape(request, call)
    _check_geometry_property(request, call, shape)  # clause 5.7.1.4 likewise
    entity_id = request.path_params["entityId"]
    entity, entity_map = await services_of(request).entity_maps.use_on_retrieve(
        call.tenant, map_request(request), entity_id,
        lambda: _broker(request).retrieve_entity(
            call.tenant, call.context, entity_id, shape,
            type_selection=request.query_params.get("type")))
    call = _geojson_call(call, shape)
    if call.accept == "application/geo+json" and isinstance(entity, list):
        entity = {"type": "FeatureCollection", "features": entity}
    status, headers = _for_version(request, shape, entity, map_headers(entity_map))
    return json_response(call, entity, status, headers)


async def replace_entity(request: Request, call: Call) -> Response:
    """6.5.3.3 Replace Entity."""
    body, call = await _body(request, call)
    await _broker(request).replace_entity(call.tenant, call.context,
                                          request.path_params["entityId"], body)
    return Response(status_code=204)


async def merge_entity(request: Request, call: Call) -> Response:
    """6.5.3.4 Merge Entity."""
    body, call = await _body(request, call)
    await _broker(request).merge_entity(call.tenant, call.context,
                                        request.path_params["entityId"], body)
    return Response(status_code=204)


async def delete_entity(request: Request, call: Call) -> Response:
    """6.5.3.2 Delete Entity."""
    await _broker(request).delete_entity(call.tenant, request.path_params["entityId"],
                                         context=call.context,
                                         type_text=request.query_params.get("type"))
    return Response(status_code=204)


# ------------------------------------------------------------------ /entities/{id}/attrs


async def append_attributes(request: Request, call: Call) -> Response:
    """6.6.3.1 Append Entity Attributes (``options=noOverwrite``)."""
    body, call = await _body(request, call)
    result = await _broker(request).append_attributes(
        call.tenant, call.context, request.path_params["entityId"], body,
        no_overwrite="noOverwrite" in option_set(request.query_params.get("options")))
    return _update_response(result)


async def update_attributes(request: Request, call: Call) -> Response:
    """6.6.3.2 Update Entity Attributes."""
    body, call = await _body(request, call)
    result = await _broker(request).update_attributes(
        call.tenant, call.context, request.path_params["entityId"], body)
    return _update_response(result)


async def update_attribute(request: Request, call: Call) -> Response:
    """6.7.3.1 Partial Attribute Update."""
    body, call = await _body(request, call)
    await _broker(request).update_attribute(
        call.tenant, call.context, request.path_params["entityId"],
        request.path_params["attrId"], body, type_text=request.query_params.get("type"))
    return Response(status_code=204)


async def replace_attribute(request: Request, call: Call) -> Response:
    """6.7.3.3 Replace Attribute."""
    body, call = await _body(request, call)
    await _broker(request).replace_attribute(
        call.tenant, call.context, request.path_params["entityId"],
        request.path_params["attrId"], body)
    return Response(status_code=204)


async def delete_attribute(request: Request, call: Call) -> Response:
    """6.7.3.2 Delete Entity Attribute (``datasetId``, ``deleteAll``)."""
    await _broker(request).delete_attribute(
        call.tenant, call.context, request.path_params["entityId"],
        request.path_params["attrId"], dataset_id=request.query_params.get("datasetId"),
        delete_all=bool_param(request, "deleteAll"), type_text=request.query_params.get("type"))
    return Response(status_code=204)


# ------------------------------------------------------------------ /entityOperations


async def batch_create(request: Request, call: Call) -> Response:
    """6.14.3.1 Batch Entity Creation."""
    result = await _batch(request, call, lambda body, call: _broker(request).batch_create(
        call.tenant, call.context, body))
    return _batch_response(result, created_status=True)


async def batch_upsert(request: Request, call: Call) -> Response:
    """6.15.3.1 Batch Entity Create or Update (``options=replace|update``)."""
    options = option_set(request.query_params.get("options"))
    if {"replace", "update"} <= options:
        raise BadRequestData("options may name only one of replace and update")
    result = await _batch(request, call, lambda body, call: _broker(request).batch_upsert(
        call.tenant, call.context, body, mode="update" if "update" in options else "replace"))
    return _batch_response(result, created_status=True)


async def batch_update(request: Request, call: Call) -> Response:
    """6.16.3.1 Batch Entity Update (``options=noOverwrite``)."""
    options = option_set(request.query_params.get("options"))
    result = await _batch(request, call, lambda body, call: _broker(request).batch_update(
        call.tenant, call.context, body, no_overwrite="noOverwrite" in options))
    return _batch_response(result)


async def batch_merge(request: Request, call: Call) -> Response:
    """6.31.3.1 Batch Entity Merge."""
    result = await _batch(request, call, lambda body, call: _broker(request).batch_merge(
        call.tenant, call.context, body))
    return _batch_response(result)


async def batch_delete(request: Request, call: Call) -> Response:
    """6.17.3.1 Batch Entity Delete."""
    body, call = await _body(request, call)
    result = await _broker(request).batch_delete(call.tenant, body)
    return _batch_response(result)


@offers_geojson
async def batch_query(request: Request, call: Call) -> Response:
    """6.23.3.1 Query Entities via POST (the Query data type, clause 5.2.23). Unsupported
    (422): entityMap, expandValues, collectValues."""
    _refuse_unsupported(request)
    body, call = await _body(request, call)
    if isinstance(body, dict) and "temporalQ" in body:
        raise OperationNotSupported("Query member temporalQ is not supported here")
    shape = _shape(request, call)
    _check_geometry_property(request, call, shape)
    params = request.query_params
    query = _ordering(request, QueryParams(limit=int_param(request, "limit"),
                                           offset=int_param(request, "offset", 0) or 0,
                                           count=bool_param(request, "count"),
                                           local=_local(request)))
    if params.get("options") and "count" in option_set(params.get("options")):
        query = replace(query, count=True)
    page = await _broker(request).batch_query_page(call.tenant, call.context, body, query,
                                                   shape)
    return _page_response(request, _geojson_call(call, shape), shape, page, links=False)


R, W = "reader", "writer"
#: (path, {method: (handler, minimum role, has a JSON body)})
ROUTES: list[tuple[str, dict[str, tuple[Any, str, bool]]]] = [
    ("/entities", {"GET": (query_entities, R, False), "POST": (create_entity, W, True),
                   "DELETE": (purge_entities, W, False)}),
    ("/entities/{entityId}", {
        "GET": (retrieve_entity, R, False), "PUT": (replace_entity, W, True),
        "PATCH": (merge_entity, W, True), "DELETE": (delete_entity, W, False)}),
    ("/entities/{entityId}/attrs", {
        "POST": (append_attributes, W, True), "PATCH": (update_attributes, W, True)}),
    ("/entities/{entityId}/attrs/{attrId}", {
        "PATCH": (update_attribute, W, True), "PUT": (replace_attribute, W, True),
        "DELETE": (delete_attribute, W, False)}),
    ("/entityOperations/create", {"POST": (batch_create, W, True)}),
    ("/entityOperations/upsert", {"POST": (batch_upsert, W, True)}),
    ("/entityOperations/update", {"POST": (batch_update, W, True)}),
    ("/entityOperations/merge", {"POST": (batch_merge, W, True)}),
    ("/entityOperations/delete", {"POST": (batch_delete, W, True)}),
    ("/entityOperations/query", {"POST": (batch_query, R, True)}),
]
