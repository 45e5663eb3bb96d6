"""``/jsonldContexts``: list, serve, add and delete @contexts (clause 6.30)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from cityvisor.api.http import Call, bool_param, read_json, services_of
from cityvisor.broker.contexts import ContextRegistry


def _registry(request: Request) -> ContextRegistry:
    return services_of(request).contexts


async def list_contexts(request: Request, call: Call) -> Response:
    """6.30.3.2 List @contexts (``details=true``, ``kind``)."""
    infos = _registry(request).list()
    kind = request.query_params.get("kind")
    if kind is not None:
        infos = [i for i in infos if i.kind == kind]
    if bool_param(request, "details"):
        data: object = [{"URL": i.url, "localId": i.local_id, "kind": i.kind,
                         **({"timestamp": i.created_at} if i.created_at else {})}
                        for i in infos]
    else:
        data = [i.url for i in infos]
    return Response(orjson.dumps(data), media_type="application/json")


async def serve_context(request: Request, call: Call) -> Response:
    """6.30.3.3 Serve an @context."""
    document = _registry(request).get(request.path_params["contextId"])
    return Response(orjson.dumps(document), media_type="application/ld+json")


async def add_context(request: Request, call: Call) -> Response:
    """6.30.3.1 Add an @context (hosted here from now on)."""
    settings = services_of(request).settings
    _, document = await read_json(request, settings.max_body_bytes)
    url = _registry(request).host(document, settings.public_url or str(request.base_url))
    return Response(status_code=201, headers={"Location": url})


async def delete_context(request: Request, call: Call) -> Response:
    """6.30.3.4 Delete an @context (the core context cannot be deleted)."""
    _registry(request).delete(request.path_params["contextId"])
    return Response(status_code=204)


ROUTES: list[tuple[str, dict[str, tuple[Any, str, bool]]]] = [
    ("/jsonldContexts", {"GET": (list_contexts, "reader", False),
                         "POST": (add_context, "writer", True)}),
    ("/jsonldContexts/{contextId:path}", {"GET": (serve_context, "reader", False),
                                     "DELETE": (delete_context, "admin", False)}),
]
