"""HTTP plumbing shared by the API handlers: bodies, @context, tenants, auth, responses.

NGSI-LD content negotiation (clause 6.3.4-6.3.6): a request body is ``application/json`` (its
``@context`` comes from a ``Link`` header, or is the core context) or ``application/ld+json``
(its ``@context`` is in the body). Responses are ``application/json`` with a ``Link`` header,
``application/ld+json`` with the ``@context`` in the body, or ``application/geo+json``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol
from urllib.parse import quote

import orjson
from starlette.requests import Request
from starlette.responses import Response

from cityvisor.broker.contexts import ContextRegistry
from cityvisor.broker.entities import EntityBroker
from cityvisor.broker.entity_maps import EntityMaps
from cityvisor.broker.subscriptions import SubscriptionManager
from cityvisor.broker.temporal import TemporalBroker
from cityvisor.config import Settings
from cityvisor.ngsild.context import CONTEXT_REL, CORE_CONTEXT_URL
from cityvisor.ngsild.errors import (
    BadRequestData,
    Forbidden,
    InvalidRequest,
    NotAcceptable,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
)
from cityvisor.ngsild.tenants import check_tenant
from cityvisor.security.tokens import Principal, TokenStore

_LINK = re.compile(r'<([^>]*)>\s*((?:;\s*[^;,]+)*)')
TENANT_HEADER = "ngsild-tenant"
#: the tenant applied by an operation, on its answer (clause 6.3.14)
TENANT_RESPONSE_HEADER = "NGSILD-Tenant"
ADMIN = Principal("open", "admin", "*")


class SubscriptionService(Protocol):
    """The subscription side of the services: its manager (clause 5.8)."""

    @property
    def manager(self) -> SubscriptionManager: ...


class ApiServices(Protocol):
    """What the API uses of the services it is given (``cityvisor.services.Services``)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def tokens(self) -> TokenStore | None: ...  # None: authentication is off

    @property
    def broker(self) -> EntityBroker: ...

    @property
    def contexts(self) -> ContextRegistry: ...

    @property
    def temporal(self) -> TemporalBroker: ...

    @property
    def subscriptions(self) -> SubscriptionService: ...

    @property
    def entity_maps(self) -> EntityMaps: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


def services_of(request: Request) -> ApiServices:
    """The services of the app serving ``request`` (set by ``create_app``)."""
    services: ApiServices = request.app.state.services
    return services


@dataclass(frozen=True)
class Call:
    """What a handler needs to know about the request besides its parameters."""

    tenant: str | None
    context: Any  # the caller's @context value (URL, object, list) or None for the core
    principal: Principal
    accept: str  # application/json | application/ld+json | application/geo+json
    #: GeoJSON with its @context in a Link header, not in the body (clause 6.3.6, ``Prefer:
    #: body=json``)
    geojson_link: bool = False


def link_context(request: Request) -> str | None:
    """The @context URL of a ``Link`` header (clause 6.3.5), if any."""
    header = request.headers.get("link")
    if not header:
        return None
    return _parse_link(header)


@lru_cache(maxsize=256)
def _parse_link(header: str) -> str | None:
    found: list[str] = []
    for match in _LINK.finditer(header):
        url, params = match.group(1), match.group(2)
        if CONTEXT_REL in params:
            found.append(url.strip())
    if len(found) > 1:
        raise BadRequestData("Only one JSON-LD context Link header is allowed")
    if not found:
        return None
    if not re.match(r"^https?://", found[0]):
        raise BadRequestData(f"The Link header @context must be an http(s) URL, got {found[0]!r}")
    return found[0]


#: the representations an operation offers, in the order of clause 6.3.4 (the first one is the
#: default); GeoJSON only where the operation offers it (clause 6.3.7: Retrieve, Query Entities)
OFFERS = ("application/json", "application/ld+json")
GEOJSON = "application/geo+json"


def negotiate(request: Request, geojson_ok: bool = False) -> str:
    """The response media type from the ``Accept`` header (clauses 6.3.4, 6.3.6)."""
    offers = (*OFFERS, GEOJSON) if geojson_ok else OFFERS
    accept = request.headers.get("accept", "").strip()
    if not accept:
        return offers[0]
    chosen = choose_media_type(accept, offers)
    if chosen is None:
        raise NotAcceptable(f"None of the accepted media types can be served: {accept} "
                            f"(this operation offers {', '.join(offers)})")
    return chosen


def choose_media_type(accept: str, offers: tuple[str, ...]) -> str | None:
    """The offer an ``Accept`` header prefers, or None (IETF RFC 9110, section 12.5.1).

    Each offer takes the weight of the most specific media range that matches it (``type/sub``
    before ``type/*`` before ``*/*``); a weight of 0 means "not acceptable", even where a
    wildcard would allow it; a malformed weight counts as the default 1. Among equal weights
    the range the client listed first wins, then the order of ``offers``."""
    ranges = _media_ranges(accept)
    best: tuple[float, int, int] | None = None
    chosen = None
    for index, offer in enumerate(offers):
        kind = offer.split("/")[0]
        matches = [(rank, position, quality) for position, (media, quality) in enumerate(ranges)
                   for rank, pattern in enumerate((offer, f"{kind}/*", "*/*")) if media == pattern]
        if not matches:
            continue
        _, position, quality = min(matches)  # the most specific range decides
        key = (-quality, position, index)
        if quality > 0 and (best is None or key < best):
            best, chosen = key, offer
    return chosen


@lru_cache(maxsize=256)
def _media_ranges(accept: str) -> tuple[tuple[str, float], ...]:
    """(media range in lower case, weight) of each member of an ``Accept`` header."""
    ranges = []
    for part in accept.split(","):
        media, _, params = part.strip().partition(";")
        if not media.strip():
            continue  # RFC 9110 5.6.1: empty list elements are ignored
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                quality = _weight(value.strip())
        ranges.append((media.strip().lower(), quality))
    return tuple(ranges)


def _weight(text: str) -> float:
    """An RFC 9110 qvalue (0 to 1, up to three decimals); anything else is the default 1."""
    if not re.fullmatch(r"0(\.\d{0,3})?|1(\.0{0,3})?", text):
        return 1.0
    return float(text)


async def read_json(request: Request, max_bytes: int) -> tuple[str, Any]:
    """Check the media type and size of a request body and parse it: (media type, JSON)."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    if media not in ("application/json", "application/ld+json", "application/merge-patch+json"):
        raise UnsupportedMediaType(
            f"Content-Type {content_type or '(none)'} is not supported: use application/json "
            "or application/ld+json"
        )
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > max_bytes:
        raise PayloadTooLarge(f"The body is larger than the limit of {max_bytes} bytes")
    chunks = bytearray()
    async for chunk in request.stream():
        chunks.extend(chunk)
        if len(chunks) > max_bytes:
            raise PayloadTooLarge(f"The body is larger than the limit of {max_bytes} bytes")
    if not chunks:
        raise InvalidRequest("The request has no body")
    try:
        return media, orjson.loads(chunks)
    except orjson.JSONDecodeError as error:
        raise InvalidRequest(f"The body is not valid JSON: {error}") from error


async def read_body(request: Request, max_bytes: int) -> tuple[Any, Any]:
    """Parse an NGSI-LD request body; return (body, @context value)."""
    media, body = await read_json(request, max_bytes)
    return body, _context_of(request, media, body)


async def read_batch_body(request: Request, max_bytes: int) -> tuple[Any, Any, list[Any]]:
    """Parse the body of a batch operation: (items, @context value, refused items). With
    application/json an entity that carries an @context is refused on its own (its error is
    reported in the batch result, clauses 5.6.7.4 and 6.3.5), the other entities go on."""
    media, body = await read_json(request, max_bytes)
    refused: list[Any] = []
    if media != "application/ld+json" and isinstance(body, list):
        refused = [i for i in body if isinstance(i, dict) and "@context" in i]
        body = [i for i in body if not (isinstance(i, dict) and "@context" in i)]
    return body, _context_of(request, media, body), refused


def _context_of(request: Request, media: str, body: Any) -> Any:
    link = link_context(request)
    if media == "application/ld+json":
        if link is not None:
            raise BadRequestData("With application/ld+json the @context goes in the body, not a Link header")
        context = _body_context(body)
    else:
        if _has_context(body):
            raise BadRequestData("With application/json the @context must come in a Link header")
        context = link
    return context


def _has_context(body: Any) -> bool:
    if isinstance(body, dict):
        return "@context" in body
    return isinstance(body, list) and any(isinstance(i, dict) and "@context" in i for i in body)


def _body_context(body: Any) -> Any:
    if isinstance(body, dict):
        if "@context" not in body:
            raise BadRequestData("An application/ld+json body must carry an @context")
        return body["@context"]
    if isinstance(body, list) and body:
        # an array of entity ids (batch delete, clause 6.17.3.1) cannot carry an @context and
        # needs none: only the objects of a batch (entities, fragments) carry one
        contexts = [i.get("@context") for i in body if isinstance(i, dict)]
        if not contexts:
            return None
        if any(c is None for c in contexts):
            raise BadRequestData("Every entity of an application/ld+json batch needs an @context")
        first = contexts[0]
        if any(c != first for c in contexts[1:]):
            raise BadRequestData("The entities of one batch must share the same @context")
        return first
    return None


def json_response(call: Call, data: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response:
    """Serialise a result in the negotiated media type, with the @context where it goes."""
    context = call.context if call.context is not None else CORE_CONTEXT_URL
    extra = dict(headers or {})
    in_link = call.accept == "application/json" or (call.accept == GEOJSON and call.geojson_link)
    if call.accept == GEOJSON and isinstance(data, dict) and not in_link:
        data = {**data, "@context": context}  # clause 6.3.7: on the Feature(Collection)
    elif call.accept == "application/ld+json":
        if isinstance(data, list):
            data = [{**item, "@context": context} if isinstance(item, dict) else item for item in data]
        elif isinstance(data, dict):
            data = {**data, "@context": context}
    if in_link:
        url = context if isinstance(context, str) else CORE_CONTEXT_URL
        context_link = f'<{url}>; rel="{CONTEXT_REL}"; type="application/ld+json"'
        extra["Link"] = f"{context_link}, {extra['Link']}" if extra.get("Link") else context_link
    return Response(orjson.dumps(data), status_code=status, headers=extra, media_type=call.accept)


def tenant_of(request: Request) -> str | None:
    tenant = request.headers.get(TENANT_HEADER) or None
    check_tenant(tenant)
    return tenant


async def authorize(request: Request, tokens: TokenStore | None, role: str,
              tenant: str | None) -> Principal:
    if tokens is None:
        return ADMIN
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("A bearer token is required (Authorization: Bearer <token>)")
    principal = await tokens.verify(token.strip())
    if principal is None:
        raise Unauthorized("The bearer token is unknown or revoked")
    if not principal.may(role):
        raise Forbidden(f"The token's role {principal.role} cannot perform this operation "
                        f"(needs {role})")
    if not principal.may_use(tenant):
        raise Forbidden(f"The token is not valid for tenant {tenant or '(default)'}")
    return principal


Handler = Callable[[Request, Call], Awaitable[Response]]


def offers_geojson(handler: Handler) -> Handler:
    """Mark a handler whose operation can answer ``application/geo+json`` (clause 6.3.7:
    Retrieve and Query Entities, by GET or by POST); every other operation answers 406 to an Accept that only
    names GeoJSON (clause 6.3.4)."""
    handler.offers_geojson = True  # type: ignore[attr-defined]
    return handler


def geojson_offered(handler: Handler) -> bool:
    return bool(getattr(handler, "offers_geojson", False))


def int_param(request: Request, name: str, default: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequestData(f"Parameter {name} must be an integer, got {raw!r}") from None


def bool_param(request: Request, name: str) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return False
    if raw in ("true", "false"):
        return raw == "true"
    raise BadRequestData(f"Parameter {name} must be true or false, got {raw!r}")


#: the printable ASCII characters a URI may hold as they are (RFC 3986, section 2)
_URI_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"<>\\^`{|}%')


def location(path: str) -> dict[str, str]:
    """A ``Location`` header for a created resource: an IRI mapped to a URI (RFC 3987,
    section 3.1: other characters percent-encoded as UTF-8), as headers are ASCII."""
    return {"Location": quote(path, safe=_URI_SAFE)}
