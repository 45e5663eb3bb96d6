"""Who is using the console: bearer-token sign-in (or the open demo mode), roles and tenant.

The console API verifies the same tokens as the NGSI-LD API (``cityvisor token create``):
``reader`` may view, ``writer`` may act on alarms. The tenant comes from the ``NGSILD-Tenant``
header, else from the token when it is bound to one tenant, else ``nimes`` (the demo city).
With authentication off (``cityvisor demo``, loopback only) anyone may use the console; the
operator types a name, sent percent-encoded in ``X-Cityvisor-Operator``, which becomes the actor of actions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote

import orjson
from starlette.requests import Request
from starlette.responses import Response

from cityvisor.broker.contexts import ContextRegistry
from cityvisor.broker.entities import EntityBroker
from cityvisor.broker.temporal import TemporalBroker
from cityvisor.config import Settings
from cityvisor.http_problems import guard, problem_response
from cityvisor.ngsild.errors import (
    BadRequestData,
    Forbidden,
    NgsiLdError,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from cityvisor.ngsild.tenants import check_tenant
from cityvisor.security.tokens import ALL_TENANTS, DEFAULT_TENANT, ROLES, TokenStore

DEFAULT_CONSOLE_TENANT = "nimes"
OPERATOR_HEADER = "x-cityvisor-operator"
MAX_NAME = 80


@dataclass(frozen=True)
class Operator:
    """The signed-in operator: actor name (written in audit trails), role, tenant, mode."""

    actor: str
    role: str
    tenant: str | None
    authenticated: bool

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)

    def describe(self) -> dict[str, Any]:
        return {"actor": self.actor, "role": self.role, "tenant": self.tenant,
                "mode": "token" if self.authenticated else "open",
                "canAct": self.may("writer")}


class ConsoleServices(Protocol):
    """What the console uses of the services it is served with (``cityvisor.services``)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def tokens(self) -> TokenStore | None: ...  # None: authentication is off

    @property
    def broker(self) -> EntityBroker: ...

    @property
    def contexts(self) -> ContextRegistry: ...

    @property
    def temporal(self) -> TemporalBroker | None: ...


def services_of(request: Request) -> ConsoleServices:
    services: ConsoleServices = request.app.state.services
    return services


async def authenticate(request: Request, role: str = "reader") -> Operator:
    """The operator of a console API request, or Unauthorized/Forbidden."""
    services = services_of(request)
    header_tenant = request.headers.get("ngsild-tenant") or None
    check_tenant(header_tenant)
    if services.tokens is None:
        # percent-encoded UTF-8 (header values are Latin-1 on the wire)
        typed = unquote(request.headers.get(OPERATOR_HEADER, ""))
        name = " ".join("".join(c for c in typed if c.isprintable() or c.isspace())
                        .split())[:MAX_NAME]
        return Operator(name or "opérateur (mode démo)", "admin",
                        header_tenant or DEFAULT_CONSOLE_TENANT, authenticated=False)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Sign in with a bearer token (Authorization: Bearer <token>)")
    principal = await services.tokens.verify(token.strip())
    if principal is None:
        raise Unauthorized("The bearer token is unknown or revoked")
    if header_tenant is not None:
        tenant: str | None = header_tenant
    elif principal.tenant == ALL_TENANTS:
        tenant = DEFAULT_CONSOLE_TENANT
    else:
        tenant = principal.tenant or None  # DEFAULT_TENANT ("") is the default tenant
    if not principal.may_use(tenant if tenant is not None else DEFAULT_TENANT):
        raise Forbidden(f"The token is not valid for tenant {tenant or '(default)'}")
    if not principal.may(role):
        raise Forbidden(f"The token's role {principal.role} cannot do this (needs {role})")
    name = principal.name
    actor = f"{name} (jeton {principal.token_id})" if name else f"jeton {principal.token_id}"
    return Operator(actor, principal.role, tenant, authenticated=True)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json",
                    headers=headers)


ConsoleHandler = Callable[[Request, Operator], Awaitable[Response]]


def console_endpoint(handler: ConsoleHandler, role: str = "reader") -> Callable[[Request], Awaitable[Response]]:
    """Wrap a console API handler: authentication, role, errors as problem+json (never a 500
    with a stack trace)."""

    async def run(request: Request) -> Response:
        try:
            operator = await authenticate(request, role)
            return await handler(request, operator)
        except Exception as error:
            return guard(error)

    return run


async def read_object(request: Request, max_bytes: int = 65536) -> dict[str, Any]:
    """A small JSON object body sent as ``application/json`` (else UnsupportedMediaType), or
    BadRequestData (PayloadTooLarge past ``max_bytes``: the
    body is refused from its Content-Length, or as soon as the stream passes the limit, never
    read whole into memory)."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json":
        # also what keeps another web site from posting a "simple" (text/plain) cross-origin
        # request to a console in demo mode: application/json needs a CORS preflight, which
        # this server never grants
        raise UnsupportedMediaType("Send the body as application/json")
    length = request.headers.get("content-length")
    if length is not None and not length.isdigit():
        raise BadRequestData("Content-Length must be a number of bytes")
    if length is not None and int(length) > max_bytes:
        raise PayloadTooLarge(f"The body must be at most {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(f"The body must be at most {max_bytes} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        data = orjson.loads(body or b"null")
    except orjson.JSONDecodeError as error:
        raise BadRequestData(f"The body is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise BadRequestData("The body must be a JSON object")
    return data


async def session(request: Request, operator: Operator) -> Response:
    """GET /console/api/session: who am I (the sign-in page checks the token with it), and
    the map's tile server: a tile URL may carry the city's key for a tile service, so it is
    given to signed-in operators only, never by the unauthenticated ``/mode``."""
    tile_url = getattr(services_of(request).settings, "console_tile_url", None)
    return json_response({**operator.describe(), "tileUrl": tile_url})


async def session_mode(request: Request) -> Response:
    """GET /console/api/mode (no auth): whether the sign-in needs a token; nothing else."""
    services = services_of(request)
    return json_response({"auth": services.tokens is not None,
                          "defaultTenant": DEFAULT_CONSOLE_TENANT})


__all__ = ["ConsoleServices", "NgsiLdError", "Operator", "authenticate", "console_endpoint",
           "problem_response"]
