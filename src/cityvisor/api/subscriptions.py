"""NGSI-LD subscription endpoints (clauses 6.10-6.11)."""

from __future__ import annotations

from dataclasses import replace

from starlette.requests import Request
from starlette.responses import Response

from cityvisor.api.http import (
    Call,
    bool_param,
    int_param,
    json_response,
    location,
    read_body,
    services_of,
)
from cityvisor.api.prefer import version_applied, version_preference
from cityvisor.broker.subscriptions import SubscriptionManager
from cityvisor.ngsild.errors import BadRequestData

BASE = "/ngsi-ld/v1"
MAX_LIMIT = 1000


def _manager(request: Request) -> SubscriptionManager:
    return services_of(request).subscriptions.manager


async def create_subscription(request: Request, call: Call) -> Response:
    """6.10.3.1 Create Subscription: 201 with Location."""
    settings = services_of(request).settings
    body, context = await read_body(request, settings.max_body_bytes)
    sub_id = await _manager(request).create(call.tenant, context, body,
                                            settings.public_url or str(request.base_url))
    return Response(status_code=201, headers=location(f"{BASE}/subscriptions/{sub_id}"))


async def query_subscriptions(request: Request, call: Call) -> Response:
    """6.10.3.2 Query Subscriptions (limit, offset, count)."""
    limit = int_param(request, "limit", 20)
    offset = int_param(request, "offset", 0)
    assert limit is not None and offset is not None
    count = bool_param(request, "count")
    if not 0 <= limit <= MAX_LIMIT:
        raise BadRequestData(f"limit must be between 0 and {MAX_LIMIT}, got {limit}")
    if limit == 0 and not count:
        raise BadRequestData("limit=0 is only allowed together with count=true")
    if offset < 0:
        raise BadRequestData(f"offset must not be negative, got {offset}")
    page, total = await _manager(request).query(call.tenant, limit, offset, call.context)
    headers = _version_headers(request)
    if count:
        headers["NGSILD-Results-Count"] = str(total)
    return json_response(call, page, headers=headers)


async def retrieve_subscription(request: Request, call: Call) -> Response:
    """6.11.3.1 Retrieve Subscription."""
    sub = await _manager(request).retrieve(call.tenant, request.path_params["subscriptionId"],
                                           call.context)
    return json_response(call, sub, headers=_version_headers(request))


def _version_headers(request: Request) -> dict[str, str]:
    """Preference-Applied for a version preference (clauses 4.3.6.8, 6.3.6): subscriptions
    are served unaltered (200)."""
    return version_applied(version_preference(request.headers.getlist("prefer")))


async def update_subscription(request: Request, call: Call) -> Response:
    """6.11.3.2 Update Subscription: 204."""
    settings = services_of(request).settings
    body, context = await read_body(request, settings.max_body_bytes)
    call = replace(call, context=context)
    await _manager(request).update(call.tenant, request.path_params["subscriptionId"], body,
                                   context, settings.public_url or str(request.base_url))
    return Response(status_code=204)


async def delete_subscription(request: Request, call: Call) -> Response:
    """6.11.3.3 Delete Subscription: 204."""
    await _manager(request).delete(call.tenant, request.path_params["subscriptionId"])
    return Response(status_code=204)


ROUTES = [
    ("/subscriptions", {"GET": (query_subscriptions, "reader", False),
                        "POST": (create_subscription, "writer", True)}),
    ("/subscriptions/{subscriptionId}", {
        "GET": (retrieve_subscription, "reader", False),
        "PATCH": (update_subscription, "writer", True),
        "DELETE": (delete_subscription, "writer", False)}),
]
