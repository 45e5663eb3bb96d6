"""``ContextClient``: how apps talk to a context broker, in-process or over HTTP.

Apps never import ``store`` or ``broker`` internals; they get a ``ContextClient`` bound to a
tenant and an ``@context`` and speak compact NGSI-LD. ``LocalContextClient`` calls the broker in
the same process (no serialisation); ``HttpContextClient`` speaks the NGSI-LD API of any broker
(cityvisor, Orion-LD, Stellio...). Both raise the same ``NgsiLdError`` subclasses.

>>> # client = HttpContextClient("http://127.0.0.1:1026", tenant="nimes", token="cvt_...")
>>> # await client.query_entities(type="FloodMonitoring", q="currentLevel>1.5")
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx
import orjson

from cityvisor.broker.entities import EntityBroker, QueryParams
from cityvisor.broker.options import Shape
from cityvisor.ngsild import errors
from cityvisor.ngsild.context import CORE_CONTEXT_URL

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


class HttpContextClient:
    """A ``ContextClient`` speaking the NGSI-LD HTTP API (``transport`` is injectable)."""

    def __init__(self, base_url: str, *, tenant: str | None = None, context: str | None = None,
                 token: str | None = None, timeout_s: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None,
                 _shared: httpx.AsyncClient | None = None) -> None:
        headers = {"Accept": "application/json"}
        if tenant:
            headers["NGSILD-Tenant"] = tenant
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._base_url, self._tenant, self._token = base_url, tenant, token
        #: the @context of this client, sent as a Link header on every request
        self._context_headers: dict[str, str] = {}
        if context and context != CORE_CONTEXT_URL:
            self._context_headers["Link"] = (
                f'<{context}>; rel="http://www.w3.org/ns/json-ld#context"; '
                'type="application/ld+json"')
        self._owner = _shared is None
        self._http = _shared or httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/ngsi-ld/v1", headers=headers, timeout=timeout_s,
            transport=transport)

    def with_context(self, context: str) -> HttpContextClient:
        """Same connection, tenant and token; another @context (closing it is a no-op)."""
        return HttpContextClient(self._base_url, tenant=self._tenant, context=context,
                                 token=self._token, _shared=self._http)

    async def _call(self, method: str, path: str, body: Any = None,
                    params: dict[str, Any] | None = None) -> httpx.Response:
        content = None if body is None else orjson.dumps(body)
        headers = dict(self._context_headers)
        if content is not None:
            headers["Content-Type"] = "application/json"
        query = {k: v for k, v in (params or {}).items() if v is not None}
        response = await self._http.request(method, path, content=content, params=query,
                                            headers=headers)
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
            await self._http.aclose()


def _problem(response: httpx.Response) -> errors.NgsiLdError:
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
