"""``ContextClient``: how apps talk to a context broker, in-process or over HTTP.

Apps never import ``store`` or ``broker`` internals; they get a ``ContextClient`` bound to a
tenant and an ``@context`` and speak compact NGSI-LD. ``LocalContextClient`` calls the broker in
the same process (no serialisation); ``HttpContextClient`` speaks the NGSI-LD API of any broker
(cityvisor, Orion-LD, Stellio...). Both raise the same ``NgsiLdError`` subclasses.

``HttpContextClient`` sends its requests through a ``Transport``: ``AiohttpTransport`` (the
default: aiohttp, the project's one HTTP client library, see docs/decisions/0009) or
``AsgiTransport``, which calls an ASGI app in the same process (tests).

>>> # client = HttpContextClient("http://127.0.0.1:1026", tenant="nimes", token="cvt_...")
>>> # await client.query_entities(type="FloodMonitoring", q="currentLevel>1.5")
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlencode, urlsplit

import orjson

from cityvisor.broker.entities import EntityBroker, QueryParams
from cityvisor.broker.options import Shape
from cityvisor.ngsild import errors
from cityvisor.ngsild.context import CONTEXT_REL, CORE_CONTEXT_URL

Entity = dict[str, Any]


class ContextClient(Protocol):
    """The operations apps need; results are compact NGSI-LD for the client's @context."""

    async def create_entity(self, entity: Entity) -> None: ...

    async def get_entity(self, entity_id: str, *, options: str | None = None,
                         attrs: str | None = None) -> Entity: ...

    async def query_entities(self, *, type: str | None = None, id: str | None = None,
                             q: str | None = None,
                             attrs: str | None = None, georel: str | None = None,
                             geometry: str | None = None, coordinates: str | None = None,
                             limit: int = 100, offset: int = 0,
                             options: str | None = None) -> list[Entity]: ...

    async def upsert_entities(self, entities: list[Entity]) -> dict[str, Any]: ...

    async def merge_entity(self, entity_id: str, fragment: Entity) -> None: ...

    async def merge_entities(self, entities: list[Entity]) -> dict[str, Any]:
        """Batch merge (partial entities with ``id``): ``{"success": [...], "errors": [...]}``."""
        ...

    async def update_attribute(self, entity_id: str, attribute: str, fragment: Any) -> None: ...

    async def delete_entity(self, entity_id: str) -> None: ...

    def with_context(self, context: str) -> ContextClient:
        """A client on the same tenant and connection speaking another @context (an app that
        writes several Smart Data Models domains holds one per domain)."""
        ...

    async def close(self) -> None: ...


class LocalContextClient:
    """A ``ContextClient`` calling an in-process ``EntityBroker``."""

    def __init__(self, broker: EntityBroker, *, tenant: str | None = None,
                 context: Any = None) -> None:
        self.broker = broker
        self.tenant = tenant
        self.context = context

    async def create_entity(self, entity: Entity) -> None:
        await self.broker.create_entity(self.tenant, self.context, entity)

    async def get_entity(self, entity_id: str, *, options: str | None = None,
                         attrs: str | None = None) -> Entity:
        return await self.broker.retrieve_entity(self.tenant, self.context, entity_id,
                                                 Shape(options=options, attrs=attrs))

    async def query_entities(self, *, type: str | None = None, id: str | None = None,
                             q: str | None = None,
                             attrs: str | None = None, georel: str | None = None,
                             geometry: str | None = None, coordinates: str | None = None,
                             limit: int = 100, offset: int = 0,
                             options: str | None = None) -> list[Entity]:
        params = QueryParams(id=id, type=type, q=q, attrs=attrs, georel=georel, geometry=geometry,
                             coordinates=coordinates, limit=limit, offset=offset)
        entities, _ = await self.broker.query_entities(self.tenant, self.context, params,
                                                       Shape(options=options))
        return entities

    async def upsert_entities(self, entities: list[Entity]) -> dict[str, Any]:
        result = await self.broker.batch_upsert(self.tenant, self.context, entities)
        return {**result.body(), "created": result.created}

    async def merge_entity(self, entity_id: str, fragment: Entity) -> None:
        await self.broker.merge_entity(self.tenant, self.context, entity_id, fragment)

    async def merge_entities(self, entities: list[Entity]) -> dict[str, Any]:
        result = await self.broker.batch_merge(self.tenant, self.context, entities)
        return result.body()

    async def update_attribute(self, entity_id: str, attribute: str, fragment: Any) -> None:
        await self.broker.update_attribute(self.tenant, self.context, entity_id, attribute,
                                           fragment)

    async def delete_entity(self, entity_id: str) -> None:
        await self.broker.delete_entity(self.tenant, entity_id)

    def with_context(self, context: str) -> LocalContextClient:
        return LocalContextClient(self.broker, tenant=self.tenant, context=context)

    async def close(self) -> None:
        return None


_ERRORS = {cls.type_name: cls for cls in (
    errors.BadRequestData, errors.InvalidRequest, errors.AlreadyExists, errors.ResourceNotFound,
    errors.NonexistentTenant, errors.OperationNotSupported, errors.LdContextNotAvailable,
    errors.TooManyResults)}


@dataclass(frozen=True)
class HttpResponse:
    """A whole HTTP response, as a ``Transport`` returns it."""

    status_code: int
    content: bytes
    headers: Mapping[str, str]

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON (``ValueError`` if it is not JSON)."""
        return orjson.loads(self.content)


class Transport(Protocol):
    """Sends one request and returns the whole response; raises ``ConnectionError`` when the
    server cannot be reached or does not answer in time."""

    async def request(self, method: str, url: str, headers: Mapping[str, str],
                      content: bytes | None) -> HttpResponse: ...

    async def close(self) -> None: ...


class AiohttpTransport:
    """HTTP over the network: one ``aiohttp.ClientSession`` (keep-alive), created on first use
    on the running event loop."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s
        self._session: Any = None  # aiohttp.ClientSession, imported on first use

    async def request(self, method: str, url: str, headers: Mapping[str, str],
                      content: bytes | None) -> HttpResponse:
        import aiohttp
        import yarl

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s), trust_env=False)
        try:
            async with self._session.request(method, yarl.URL(url, encoded=True), data=content,
                                             headers=dict(headers),
                                             allow_redirects=False) as response:
                body = await response.read()
                return HttpResponse(response.status, body, dict(response.headers))
        except (aiohttp.ClientError, TimeoutError) as error:
            raise ConnectionError(f"{method} {url}: {type(error).__name__}: {error}") from error

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]],
                    Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]


class AsgiTransport:
    """HTTP to an ASGI app in the same process (no socket): the request goes through the whole
    app (middleware, routing, serialisation). The app's lifespan is not run: give it its
    services (``create_app(settings, services)``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def request(self, method: str, url: str, headers: Mapping[str, str],
                      content: bytes | None) -> HttpResponse:
        parts = urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        sent = [(b"host", parts.netloc.encode("ascii"))]
        sent += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        if content is not None:
            sent.append((b"content-length", str(len(content)).encode("ascii")))
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": method, "scheme": parts.scheme or "http", "root_path": "",
                 "path": unquote(parts.path), "raw_path": parts.path.encode("ascii"),
                 "query_string": parts.query.encode("ascii"), "headers": sent,
                 "server": (host, port), "client": ("127.0.0.1", 50000)}
        body_sent = False

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if body_sent:
                return {"type": "http.disconnect"}
            body_sent = True
            return {"type": "http.request", "body": content or b"", "more_body": False}

        status = 500
        answer: dict[str, str] = {}
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                answer.update((k.decode("latin-1").lower(), v.decode("latin-1"))
                              for k, v in message.get("headers", ()))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.app(scope, receive, send)
        return HttpResponse(status, b"".join(chunks), answer)

    async def close(self) -> None:
        return None


def _transport(transport: Any, timeout_s: float) -> Transport:
    """``transport`` as a ``Transport``: None is the network; an object with an ASGI ``app``
    and no ``request`` method (such as ``httpx.ASGITransport``) is served by ``AsgiTransport``."""
    if transport is None:
        return AiohttpTransport(timeout_s)
    if not hasattr(transport, "request") and callable(getattr(transport, "app", None)):
        return AsgiTransport(transport.app)
    return transport


class HttpContextClient:
    """A ``ContextClient`` speaking the NGSI-LD HTTP API (``transport`` is injectable)."""

    def __init__(self, base_url: str, *, tenant: str | None = None, context: str | None = None,
                 token: str | None = None, timeout_s: float = 10.0,
                 transport: Transport | None = None,
                 _shared: Transport | None = None) -> None:
        headers = {"Accept": "application/json"}
        if tenant:
            headers["NGSILD-Tenant"] = tenant
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._base_url, self._tenant, self._token = base_url, tenant, token
        self._api = base_url.rstrip("/") + "/ngsi-ld/v1"
        self._headers = headers
        #: the @context of this client, sent as a Link header on every request
        self._context_headers: dict[str, str] = {}
        if context and context != CORE_CONTEXT_URL:
            self._context_headers["Link"] = (
                f'<{context}>; rel="{CONTEXT_REL}"; '
                'type="application/ld+json"')
        self._owner = _shared is None
        self._http = _shared or _transport(transport, timeout_s)

    def with_context(self, context: str) -> HttpContextClient:
        """Same connection, tenant and token; another @context (closing it is a no-op)."""
        return HttpContextClient(self._base_url, tenant=self._tenant, context=context,
                                 token=self._token, _shared=self._http)

    async def _call(self, method: str, path: str, body: Any = None,
                    params: dict[str, Any] | None = None) -> HttpResponse:
        content = None if body is None else orjson.dumps(body)
        headers = {**self._headers, **self._context_headers}
        if content is not None:
            headers["Content-Type"] = "application/json"
        query = {k: v for k, v in (params or {}).items() if v is not None}
        url = self._api + quote(path, safe="/:@!$&'()*+,;=")
        if query:
            url += "?" + urlencode(query, quote_via=quote, safe="")
        response = await self._http.request(method, url, headers, content)
        if response.status_code >= 400:
            raise _problem(response)
        return response

    async def create_entity(self, entity: Entity) -> None:
        await self._call("POST", "/entities", entity)

    async def get_entity(self, entity_id: str, *, options: str | None = None,
                         attrs: str | None = None) -> Entity:
        response = await self._call("GET", f"/entities/{entity_id}",
                                    params={"options": options, "attrs": attrs})
        return response.json()  # type: ignore[no-any-return]

    async def query_entities(self, *, type: str | None = None, id: str | None = None,
                             q: str | None = None,
                             attrs: str | None = None, georel: str | None = None,
                             geometry: str | None = None, coordinates: str | None = None,
                             limit: int = 100, offset: int = 0,
                             options: str | None = None) -> list[Entity]:
        response = await self._call("GET", "/entities", params={
            "type": type, "id": id, "q": q, "attrs": attrs, "georel": georel, "geometry": geometry,
            "coordinates": coordinates, "limit": limit, "offset": offset, "options": options})
        return response.json()  # type: ignore[no-any-return]

    async def upsert_entities(self, entities: list[Entity]) -> dict[str, Any]:
        response = await self._call("POST", "/entityOperations/upsert", entities)
        if response.status_code == 207:
            return response.json()  # type: ignore[no-any-return]
        created = response.json() if response.status_code == 201 else []
        ids = [e.get("id") for e in entities]
        return {"success": list(dict.fromkeys(ids)), "errors": [], "created": created}

    async def merge_entity(self, entity_id: str, fragment: Entity) -> None:
        await self._call("PATCH", f"/entities/{entity_id}", fragment)

    async def merge_entities(self, entities: list[Entity]) -> dict[str, Any]:
        response = await self._call("POST", "/entityOperations/merge", entities)
        if response.status_code == 207:
            return response.json()  # type: ignore[no-any-return]
        return {"success": list(dict.fromkeys(e.get("id") for e in entities)), "errors": []}

    async def update_attribute(self, entity_id: str, attribute: str, fragment: Any) -> None:
        await self._call("PATCH", f"/entities/{entity_id}/attrs/{attribute}", fragment)

    async def delete_entity(self, entity_id: str) -> None:
        await self._call("DELETE", f"/entities/{entity_id}")

    async def close(self) -> None:
        if self._owner:
            await self._http.close()


def _problem(response: HttpResponse) -> errors.NgsiLdError:
    try:
        problem = response.json()
        name = str(problem.get("type", "")).rsplit("/", 1)[-1]
        detail = str(problem.get("detail") or problem.get("title") or response.text)
    except ValueError:
        name, detail = "", response.text
    cls = _ERRORS.get(name)
    if cls is None:
        error = errors.NgsiLdError(f"HTTP {response.status_code}: {detail}")
        error.status = response.status_code
        return error
    return cls(detail)
