"""Entity maps: the EntityMap data type (clause 5.2.39), its use by Retrieve Entity (5.7.1.4),
Query Entities (5.7.2.4, 5.5.14), the temporal retrieve (5.7.3.4) and query (5.7.4.4), and the
``/entityMaps/{entityMapId}`` resource (clause 6.32: retrieve, update, delete; 5.14.1-5.14.3).

An EntityMap says, for each Entity id a request matched, where the Entity is held: the ids of
the Context Source Registrations that hold it, ``"@none"`` for the local broker. This broker
federates no context source, so every id maps to ``["@none"]`` and ``linkedMaps`` is empty.

A request asks for a map with ``entityMap=true`` or names one in the ``NGSILD-EntityMap``
header (its location, or its id). A live map named by the request is used and named again
in the answer; on a query it fixes the result set: only its Entities can be returned (clause
5.5.14). A map that is unknown or expired is no error: a new one is made, as with the flag,
of the ids the request matched (every one, not one page), and the answer names it (a query
that creates a map answers 201). A map lives ``lifetime_s`` (setting
``entity_map_lifetime_s``); an update may shorten that, never lengthen it past the bound
(Table 6.4.3.2-1: the broker sets the actual ``expiresAt``); an expired map is gone.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import unquote

from cityvisor.ngsild.errors import BadRequestData, ResourceNotFound, TooManyResults
from cityvisor.ngsild.model import check_uri
from cityvisor.ngsild.time import display_time, format_utc_micros, normalize_time, parse_utc
from cityvisor.store.base import Store
from cityvisor.store.records import (
    EntityMapDelete,
    EntityMapPut,
    EntityMapsExpired,
    StoredEntityMap,
)

#: the ids of the maps made here
MAP_ID_PREFIX = "urn:ngsi-ld:entitymap:"
#: the "source" of an Entity held by this broker (clause 5.2.39)
LOCAL = "@none"
#: the most Entity ids one map holds: a query fixed by a map names them all to the store (a
#: request gathers at most one more, to tell that it matched too many)
MAX_ENTITIES = 10_000
#: the members of an EntityMap (clause 5.2.39); only ``expiresAt`` can be updated, the others
#: are output only and are ignored in an update (clause 5.14.2.4)
MEMBERS = frozenset({"id", "type", "expiresAt", "entityMap", "linkedMaps", "@context"})

T = TypeVar("T")


@dataclass(frozen=True)
class MapRequest:
    """What a request says about entity maps: the ``entityMap`` flag and the
    ``NGSILD-EntityMap`` header value (a map's location or id), if any."""

    flag: bool = False
    reference: str | None = None

    @property
    def asked(self) -> bool:
        return self.flag or self.reference is not None




@dataclass(frozen=True)
class MapAnswer:
    """The map a response names: ``echoed``, the request's reference to a live map, as sent;
    or ``created``, the id of the map the request made; neither when no map was asked for."""

    echoed: str | None = None
    created: str | None = None


@dataclass(frozen=True)
class EntityMap:
    """A live entity map."""

    id: str
    expires_at: str  # normalised UTC
    entity_ids: tuple[str, ...]

    def document(self) -> dict[str, Any]:
        """The EntityMap data type (clause 5.2.39): every Entity is local (``@none``)."""
        return {"id": self.id, "type": "EntityMap", "expiresAt": display_time(self.expires_at),
                "entityMap": {entity_id: [LOCAL] for entity_id in self.entity_ids},
                "linkedMaps": {}}


def map_id_of(reference: str) -> str:
    """The map id in an ``NGSILD-EntityMap`` value: the last segment of its location, or the
    value itself when it is a bare id (a URN has no ``/``)."""
    return unquote(reference.strip().rsplit("/", 1)[-1])


class EntityMaps:
    """The entity maps of every tenant, kept in the tenant's store."""

    def __init__(self, store: Store, clock: Callable[[], str], *,
                 lifetime_s: float = 3600.0) -> None:
        self.store = store
        self.clock = clock  # normalised UTC text, as the entity broker's
        self.lifetime_s = lifetime_s

    # ------------------------------------------------------------ use by requests

    async def use(self, tenant: str | None, request: MapRequest,
                  run: Callable[[frozenset[str] | None], Awaitable[T]],
                  matched: Callable[[T], Awaitable[Sequence[str]]]) -> tuple[T, MapAnswer]:
        """Run a request that may use an entity map (clauses 5.7.1.4, 5.7.2.4, 5.7.3.4,
        5.7.4.4): ``run(within)`` answers it, restricted to the ids of a live map the request
        names (``within``; None: no restriction); without such a map, and if one was asked
        for, a map is made of ``matched(result)``, the ids the request matched. A request
        that fails makes no map."""
        if not request.asked:
            return await run(None), MapAnswer()
        live = None
        if request.reference is not None:
            live = await self._live(tenant, map_id_of(request.reference))
        if live is not None:
            return await run(frozenset(live.entity_ids)), MapAnswer(echoed=request.reference)
        result = await run(None)
        made = await self.create(tenant, await matched(result))
        return result, MapAnswer(created=made.id)

    async def use_on_retrieve(self, tenant: str | None, request: MapRequest, entity_id: str,
                              run: Callable[[], Awaitable[T]]) -> tuple[T, MapAnswer]:
        """``use`` for the retrieval of one Entity (clauses 5.7.1.4, 5.7.3.4): a map made
        holds that Entity."""
        async def matched(_result: T) -> list[str]:
            return [entity_id]

        return await self.use(tenant, request, lambda _within: run(), matched)

    async def create(self, tenant: str | None, entity_ids: Sequence[str]) -> EntityMap:
        """A new map of ``entity_ids`` (duplicates dropped); the expired maps of the tenant
        go in the same write."""
        ids = tuple(dict.fromkeys(entity_ids))
        if len(ids) > MAX_ENTITIES:
            raise TooManyResults(f"An entity map holds at most {MAX_ENTITIES} Entities; the "
                                 f"request matched {len(ids)}: narrow it")
        now = self.clock()
        stored = StoredEntityMap(MAP_ID_PREFIX + str(uuid.uuid4()), self._latest(now), ids, now)
        await self.store.write(tenant, [], [EntityMapsExpired(now), EntityMapPut(stored)])
        return EntityMap(stored.id, stored.expires_at, stored.entity_ids)

    # ------------------------------------------------------------ /entityMaps/{id}

    async def retrieve(self, tenant: str | None, map_id: str) -> EntityMap:
        """5.14.1 Retrieve EntityMap: BadRequestData if the id is not a URI, ResourceNotFound
        if there is no such live map (an expired map cannot be accessed, clause 5.5.14)."""
        found = await self._live(tenant, check_uri(map_id, "EntityMap id"))
        if found is None:
            raise ResourceNotFound(f"No EntityMap {map_id} exists")
        return found

    async def update(self, tenant: str | None, map_id: str, fragment: object) -> None:
        """5.14.2 Update EntityMap: a new ``expiresAt``, at most the lifetime from now (the
        broker sets the actual expiry); an expiry already past ends the map. The output-only
        members are ignored; a member that is no EntityMap member is BadRequestData."""
        if not isinstance(fragment, dict):
            raise BadRequestData("The body must be a JSON object (an EntityMap fragment)")
        unknown = sorted(set(fragment) - MEMBERS)
        if unknown:
            raise BadRequestData(f"{', '.join(unknown)} is no member of an EntityMap "
                                 "(clause 5.2.39)")
        expires = (normalize_time(fragment["expiresAt"], "expiresAt")
                   if "expiresAt" in fragment else None)
        await self.retrieve(tenant, map_id)  # a live one
        stored = await self.store.entity_map(tenant, map_id)
        if expires is None or stored is None:
            return
        latest = self._latest(self.clock())
        await self.store.write(tenant, [], [EntityMapPut(
            replace(stored, expires_at=min(expires, latest)))])

    async def delete(self, tenant: str | None, map_id: str) -> None:
        """5.14.3 Delete EntityMap (ResourceNotFound if there is no such live map)."""
        found = await self.retrieve(tenant, map_id)
        await self.store.write(tenant, [], [EntityMapDelete(found.id)])

    # ------------------------------------------------------------ helpers

    async def _live(self, tenant: str | None, map_id: str) -> EntityMap | None:
        stored = await self.store.entity_map(tenant, map_id)
        if stored is None or stored.expires_at <= self.clock():
            return None
        return EntityMap(stored.id, stored.expires_at, stored.entity_ids)

    def _latest(self, now: str) -> str:
        """The latest expiry of a map made or updated at ``now``."""
        return format_utc_micros(parse_utc(now) + timedelta(seconds=self.lifetime_s))


__all__ = ["LOCAL", "MAP_ID_PREFIX", "EntityMap", "EntityMaps", "MapAnswer",
           "MapRequest", "map_id_of"]
