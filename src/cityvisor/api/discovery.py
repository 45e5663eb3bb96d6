"""Discovery endpoints: the entity types and attributes a tenant holds (clauses 5.7.5-5.7.10,
HTTP binding 6.25-6.28).

Each operation accepts only the query parameters it defines (clause 6.3.20: any other is
InvalidRequest): ``details`` and ``local`` on the lists, ``local`` on one type or attribute.
``local=true`` changes nothing here: every answer is local, there being no context source
registrations. ``/types/`` and ``/attributes/`` (an empty name) are the lists.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cityvisor.api.http import Call, bool_param, json_response, services_of
from cityvisor.broker.entities import EntityBroker
from cityvisor.ngsild.errors import InvalidRequest

LIST_PARAMS = frozenset({"details", "local"})
ONE_PARAMS = frozenset({"local"})


def _broker(request: Request) -> EntityBroker:
    return services_of(request).broker


def _check_params(request: Request, allowed: frozenset[str]) -> None:
    """Refuse a query parameter the operation does not define (clause 6.3.20)."""
    unknown = sorted(set(request.query_params) - allowed)
    if unknown:
        raise InvalidRequest(f"Unknown query parameter(s) {', '.join(unknown)}: this operation "
                             f"accepts {', '.join(sorted(allowed))}")
    bool_param(request, "local")


async def list_types(request: Request, call: Call) -> Response:
    """6.25.3.1 Retrieve Available Entity Types (clauses 5.7.5, 5.7.6 with ``details=true``)."""
    _check_params(request, LIST_PARAMS)
    data = await _broker(request).types(call.tenant, call.context,
                                        details=bool_param(request, "details"))
    return json_response(call, data)


async def type_info(request: Request, call: Call) -> Response:
    """6.26.3.1 Details about an Entity Type (clause 5.7.7)."""
    type_name = request.path_params["type"]
    if not type_name:
        return await list_types(request, call)
    _check_params(request, ONE_PARAMS)
    data = await _broker(request).type_info(call.tenant, call.context, type_name)
    return json_response(call, data)


async def list_attributes(request: Request, call: Call) -> Response:
    """6.27.3.1 Retrieve Available Attributes (clauses 5.7.8, 5.7.9 with ``details=true``)."""
    _check_params(request, LIST_PARAMS)
    data = await _broker(request).attributes(call.tenant, call.context,
                                             details=bool_param(request, "details"))
    return json_response(call, data)


async def attribute_info(request: Request, call: Call) -> Response:
    """6.28.3.1 Details about an Attribute (clause 5.7.10)."""
    name = request.path_params["attrId"]
    if not name:
        return await list_attributes(request, call)
    _check_params(request, ONE_PARAMS)
    data = await _broker(request).attribute_info(call.tenant, call.context, name)
    return json_response(call, data)


R = "reader"
ROUTES: list[tuple[str, dict[str, tuple[Any, str, bool]]]] = [
    ("/types", {"GET": (list_types, R, False)}),
    ("/types/{type:path}", {"GET": (type_info, R, False)}),
    ("/attributes", {"GET": (list_attributes, R, False)}),
    ("/attributes/{attrId:path}", {"GET": (attribute_info, R, False)}),
]
