"""``/entityMaps/{entityMapId}``: retrieve, update and delete an EntityMap (clause 6.32;
operations 5.14.1-5.14.3), and the ``entityMap`` parameter and ``NGSILD-EntityMap`` header
that the retrieve and query endpoints share (clauses 5.7.1.4, 5.7.2.4, 5.7.3.4, 5.7.4.4).

Semantics: ``broker/entity_maps.py``. Unsupported: ``GET /entityMaps`` and
``GET /temporal/entityMaps`` (create an EntityMap for a query, clauses 5.14.4, 5.14.5; a
query with ``entityMap=true`` makes one).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cityvisor.api.http import (
    Call,
    bool_param,
    json_response,
    location,
    read_json,
    services_of,
)
from cityvisor.broker.entity_maps import EntityMaps, MapAnswer, MapRequest

BASE = "/ngsi-ld/v1"
HEADER = "NGSILD-EntityMap"
PARAMETER = "entityMap"
#: the query parameters of the retrieve and query endpoints that ask for an entity map
MAPPED = (PARAMETER,)


def _maps(request: Request) -> EntityMaps:
    return services_of(request).entity_maps


def map_request(request: Request) -> MapRequest:
    """The ``entityMap`` flag and the ``NGSILD-EntityMap`` header of a request."""
    reference = (request.headers.get(HEADER.lower()) or "").strip()
    return MapRequest(flag=bool_param(request, PARAMETER), reference=reference or None)


def map_headers(answer: MapAnswer) -> dict[str, str]:
    """The ``NGSILD-EntityMap`` header of an answer: the live map's reference as the request
    sent it, or the location of the map the request made."""
    if answer.echoed is not None:
        return {HEADER: answer.echoed}
    if answer.created is not None:
        return {HEADER: location(f"{BASE}/entityMaps/{answer.created}")["Location"]}
    return {}


async def retrieve_entity_map(request: Request, call: Call) -> Response:
    """6.32.3.1 Retrieve EntityMap (clause 5.14.1)."""
    found = await _maps(request).retrieve(call.tenant, request.path_params["entityMapId"])
    return json_response(call, found.document())


async def update_entity_map(request: Request, call: Call) -> Response:
    """6.32.3.2 Update EntityMap (clause 5.14.2): ``expiresAt``; output-only members ignored."""
    _, fragment = await read_json(request, services_of(request).settings.max_body_bytes)
    await _maps(request).update(call.tenant, request.path_params["entityMapId"], fragment)
    return Response(status_code=204)


async def delete_entity_map(request: Request, call: Call) -> Response:
    """6.32.3.3 Delete EntityMap (clause 5.14.3)."""
    await _maps(request).delete(call.tenant, request.path_params["entityMapId"])
    return Response(status_code=204)


ROUTES: list[tuple[str, dict[str, tuple[Any, str, bool]]]] = [
    ("/entityMaps/{entityMapId}", {"GET": (retrieve_entity_map, "reader", False),
                                   "PATCH": (update_entity_map, "writer", True),
                                   "DELETE": (delete_entity_map, "writer", False)}),
]
