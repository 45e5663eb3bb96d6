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
    """6.30.3.2 List @contexts (clause 5.13.3: ``details=true``, ``kind``)."""
    details = bool_param(request, "details")
    infos = await _registry(request).list(request.query_params.get("kind"))
    data: object = [i.details() for i in infos] if details else [i.url for i in infos]
    return Response(orjson.dumps(data), media_type="application/json")


async def serve_context(request: Request, call: Call) -> Response:
    """6.30.3.3 Serve an @context (clause 5.13.4): the document, or with ``details=true`` its
    details (URL, localId, kind, createdAt)."""
    context_id = request.path_params["contextId"]
    if bool_param(request, "details"):
        info = await _registry(request).info(context_id)
        return Response(orjson.dumps(info.details()), media_type="application/json")
    document = await _registry(request).get(context_id)
    return Response(orjson.dumps(document), media_type="application/ld+json")


async def add_context(request: Request, call: Call) -> Response:
    """6.30.3.1 Add an @context (clause 5.13.2: hosted here from now on)."""
    settings = services_of(request).settings
    _, document = await read_json(request, settings.max_body_bytes)
    url = await _registry(request).host(document, settings.public_url or str(request.base_url))
    return Response(status_code=201, headers={"Location": url})


async def delete_context(request: Request, call: Call) -> Response:
    """6.30.3.4 Delete and Reload @context (clause 5.13.5, ``reload=true``; the core context
    cannot be deleted)."""
    await _registry(request).delete(request.path_params["contextId"],
                                    reload=bool_param(request, "reload"))
    return Response(status_code=204)


ROUTES: list[tuple[str, dict[str, tuple[Any, str, bool]]]] = [
    ("/jsonldContexts", {"GET": (list_contexts, "reader", False),
                         "POST": (add_context, "writer", True)}),
    ("/jsonldContexts/{contextId:path}", {"GET": (serve_context, "reader", False),
                                     "DELETE": (delete_context, "admin", False)}),
]
