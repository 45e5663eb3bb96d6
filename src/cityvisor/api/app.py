"""The ASGI application: routes, authentication, errors and security headers.

``create_app(settings, services)`` or ``create_app(settings, build_services=...)`` is the only
entry point; it opens nothing until the server starts. The API sits below the composition
root: whoever composes the server (``cityvisor.web``, a test) hands it the services.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import cache
from typing import Any
from urllib.parse import unquote

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cityvisor import __version__
from cityvisor.api import (
    contexts,
    discovery,
    entities,
    entity_maps,
    info,
    subscriptions,
    temporal,
)
from cityvisor.api.http import (
    TENANT_RESPONSE_HEADER,
    ApiServices,
    Call,
    Handler,
    authorize,
    geojson_offered,
    link_context,
    negotiate,
    services_of,
    tenant_of,
)
from cityvisor.api.openapi import openapi_document
from cityvisor.api.prefer import context_in_link
from cityvisor.config import Settings, is_loopback_host
from cityvisor.http_problems import guard, problem_response
from cityvisor.ngsild.errors import BadRequestData, MethodNotAllowed, ResourceNotFound

BASE = "/ngsi-ld/v1"
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


class SecurityHeaders:
    """Adds the security headers to every response (pure ASGI: no per-request overhead)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                # a response may set its own CSP or cache policy (console pages, vendor files)
                headers += [h for h in SECURITY_HEADERS if h[0] not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class LoopbackHostGuard:
    """Without authentication (loopback only), refuse requests whose ``Host`` is not a loopback
    name: a web page on another site could otherwise reach the open server through DNS
    rebinding (its name re-pointed at 127.0.0.1) and read or write the city's data."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = next((value.decode("latin-1") for name, value in scope["headers"]
                         if name == b"host"), None)
            if host is not None and not is_loopback_host(_hostname(host)):
                response = problem_response(BadRequestData(
                    f"Host {host!r} refused: without authentication the server answers only "
                    "to loopback names (127.0.0.1, localhost, [::1])"))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class EncodedPathSegments:
    """Route API requests on their path as sent, so that an entity id holding ``/`` (a URI
    such as ``http://example.org/lamp/1``, sent percent-encoded as ``%2F``) stays one path
    segment. Each decoded segment keeps ``%`` and ``/`` escaped; :func:`endpoint` decodes the
    path parameters once (RFC 3986, section 2.4: decode after splitting into segments)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path")
        if scope["type"] == "http" and raw and raw.startswith(BASE.encode()):
            raw_text = raw.split(b"?", 1)[0].decode("latin-1")
            if "%" in raw_text:  # else every segment is already as decoded (the usual path)
                raw_text = "/".join(
                    unquote(part, errors="replace").replace("%", "%25").replace("/", "%2F")
                    for part in raw_text.split("/"))
            scope = dict(scope, path=raw_text)
        await self.app(scope, receive, send)


def _hostname(host: str) -> str:
    """``Host`` header -> name without port (``[::1]:1026`` -> ``::1``), lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


#: the methods whose requests carry a body and must say its length (clause 6.3.4)
BODY_METHODS = frozenset({"POST", "PATCH", "PUT"})


def endpoint(handler: Handler, role: str, *, body: bool = False) -> Any:
    """Wrap a handler: length precondition, tenant, authentication, @context from Link,
    negotiation, errors; the tenant of the request is echoed on the answer (clause 6.3.14)."""
    geojson_ok = geojson_offered(handler)

    async def run(request: Request) -> Response:
        if request.method in BODY_METHODS and "content-length" not in request.headers:
            # clause 6.3.4: decided before anything else, "just a 411 HTTP status code"
            return Response(status_code=411)
        tenant = None
        try:
            params = request.scope.get("path_params")
            if params:  # escaped by EncodedPathSegments
                request.scope["path_params"] = {k: unquote(v) if "%" in v else v
                                                for k, v in params.items()}
            services = services_of(request)
            tenant = tenant_of(request)
            principal = await authorize(request, services.tokens, role, tenant)
            accept = ("application/json" if body and role != "reader"
                      else negotiate(request, geojson_ok))
            call = Call(tenant, None if body else link_context(request), principal, accept,
                        geojson_link=context_in_link(request.headers.getlist("prefer")))
            response = await handler(request, call)
        except Exception as error:
            response = guard(error)
        if tenant is not None:
            response.headers[TENANT_RESPONSE_HEADER] = tenant
        return response

    return run


#: every API module's route table: (path under /ngsi-ld/v1, {method: (handler, role, body?)})
ROUTE_TABLES = [entities.ROUTES, discovery.ROUTES, contexts.ROUTES, subscriptions.ROUTES,
                temporal.ROUTES, entity_maps.ROUTES, info.ROUTES]


def _routes() -> list[Route]:
    table = [row for module_table in ROUTE_TABLES for row in module_table]
    routes: list[Route] = []
    for path, methods in table:
        handlers = {method: endpoint(handler, role, body=has_body)
                    for method, (handler, role, has_body) in methods.items()}
        routes.append(Route(BASE + path, _dispatch(handlers), methods=list(handlers), name=path))
    return routes


def _dispatch(handlers: dict[str, Any]) -> Any:
    """One route per path (so a 405 names every allowed method), one handler per method."""
    if len(handlers) == 1:
        return next(iter(handlers.values()))

    async def run(request: Request) -> Response:
        return await handlers[request.method](request)  # type: ignore[no-any-return]

    return run


async def health(request: Request) -> Response:
    return Response(orjson.dumps({"status": "ok", "version": __version__}),
                    media_type="application/json")


async def openapi(request: Request) -> Response:
    return Response(orjson.dumps(openapi_document()), media_type="application/json")


@cache
def _templates() -> list[re.Pattern[str]]:
    """The API paths with each ``{parameter}`` matching any segment, an empty one included."""
    return [re.compile("^" + re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]*)", re.escape(BASE + path))
                       + "$") for table in ROUTE_TABLES for path, _ in table]


def _empty_parameter(path: str) -> str | None:
    """The name of the path parameter left empty (``/entities//attrs``), if that is why no
    route matched."""
    if "//" not in path:
        return None
    for template in _templates():
        found = template.match(path)
        if found is not None:
            empty = [name for name, value in found.groupdict().items() if not value]
            if empty:
                return empty[0]
    return None


async def _not_found(request: Request, exc: Exception) -> Response:
    empty = _empty_parameter(request.url.path)
    if empty is not None:
        # an empty entity id, attribute name... is no valid one (clauses 4.6.2, 6.3.x):
        # BadRequestData, not a missing resource
        return problem_response(BadRequestData(
            f"The request path {request.url.path} has an empty {empty}"))
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        response = problem_response(
            MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}"))
        if exc.headers and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    return problem_response(ResourceNotFound(f"No resource at {request.url.path}"))


def create_app(settings: Settings, services: ApiServices | None = None,
               extra_routes: Sequence[BaseRoute] = (), *,
               build_services: Callable[[Settings], ApiServices | Awaitable[ApiServices]]
               | None = None) -> ASGIApp:
    """The NGSI-LD ASGI app; ``services`` may be given (tests, the demo), else built on start
    by ``build_services`` and closed on shutdown.

    ``extra_routes`` come from the layers above (the console, see :mod:`cityvisor.web`)."""
    if services is None and build_services is None:
        raise ValueError("create_app needs services or build_services")
    build = build_services

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        own = services is None
        if services is not None:
            app.state.services = services
        else:
            assert build is not None  # checked when the app was created
            built = build(settings)
            app.state.services = await built if inspect.isawaitable(built) else built
        await app.state.services.start()
        try:
            yield
        finally:
            if own:
                await app.state.services.close()

    routes = _routes() + [
        Route("/health", health, methods=["GET"]),
        Route(BASE + "/openapi.json", openapi, methods=["GET"]),
        *extra_routes,
    ]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(EncodedPathSegments)],
                    exception_handlers={404: _not_found, 405: _not_found})
    if services is not None:
        app.state.services = services
    return SecurityHeaders(app if settings.auth else LoopbackHostGuard(app))


__all__ = ["BASE", "LoopbackHostGuard", "SecurityHeaders", "create_app"]
