"""The NGSI-LD entity operations (ETSI GS CIM 009 v1.8, clauses 5.6 and 5.7).

``EntityBroker`` owns the semantics: it expands request fragments with the caller's
``@context``, reads the current entity, computes the new one and hands the store a list of
``WriteOp`` to apply atomically. Writes to one tenant are serialised by a lock, so a
read-modify-write never loses a concurrent update of this process; a store shared with other
processes refuses a write computed from data they changed meanwhile (``StaleWrite``), and the
operation runs again on fresh data (``broker.retries``). Results are compacted for the caller.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from cityvisor.broker.changes import ChangeSink, EntitiesChanged, Resync
from cityvisor.broker.contexts import ContextRegistry
from cityvisor.broker.discovery import Discovery
from cityvisor.broker.fragments import (
    MISSING_ATTRIBUTE,
    UpdateResult,
    appended,
    copy_entity,
    dataset_text,
    delete_instance,
    deletion,
    fragment_of,
    instance_index,
    merge_instance,
    overwrite_attrs,
    retype,
    strip_nulls,
)
from cityvisor.broker.keyed_locks import KeyedLocks
from cityvisor.broker.linked import linked_entities
from cityvisor.broker.options import (
    CORE_MEMBERS,
    Join,
    Shape,
    linked_join,
    projections,
    representation,
    split_list,
)
from cityvisor.broker.retries import retried_on_stale
from cityvisor.ngsild import geo, ordering, query, scopequery, typequery
from cityvisor.ngsild.context import CORE_IRI, TermMap
from cityvisor.ngsild.errors import (
    AlreadyExists,
    BadRequestData,
    InvalidRequest,
    NgsiLdError,
    NonexistentTenant,
    OperationNotSupported,
    ResourceNotFound,
)
from cityvisor.ngsild.model import (
    NULL,
    VALUE_MEMBER,
    Entity,
    Links,
    Representation,
    attribute_iri,
    check_attribute_name,
    check_expiry,
    check_name,
    check_uri,
    compact_entity,
    entity_expiry,
    expand_entity,
    expand_instance,
    expand_instances,
    expand_types,
    expired_instances,
    unexpired,
)
from cityvisor.store.base import EntityQuery, EntitySelector, Store, WriteOp
from cityvisor.store.records import AttributeHistoryDeleted

#: ``await listener(tenant, ops)`` -> records to stage with the ops (see ``Store.stage``)
ChangeListener = Callable[[str | None, list[WriteOp]], Awaitable[Sequence[object]]]
#: ``await observer(change)``: a committed batch (of this worker or another), or a ``Resync``
ChangeObserver = Callable[[EntitiesChanged | Resync], Awaitable[None]]

log = logging.getLogger("cityvisor.broker.entities")

MAX_LIMIT = 1000
#: ``limit`` of an unbounded in-process query (``query_all``)
ALL = 2**62
DEFAULT_SHAPE = Shape()
DEFAULT_LIMIT = 20


_SECOND: list[Any] = [None, ""]


def utc_now() -> str:
    """Now in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (formatting cached per second)."""
    now = time.time()
    second = int(now)
    if _SECOND[0] != second:
        _SECOND[0] = second
        _SECOND[1] = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{_SECOND[1]}.{int((now - second) * 1_000_000):06d}Z"


@dataclass(frozen=True)
class QueryParams:
    """The filters of Query Entities as sent (strings), parsed by the broker with the context."""

    id: str | None = None
    id_pattern: str | None = None
    type: str | None = None
    attrs: str | None = None
    q: str | None = None
    georel: str | None = None
    geometry: str | None = None
    coordinates: Any = None
    geoproperty: str | None = None
    limit: int | None = None
    offset: int = 0
    count: bool = False
    #: None: not given (``type=*`` implies true, clause 6.4.3.2)
    local: bool | None = None
    #: POST /entityOperations/query: the Query's entity selectors (alternatives), raw
    selectors: tuple[dict[str, Any], ...] | None = None
    scope_q: str | None = None
    csf: str | None = None
    order_by: str | None = None
    order_from: str | None = None
    collation: str | None = None
    #: the Entity ids a live entity map fixes (clause 5.5.14): no other Entity matches
    within: frozenset[str] | None = None


@dataclass(frozen=True)
class QueryPage:
    """One page of a query: the rendered entities, the count (if asked), the page bounds and
    whether elements remain after it (clause 4.12)."""

    entities: list[dict[str, Any]]
    count: int | None
    offset: int
    limit: int
    more: bool


@dataclass
class BatchResult:
    """Clause 5.2.17: per-entity outcome of a batch operation."""

    success: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    def fail(self, entity_id: Any, error: NgsiLdError) -> None:
        self.errors.append({"entityId": entity_id if isinstance(entity_id, str) else "",
                            "error": error.problem()})

    def body(self) -> dict[str, Any]:
        return {"success": self.success, "errors": self.errors}


class EntityBroker(Discovery):
    """Entity, attribute, batch and discovery operations for every tenant."""

    def __init__(self, store: Store, contexts: ContextRegistry,
                 clock: Callable[[], str] = utc_now) -> None:
        self.store = store
        self.contexts = contexts
        self.clock = clock
        self._locks: dict[str | None, asyncio.Lock] = {}
        self._entity_locks: KeyedLocks[tuple[str | None, str]] = KeyedLocks()
        #: per tenant, the first expiresAt of its entities (None: no transient entity)
        self._due: dict[str | None, str | None] = {}
        #: called with every batch of changes before it is staged; each returns side records
        #: staged in the same transaction (temporal history, outbox rows). The batch may still
        #: be refused (``StaleWrite``: the operation runs again, calling the listeners again)
        #: or fail to commit, taking the records with it: what must see committed changes
        #: only, once each (a view of the data), is an observer
        self.listeners: list[ChangeListener] = []
        #: given every batch once it is durable (the change feed to the other workers); None:
        #: one worker alone, and a write pays nothing for it
        self.on_commit: ChangeSink | None = None
        #: told of every committed batch of the entities, whichever worker wrote it (this
        #: broker's own once durable, before the write returns; the others' via ``observe``)
        #: and of a ``Resync``: views of the data such as the console's live layers, never
        #: asked for records. A refused batch or a failed commit tells nobody. One change at a
        #: time, in order: an observer is quick and never writes through this broker; one that
        #: fails is logged, never failing the write. With none, a write pays nothing for them.
        self.observers: list[ChangeObserver] = []
        self._telling = asyncio.Lock()  # observers hear one change at a time

    def lock(self, tenant: str | None) -> asyncio.Lock:
        """The tenant's write lock: hold it for any read-modify-write of the tenant's data
        (other brokers writing to the same tenant, e.g. the temporal API, share it)."""
        lock = self._locks.get(tenant)
        if lock is None:
            lock = self._locks[tenant] = asyncio.Lock()
        return lock

    async def _stage(self, tenant: str | None, ops: list[WriteOp]) -> Awaitable[None]:
        """Stage entity changes with the side records every listener derives from them
        (temporal instances, notifications), all in one transaction."""
        records: list[object] = []
        for listener in self.listeners:
            records.extend(await listener(tenant, ops))
        self._note_expiry(tenant, ops)
        durable = await self.store.stage(tenant, ops, records)
        if not ops or (self.on_commit is None and not self.observers):
            return durable
        return self._committed(durable, tenant, ops)

    async def _committed(self, durable: Awaitable[None], tenant: str | None,
                         ops: list[WriteOp]) -> None:
        """Wait for the batch to be durable, then hand it to ``on_commit`` and tell the
        observers (a failed commit is no change: it raises to the writer and nothing is
        told). The batch is durable by then: neither can fail the write."""
        await durable
        change = EntitiesChanged(tenant, tuple(ops))
        if self.on_commit is not None:
            try:
                self.on_commit(change)
            except Exception:
                log.exception("handing a committed batch of tenant %s to the change feed "
                              "failed", tenant or "(default)")
        await self._tell(change)

    async def _tell(self, change: EntitiesChanged | Resync) -> None:
        """Tell the observers of a change, one change at a time (a view never sees an older
        state after a newer one); one that fails is logged, the others are still told."""
        if not self.observers:
            return
        async with self._telling:
            for observer in list(self.observers):
                try:
                    await observer(change)
                except Exception:
                    log.exception("an observer of the entity changes failed on %s",
                                  type(change).__name__)

    def _note_expiry(self, tenant: str | None, ops: Sequence[WriteOp]) -> None:
        """Keep the tenant's first expiresAt (if known) in step with changed entities."""
        if tenant in self._due:
            for op in ops:
                at = entity_expiry(op.new) if op.new is not None else None
                due = self._due[tenant]
                if at is not None and (due is None or at < due):
                    self._due[tenant] = at

    async def observe(self, change: EntitiesChanged | Resync) -> None:
        """A batch another worker committed (the change feed), or a ``Resync``: keep what
        this broker knows of the tenant (its first expiry, clause 4.22) in step, then tell
        the observers, as of this broker's own batches (one that fails is logged)."""
        if isinstance(change, Resync):
            self._due.clear()
        else:
            self._note_expiry(change.tenant, change.ops)
        await self._tell(change)

    async def _due_time(self, tenant: str | None) -> str | None:
        if tenant not in self._due:
            self._due[tenant] = await self.store.next_expiry(tenant)
        return self._due[tenant]

    async def _reap(self, tenant: str | None, staged: list[Awaitable[None]]) -> None:
        """Clause 4.22: remove what has expired (entities, attribute instances,
        sub-attributes) before the tenant is read or written, so that no operation ever
        sees it (holding the tenant's lock). Expiry is no change of the context: no
        notification and no temporal instance is made of it. An expired attribute instance
        takes its stored history with it (clause 5.2.5: the expiry is that of the storage
        of the Property); an expired entity leaves its history, as Delete Entity does."""
        due = await self._due_time(tenant)
        now = self.clock()
        if due is None or due > now:
            return
        ops = [WriteOp(e, unexpired(e, now)) for e in await self.store.expiring(tenant, now)]
        records = [AttributeHistoryDeleted(op.new["id"], iri, dataset or "")
                   for op in ops if op.old is not None and op.new is not None
                   for iri, dataset in expired_instances(op.old, now)]
        staged.append(await self.store.stage(tenant, ops, records))
        self._due[tenant] = await self.store.next_expiry(tenant)

    @retried_on_stale
    async def expire(self, tenant: str | None) -> None:
        """Reap the tenant's expired data if any is due (cheap when none is)."""
        due = await self._due_time(tenant)
        if due is not None and due <= self.clock():
            async with self._writing(tenant):
                pass

    async def _require_tenant(self, tenant: str | None) -> None:
        """Never under the tenant's lock (it may take it to reap)."""
        await self.expire(tenant)
        await super()._require_tenant(tenant)

    @asynccontextmanager
    async def _writing(self, tenant: str | None, entity_id: str | None = None
                       ) -> AsyncIterator[list[Awaitable[None]]]:
        """Serialise read-modify-write per tenant; wait for durability after the lock is
        released, so that concurrent writers share one commit. The reaping and the operation
        may commit apart: each is awaited (a durable batch is told to the observers even when
        the other failed), then the first failure is raised.

        On a store that refuses stale writes itself (``Store.refuses_stale_writes``), an
        operation on one entity (``entity_id``) locks only that entity: writers of other
        entities go on at the same time (the store's optimistic check keeps every
        read-modify-write correct; the lock only spares this process needless retries)."""
        staged: list[Awaitable[None]] = []
        if entity_id is not None and self.store.refuses_stale_writes:
            lock: AbstractAsyncContextManager[object] = self._entity_locks.hold(
                (tenant, entity_id))
        else:
            lock = self.lock(tenant)
        async with lock:
            await self._reap(tenant, staged)
            yield staged
        failed: Exception | None = None
        try:
            for durable in staged:
                try:
                    await durable
                except Exception as error:
                    failed = failed or error
        finally:
            for durable in staged:
                if inspect.iscoroutine(durable):
                    durable.close()  # left unawaited by a cancelled writer: no warning
        if failed is not None:
            raise failed

    async def _existing(self, tenant: str | None, entity_id: str,
                        types: typequery.TypeNode | None = None) -> Entity:
        """The current entity (callers reaped expired data: ``_writing`` or ``_expire``);
        ``types``: the entity type selection it must match (clause 4.17), else it is not
        found."""
        check_uri(entity_id, "Entity id")
        if not await self.store.has_tenant(tenant):
            raise NonexistentTenant(f"Tenant {tenant!r} does not exist")
        entity = await self.store.get(tenant, entity_id)
        if entity is None:
            raise ResourceNotFound(f"Entity {entity_id} does not exist")
        if types is not None and not typequery.matches_types(types, entity["type"]):
            raise ResourceNotFound(f"Entity {entity_id} is not of the selected type")
        return entity

    # ------------------------------------------------------------ entities (5.6)

    @retried_on_stale
    async def create_entity(self, tenant: str | None, context: Any, body: object) -> str:
        """5.6.1 Create Entity."""
        if not isinstance(body, dict):
            # not the JSON object the operation takes: a malformed request (clause 6.3.4)
            raise InvalidRequest("Create Entity takes a JSON object")
        terms = await self.contexts.term_map(context)
        entity = expand_entity(body, terms, self.clock())
        async with self._writing(tenant, entity["id"]) as staged:
            if await self.store.get(tenant, entity["id"]) is not None:
                raise AlreadyExists(f"Entity {entity['id']} already exists")
            staged.append(await self._stage(tenant, [WriteOp(None, entity)]))
        return entity["id"]  # type: ignore[no-any-return]

    async def retrieve_entity(self, tenant: str | None, context: Any, entity_id: str,
                              shape: Shape = DEFAULT_SHAPE, *,
                              type_selection: str | None = None) -> Any:
        """5.7.1 Retrieve Entity: the Entity (a GeoJSON Feature with format=geojson); with
        join=flat and linked Entities found, the array of the Entity and those (4.5.23)."""
        terms = await self.contexts.term_map(context)
        rep = representation(shape, terms)
        pick, omit = projections(shape)
        join = linked_join(shape, pick, omit)
        types = (typequery.parse_type_selection(type_selection, terms.expand)
                 if type_selection else None)
        await self.expire(tenant)
        entity = await self._existing(tenant, entity_id)
        # clause 5.7.1.4: the Entity "whose id, and where specified type, is equivalent"
        if types is not None and not typequery.matches_types(types, entity["type"]):
            raise ResourceNotFound(f"Entity {entity_id} is not of type {type_selection}")
        if rep.attrs is not None and not rep.attrs & entity["attrs"].keys():
            raise ResourceNotFound(f"Entity {entity_id} has none of the attributes {shape.attrs}")
        rendered = await self._rendered(tenant, [entity], shape, terms, rep, join)
        if not rendered or not rendered[0]:
            # clauses 4.21, 5.7.1.4: nothing of the Entity is left after pick/omit
            raise ResourceNotFound(f"Entity {entity_id} has no member left after the projection")
        return rendered if len(rendered) > 1 else rendered[0]

    async def _rendered(self, tenant: str | None, entities: list[Entity], shape: Shape,
                        terms: TermMap, rep: Representation,
                        join: Join | None) -> list[dict[str, Any]]:
        """The entities as the response shows them (clause 4.5), with their linked
        Entities (clause 4.5.23) when ``join`` asks for them."""
        if shape.format == "geojson":
            def render(entity: Entity, level: Representation,
                       links: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
                return self.geojson_feature(entity, terms, level, shape.geometry_property,
                                            links)
        else:
            def render(entity: Entity, level: Representation,
                       links: dict[tuple[str, str], dict[str, Any]]) -> dict[str, Any]:
                return compact_entity(entity, terms, level, links)
        if join is None:
            return [render(entity, rep, {}) for entity in entities]

        async def fetch(ids: list[str]) -> dict[str, Entity]:
            return await self.store.get_many(tenant, ids)

        pick, omit = projections(shape)
        return await linked_entities(entities, rep, pick, omit, join, terms, fetch, render)

    @retried_on_stale
    async def replace_entity(self, tenant: str | None, context: Any, entity_id: str,
                             body: object) -> None:
        """5.6.18 Replace Entity (PUT): all attributes are replaced."""
        terms = await self.contexts.term_map(context)
        if isinstance(body, dict) and "id" in body and body["id"] != entity_id:
            raise BadRequestData("The id in the body differs from the id in the URL")
        fragment = dict(body) if isinstance(body, dict) else body
        if isinstance(fragment, dict):
            fragment["id"] = entity_id
        async with self._writing(tenant, entity_id) as staged:
            old = await self._existing(tenant, entity_id)
            new = expand_entity(fragment, terms, self.clock(), require_id_type=False)
            new.setdefault("type", old["type"])
            new["createdAt"] = old["createdAt"]
            staged.append(await self._stage(tenant, [WriteOp(old, new)]))

    @retried_on_stale
    async def merge_entity(self, tenant: str | None, context: Any, entity_id: str,
                           body: object) -> None:
        """5.6.17 Merge Entity (PATCH /entities/{id})."""
        terms = await self.contexts.term_map(context)
        async with self._writing(tenant, entity_id) as staged:
            old = await self._existing(tenant, entity_id)
            new = self._merged(old, body, terms, self.clock())
            staged.append(await self._stage(tenant, [WriteOp(old, new)]))

    @retried_on_stale
    async def delete_entity(self, tenant: str | None, entity_id: str, *,
                            context: Any = None, type_text: str | None = None) -> None:
        """5.6.6 Delete Entity (``type``: the entity must match this type selection)."""
        types = await self._type_selection(context, type_text)
        async with self._writing(tenant, entity_id) as staged:
            old = await self._existing(tenant, entity_id, types)
            staged.append(await self._stage(tenant, [WriteOp(old, None)]))

    @retried_on_stale
    async def purge_entities(self, tenant: str | None, context: Any, params: QueryParams,
                             *, keep: str | None = None, drop: str | None = None) -> int:
        """5.6.21 Purge Entities (DELETE /entities): delete the matching entities, or with
        ``drop`` / ``keep`` only drop (keep) the listed attributes. Returns how many entities
        changed. Clause 5.6.21.4: the filter must name a type, attributes or a query over at
        least one non-system attribute, a geo-query, or be limited to the local scope (an id
        or id pattern alone is too wide), and Linked Entity forms are refused."""
        if keep is not None and drop is not None:
            raise BadRequestData("Purge takes keep or drop, not both")
        attrs = split_list(params.attrs, "attrs") or []
        kept = split_list(keep, "keep")
        dropped = split_list(drop, "drop")
        for name in [*attrs, *(kept or ()), *(dropped or ())]:
            if "{" in name or "}" in name:
                raise BadRequestData(f"Purge cannot follow Linked Entities ({name!r})")
            check_name(name)
        if not (params.type or any(a not in SYSTEM_MEMBERS for a in attrs) or params.q
                or params.georel or params.local):
            raise BadRequestData("Purge needs a type, attrs, q or geo-query over at least one "
                                 "non-system attribute, or local=true (clause 5.6.21.4)")
        terms = await self.contexts.term_map(context)
        entity_query = replace(self.entity_query(replace(params, limit=1), terms), limit=ALL)
        if any("{" in label for label in _q_labels(entity_query.q)):
            raise BadRequestData("Purge cannot query Linked Entities (q with attr{...})")
        kept_iris = frozenset(terms.expand(n) for n in kept) if kept is not None else None
        dropped_iris = frozenset(terms.expand(n) for n in dropped or ())
        await self._require_tenant(tenant)
        async with self._writing(tenant) as staged:
            found = (await self.store.query(tenant, entity_query)).entities
            current = await self.store.get_many(tenant, [e["id"] for e in found])
            now = self.clock()
            ops = [op for op in (_purged(e, kept_iris, dropped_iris, keep is not None or
                                         drop is not None, now)
                                 for e in current.values()) if op is not None]
            staged.append(await self._stage(tenant, ops))
        return len(ops)

    # ------------------------------------------------------------ attributes (5.6.2-5.6.5)

    async def append_attributes(self, tenant: str | None, context: Any, entity_id: str,
                                body: object, *, no_overwrite: bool = False) -> UpdateResult:
        """5.6.3 Append Entity Attributes (POST /entities/{id}/attrs)."""
        return await self._add_attributes(tenant, context, entity_id, body, no_overwrite, True)

    async def update_attributes(self, tenant: str | None, context: Any, entity_id: str,
                                body: object) -> UpdateResult:
        """5.6.2 Update Entity Attributes (PATCH /entities/{id}/attrs): existing ones only."""
        return await self._add_attributes(tenant, context, entity_id, body, False, False)

    @retried_on_stale
    async def _add_attributes(self, tenant: str | None, context: Any, entity_id: str,
                              body: object, no_overwrite: bool, allow_new: bool) -> UpdateResult:
        terms = await self.contexts.term_map(context)
        fragment = fragment_of(body, entity_id)
        async with self._writing(tenant, entity_id) as staged:
            old = await self._existing(tenant, entity_id)
            new, result = appended(old, fragment, terms, self.clock(), no_overwrite, allow_new)
            if result.updated or new["type"] != old["type"]:
                staged.append(await self._stage(tenant, [WriteOp(old, new)]))
            return result

    async def update_attribute(self, tenant: str | None, context: Any, entity_id: str,
                               attribute: str, body: object, *,
                               type_text: str | None = None) -> None:
        """5.6.4 Partial Attribute Update (PATCH /entities/{id}/attrs/{attrId}); scope is no
        attribute to update (clause 5.6.4.4)."""
        if attribute == "scope":
            raise BadRequestData("scope cannot be updated by a Partial Attribute Update "
                                 "(clause 5.6.4.4)")
        await self._change_attribute(tenant, context, entity_id, attribute, body, replace=False,
                                     type_text=type_text)

    async def replace_attribute(self, tenant: str | None, context: Any, entity_id: str,
                                attribute: str, body: object) -> None:
        """5.6.19 Replace Attribute (PUT /entities/{id}/attrs/{attrId})."""
        await self._change_attribute(tenant, context, entity_id, attribute, body, replace=True)

    @retried_on_stale
    async def _change_attribute(self, tenant: str | None, context: Any, entity_id: str,
                                attribute: str, body: object, *, replace: bool,
                                type_text: str | None = None) -> None:
        """Merge a fragment into (or replace) one existing attribute instance."""
        terms = await self.contexts.term_map(context)
        types = await self._type_selection(context, type_text)
        iri = attribute_iri(terms, attribute)
        if isinstance(body, dict):  # an application/ld+json body carries its @context
            body = {k: v for k, v in body.items() if k != "@context"}
        now = self.clock()
        deleted, dataset_id = deletion(body)
        if deleted and not replace:
            await self.delete_attribute(tenant, context, entity_id, attribute,
                                        dataset_id=dataset_id, type_text=type_text)
            return
        if replace:
            fragment = expand_instance(iri, body, terms, now, attribute)
        elif not isinstance(body, dict) or not body:
            raise BadRequestData("A Partial Attribute Update takes a non-empty JSON object")
        elif body.get("datasetId") == NULL:
            raise BadRequestData("A datasetId cannot be deleted by the NGSI-LD Null "
                                 "(clause 5.5.8)")
        async with self._writing(tenant, entity_id) as staged:
            old = await self._existing(tenant, entity_id, types)
            instances = old["attrs"].get(iri)
            dataset = fragment.get("datasetId") if replace else _dataset_of(body)
            index = instance_index(instances, dataset)
            if instances is None or index is None:
                raise ResourceNotFound(f"Entity {entity_id} has no attribute {attribute}"
                                       + dataset_text(dataset))
            new = copy_entity(old)
            current = new["attrs"][iri][index]
            if replace:
                changed = {**fragment, "createdAt": current["createdAt"]}
            else:
                assert isinstance(body, dict)  # checked above
                fragment = _partial_fragment(iri, body, current, terms, now, attribute)
                changed = merge_instance(current, fragment, now)
            new["attrs"][iri][index] = changed
            new["modifiedAt"] = now
            staged.append(await self._stage(tenant, [WriteOp(old, new)]))

    @retried_on_stale
    async def delete_attribute(self, tenant: str | None, context: Any, entity_id: str,
                               attribute: str, *, dataset_id: str | None = None,
                               delete_all: bool = False, type_text: str | None = None) -> None:
        """5.6.5 Delete Entity Attribute (with ``datasetId`` / ``deleteAll``, a ``type``
        selection the entity must match); ``scope`` deletes the entity's scope."""
        terms = await self.contexts.term_map(context)
        iri = attribute_iri(terms, attribute, dataset_id)
        types = await self._type_selection(context, type_text)
        async with self._writing(tenant, entity_id) as staged:
            old = await self._existing(tenant, entity_id, types)
            if attribute == "scope":
                if "scope" not in old:
                    raise ResourceNotFound(f"Entity {entity_id} has no scope")
                new = {k: v for k, v in old.items() if k != "scope"}
                new["modifiedAt"] = self.clock()
                staged.append(await self._stage(tenant, [WriteOp(old, new)]))
                return
            instances = old["attrs"].get(iri)
            if instances is None:
                raise ResourceNotFound(f"Entity {entity_id} has no attribute {attribute}")
            new = copy_entity(old)
            if delete_all:
                del new["attrs"][iri]
            else:
                index = instance_index(instances, dataset_id)
                if index is None:
                    raise ResourceNotFound(f"Entity {entity_id} has no attribute {attribute}"
                                           + dataset_text(dataset_id))
                del new["attrs"][iri][index]
                if not new["attrs"][iri]:
                    del new["attrs"][iri]
            new["modifiedAt"] = self.clock()
            staged.append(await self._stage(tenant, [WriteOp(old, new)]))

    async def _type_selection(self, context: Any,
                              type_text: str | None) -> typequery.TypeNode | None:
        """A ``type`` parameter narrowing the target entity (clause 4.17), expanded."""
        if type_text is None:
            return None
        if not type_text:
            raise BadRequestData("type must not be empty")
        terms = await self.contexts.term_map(context)
        return typequery.parse_type_selection(type_text, terms.expand)

    # ------------------------------------------------------------ query (5.7.2)

    async def query_entities(self, tenant: str | None, context: Any, params: QueryParams,
                             shape: Shape = DEFAULT_SHAPE) -> tuple[list[dict[str, Any]], int | None]:
        """5.7.2 Query Entities: (entities in the caller's representation, count or None)."""
        page = await self.query_page(tenant, context, params, shape)
        return page.entities, page.count

    async def query_page(self, tenant: str | None, context: Any, params: QueryParams,
                         shape: Shape = DEFAULT_SHAPE) -> QueryPage:
        """5.7.2 Query Entities, with what pagination needs to know (clause 4.12): whether
        elements remain after the page."""
        terms = await self.contexts.term_map(context)
        rep = representation(shape, terms)
        pick, omit = projections(shape)
        join = linked_join(shape, pick, omit)
        entity_query = self.entity_query(params, terms, join)
        if pick is not None and params.attrs is None and not pick.names() & CORE_MEMBERS:
            # clause 5.7.2.4: an entity none of whose picked attributes exists has no member
            # left to return; select by them, as attrs does, so that pages stay full
            entity_query = replace(entity_query, attrs=frozenset(
                terms.expand(check_name(name)) for name in pick.names()))
        await self._require_tenant(tenant)
        limit = entity_query.limit
        probe = replace(entity_query, limit=limit + 1) if limit > 0 else entity_query
        result = await self.store.query(tenant, probe)
        found = result.entities[:limit] if limit > 0 else []
        rendered = await self._rendered(tenant, found, shape, terms, rep, join)
        more = len(result.entities) > limit if limit > 0 else False
        # clause 4.21: an entity left without any member by the projection is not returned
        return QueryPage([item for item in rendered if item], result.count,
                         entity_query.offset, limit, more)

    async def matching_ids(self, tenant: str | None, context: Any, params: QueryParams,
                           limit: int = ALL) -> list[str]:
        """The ids of the entities a Query Entities request matches, unpaginated, at most
        ``limit`` (what an entity map made by the query holds, clause 5.7.2.4)."""
        terms = await self.contexts.term_map(context)
        entity_query = replace(self.entity_query(params, terms), limit=limit, offset=0,
                               count=False)
        result = await self.store.query(tenant, entity_query)
        return [entity["id"] for entity in result.entities]

    async def has_tenant(self, tenant: str | None) -> bool:
        """Whether the tenant holds data (tenants are created by their first write)."""
        return await self.store.has_tenant(tenant)

    async def query_all(self, tenant: str | None, params: QueryParams,
                        terms: TermMap) -> list[Entity]:
        """Every entity matching ``params`` in the stored (expanded) form, without the
        ``limit`` bound of the API: for in-process readers that build whole views at once
        (the console's map layers). An unknown tenant has no entities."""
        entity_query = replace(self.entity_query(replace(params, limit=1), terms), limit=ALL)
        if not await self.store.has_tenant(tenant):
            return []
        await self.expire(tenant)
        return (await self.store.query(tenant, entity_query)).entities

    def entity_query(self, params: QueryParams, terms: TermMap, join: Join | None = None, *,
                     narrow: bool = True) -> EntityQuery:
        """Parse and validate the filters of a query with the caller's term map (``join``:
        the Linked Entity retrieval of the request, which bounds a linked q).

        ``narrow``: apply the too-wide rule of Query Entities (clause 5.7.2.4); otherwise any
        selector, attrs, q or geo-query will do."""
        limit = DEFAULT_LIMIT if params.limit is None else params.limit
        if limit < 0 or limit > MAX_LIMIT:
            raise BadRequestData(f"limit must be between 0 and {MAX_LIMIT}, got {limit}")
        if limit == 0 and not params.count:
            raise BadRequestData("limit=0 is only allowed together with count=true")
        if params.offset < 0:
            raise BadRequestData(f"offset must not be negative, got {params.offset}")
        wildcard = False
        if params.selectors is not None:
            selectors = tuple(self._selector(raw, terms, require_type=narrow)
                              for raw in params.selectors)
        else:
            wildcard = params.type is not None and params.type.strip() == typequery.WILDCARD
            one = self._selector({"id": params.id, "idPattern": params.id_pattern,
                                  "type": None if wildcard else params.type}, terms,
                                 listed=True)
            selectors = (one,) if one != EntitySelector() else ()
        if wildcard and params.local is False:
            # Table 6.4.3.2-1: with type "*" local is implicitly true, never explicitly false
            raise BadRequestData('type "*" implies local=true: local=false contradicts it')
        attrs = split_list(params.attrs, "attrs")
        q = query.parse_q(params.q, terms.expand, linked=True) if params.q else None
        if q is not None:
            _check_linked_q(q, join)
        if params.csf is not None:
            # clause 4.9 grammar; it filters Context Source Registrations, of which this
            # broker holds none, so it restricts nothing here
            query.parse_q(params.csf, lambda name: name)
        scope = scopequery.parse_scope_q(params.scope_q) if params.scope_q is not None else None
        geo_query = geo.parse_geoquery(params.georel, params.geometry, params.coordinates,
                                       params.geoproperty, terms.expand)
        order = ordering.parse_ordering(params.order_by, params.order_from, params.collation,
                                        terms.expand)
        if narrow:
            _check_narrow(selectors, wildcard, attrs, q, geo_query, params.local, terms)
        elif not (selectors or attrs or q or geo_query or params.local):
            raise BadRequestData(
                "A query needs at least one of id, idPattern, type, attrs, q or geo-query "
                "(or local=true)"
            )
        if params.within is not None:
            selectors = _within(selectors, params.within)
        return EntityQuery(
            selectors=selectors, q=q, scope=scope, order=order,
            geo=geo_query, attrs=frozenset(terms.expand(check_name(a)) for a in attrs) if attrs else None,
            limit=limit, offset=params.offset, count=params.count,
        )

    @staticmethod
    def _selector(raw: dict[str, Any], terms: TermMap, listed: bool = False,
                  require_type: bool = False) -> EntitySelector:
        """An entity selector (clause 5.2.33); in a URL ``id`` is a comma-separated list
        (``listed``). ``id`` takes precedence over ``idPattern``; ``require_type``: the
        EntitySelector data type, whose ``type`` is mandatory."""
        if not isinstance(raw, dict):
            raise BadRequestData("Each entity selector must be an object")
        ids = raw.get("id")
        if isinstance(ids, str):
            ids = split_list(ids, "id") if listed else [ids]
        if ids is not None and not isinstance(ids, list):
            raise BadRequestData(f"Selector id must be a URI, got {ids!r}")
        for entity_id in ids or ():
            check_uri(entity_id, "Entity id")
        pattern = raw.get("idPattern")
        if pattern is not None:
            if not isinstance(pattern, str):
                raise BadRequestData("idPattern must be a string")
            query.pattern_matches(pattern, "")  # raise early on a bad pattern
        type_text = raw.get("type")
        if type_text is None and require_type:
            raise BadRequestData("An entity selector needs a type (clause 5.2.33)")
        if type_text is not None and (not isinstance(type_text, str) or not type_text):
            raise BadRequestData("Selector type must be a non-empty string")
        types = typequery.parse_type_selection(type_text, terms.expand) if type_text else None
        return EntitySelector(tuple(ids) if ids else None, None if ids else pattern, types)

    def geojson_feature(self, entity: Entity, terms: TermMap, rep: Representation,
                        geometry_property: str | None,
                        links: Links | None = None) -> dict[str, Any]:
        """Clause 4.5.17: an entity as a GeoJSON Feature."""
        name = geometry_property or "location"
        iri = terms.expand(name) if name not in ("location", "observationSpace",
                                                 "operationSpace") else CORE_IRI + name
        instances = entity["attrs"].get(iri) or []
        geometry = instances[0]["value"] if instances and instances[0]["type"] == "GeoProperty" else None
        properties = compact_entity(entity, terms, rep, links or {})
        entity_id = properties.pop("id")
        return {"id": entity_id, "type": "Feature", "geometry": geometry,
                "properties": properties}

    # ------------------------------------------------------------ batch (5.6.7-5.6.10, 5.6.20)

    def _parse_batch(self, body: object, terms: TermMap, now: str, result: BatchResult,
                     require_type: bool) -> list[Entity]:
        parsed: list[Entity] = []
        for item in check_batch(body):
            try:
                parsed.append(expand_entity(item, terms, now, require_id_type=require_type))
            except NgsiLdError as error:
                result.fail(item.get("id") if isinstance(item, dict) else None, error)
        return parsed

    @retried_on_stale
    async def batch_create(self, tenant: str | None, context: Any, body: object) -> BatchResult:
        """5.6.7 Batch Entity Creation."""
        terms = await self.contexts.term_map(context)
        result = BatchResult()
        now = self.clock()
        entities = self._parse_batch(body, terms, now, result, True)
        async with self._writing(tenant) as staged:
            existing = await self.store.get_many(tenant, [e["id"] for e in entities])
            ops: list[WriteOp] = []
            seen: set[str] = set()
            for entity in entities:
                if entity["id"] in existing or entity["id"] in seen:
                    result.fail(entity["id"], AlreadyExists(f"Entity {entity['id']} already exists"))
                    continue
                seen.add(entity["id"])
                ops.append(WriteOp(None, entity))
            staged.append(await self._stage(tenant, ops))
        result.success = [op.new["id"] for op in ops if op.new]
        result.created = list(result.success)
        return result

    @retried_on_stale
    async def batch_upsert(self, tenant: str | None, context: Any, body: object,
                           *, mode: str = "replace") -> BatchResult:
        """5.6.8 Batch Entity Upsert (``options=replace`` default, or ``update``)."""
        terms = await self.contexts.term_map(context)
        result = BatchResult()
        now = self.clock()
        entities = self._parse_batch(body, terms, now, result, True)
        async with self._writing(tenant) as staged:
            current = await self.store.get_many(tenant, [e["id"] for e in entities])
            originals = dict(current)
            for entity in entities:
                old = current.get(entity["id"])
                if old is None:
                    current[entity["id"]] = entity
                    if entity["id"] not in result.created:
                        result.created.append(entity["id"])
                elif mode == "update":
                    merged = copy_entity(old)
                    merged["attrs"].update(overwrite_attrs(old, entity, now))
                    merged["modifiedAt"] = now
                    for member in ("scope", "expiresAt"):
                        if member in entity:
                            merged[member] = entity[member]
                    for t in entity["type"]:
                        if t not in merged["type"]:
                            merged["type"].append(t)
                    current[entity["id"]] = merged
                else:
                    entity["createdAt"] = old["createdAt"]
                    current[entity["id"]] = entity
                if entity["id"] not in result.success:
                    result.success.append(entity["id"])
            ops = [WriteOp(originals.get(i), current[i]) for i in result.success]
            staged.append(await self._stage(tenant, ops))
        return result

    async def batch_update(self, tenant: str | None, context: Any, body: object,
                           *, no_overwrite: bool = False) -> BatchResult:
        """5.6.9 Batch Entity Update: append attributes to existing entities."""
        return await self._batch_modify(tenant, context, body, "update", no_overwrite)

    async def batch_merge(self, tenant: str | None, context: Any, body: object) -> BatchResult:
        """5.6.20 Batch Entity Merge."""
        return await self._batch_modify(tenant, context, body, "merge", False)

    @retried_on_stale
    async def _batch_modify(self, tenant: str | None, context: Any, body: object, how: str,
                            no_overwrite: bool) -> BatchResult:
        terms = await self.contexts.term_map(context)
        result = BatchResult()
        now = self.clock()
        items = check_batch(body)
        async with self._writing(tenant) as staged:
            ids = [item.get("id") for item in items]
            current = await self.store.get_many(tenant, [i for i in ids if isinstance(i, str)])
            originals = dict(current)
            touched: list[str] = []
            for item in items:
                entity_id = item.get("id")
                try:
                    if not isinstance(item, dict):
                        raise BadRequestData("Each batch item must be an entity object")
                    check_uri(entity_id, "Entity id")
                    old = current.get(entity_id)  # type: ignore[arg-type]
                    # an invalid fragment is BadRequestData, whether the entity exists or not
                    target = old or {"id": entity_id, "type": [], "attrs": {},
                                     "createdAt": now, "modifiedAt": now}
                    if how == "merge":
                        new = self._merged(target, item, terms, now)
                    else:
                        fragment = {k: v for k, v in item.items() if k not in ("id", "@context")}
                        new, partial = appended(target, fragment, terms, now, no_overwrite, True)
                        invalid = [n for n in partial.not_updated
                                   if n["reason"] != MISSING_ATTRIBUTE]
                        if partial.not_updated and not partial.updated or old is None and invalid:
                            raise BadRequestData("No attribute was updated: "
                                                 + str(partial.not_updated))
                    if old is None:
                        raise ResourceNotFound(f"Entity {entity_id} does not exist")
                    current[entity_id] = new  # type: ignore[index]
                    if entity_id not in touched:
                        touched.append(entity_id)  # type: ignore[arg-type]
                    result.success.append(entity_id)  # type: ignore[arg-type]
                except NgsiLdError as error:
                    result.fail(entity_id, error)
            staged.append(await self._stage(tenant, [WriteOp(originals[i], current[i]) for i in touched]))
        return result

    @retried_on_stale
    async def batch_delete(self, tenant: str | None, body: object) -> BatchResult:
        """5.6.10 Batch Entity Delete."""
        if not isinstance(body, list) or not body:
            raise BadRequestData("Batch delete takes a non-empty JSON array of entity ids")
        result = BatchResult()
        async with self._writing(tenant) as staged:
            valid = [i for i in body if isinstance(i, str)]
            current = await self.store.get_many(tenant, valid)
            ops: list[WriteOp] = []
            for entity_id in body:
                try:
                    check_uri(entity_id, "Entity id")
                    old = current.pop(entity_id, None)
                    if old is None:
                        raise ResourceNotFound(f"Entity {entity_id} does not exist")
                    ops.append(WriteOp(old, None))
                    result.success.append(entity_id)
                except NgsiLdError as error:
                    result.fail(entity_id, error)
            staged.append(await self._stage(tenant, ops))
        return result

    async def batch_query(self, tenant: str | None, context: Any, body: object,
                          params: QueryParams, shape: Shape) -> tuple[list[dict[str, Any]], int | None]:
        """5.7.2 via POST /entityOperations/query: the Query data type (clause 5.2.23)."""
        page = await self.batch_query_page(tenant, context, body, params, shape)
        return page.entities, page.count

    async def batch_query_page(self, tenant: str | None, context: Any, body: object,
                               params: QueryParams, shape: Shape) -> QueryPage:
        """``batch_query`` with the pagination facts of ``query_page``."""
        merged = query_document(body, params)
        attrs = merged.attrs
        if attrs and shape.attrs is None:
            shape = replace(shape, attrs=attrs)
        return await self.query_page(tenant, context, merged, shape)

    def _merged(self, old: Entity, body: object, terms: TermMap, now: str) -> Entity:
        if not isinstance(body, dict):
            raise BadRequestData("The body must be a JSON object")
        if "id" in body and body["id"] != old["id"]:
            raise BadRequestData("The id in the body differs from the id in the URL")
        new = copy_entity(old)
        if "type" in body:
            for t in expand_types(body["type"], terms):
                if t not in new["type"]:
                    new["type"].append(t)
        for name, raw in body.items():
            if name in ("id", "type", "@context", "createdAt", "modifiedAt"):
                continue
            if name == "scope":
                new["scope"] = expand_entity({"id": old["id"], "type": "T", "scope": raw},
                                             terms, now)["scope"]
                continue
            if name == "expiresAt":  # clause 4.22: the entity becomes (or stops being) transient
                if raw == NULL:
                    new.pop("expiresAt", None)
                else:
                    new["expiresAt"] = check_expiry(raw, "expiresAt of the entity")
                continue
            check_attribute_name(name)
            iri = terms.expand(name)
            if raw == NULL:
                new["attrs"].pop(iri, None)
                continue
            items = raw if isinstance(raw, list) else [raw]
            kept = []
            for item in items:
                deleted, dataset_id = deletion(item)
                if deleted:
                    delete_instance(new, iri, dataset_id)
                else:
                    kept.append(strip_nulls(item))
            if not kept:
                continue
            for fragment in expand_instances(iri, kept if isinstance(raw, list) else kept[0],
                                             terms, now, name):
                instances = new["attrs"].setdefault(iri, [])
                index = instance_index(instances, fragment.get("datasetId"))
                if index is None:
                    instances.append(fragment)
                else:
                    merged = merge_instance(instances[index], fragment, now)
                    for sub_name, sub_raw in (raw.items() if isinstance(raw, dict) else ()):
                        if deletion(sub_raw)[0]:
                            merged.get("subs", {}).pop(terms.expand(sub_name), None)
                    instances[index] = merged
                instances.sort(key=lambda i: "datasetId" in i)
        new["modifiedAt"] = now
        return new


# ---------------------------------------------------------------- pure helpers

#: entity members that are no attributes: ``attrs`` / ``q`` naming only these select nothing
#: narrower than every entity (clause 5.7.2.4)
SYSTEM_NAMES = frozenset({"id", "type", "scope", "createdAt", "modifiedAt", "deletedAt",
                          "@context"})


def _is_system(name: str, terms: TermMap) -> bool:
    return name in SYSTEM_NAMES or any(name == CORE_IRI + s or terms.expand(s) == name
                                       for s in SYSTEM_NAMES if not s.startswith("@"))


def _check_narrow(selectors: tuple[EntitySelector, ...], wildcard: bool,
                  attrs: list[str] | None, q: query.QNode | None, geo_query: geo.GeoQuery | None,
                  local: bool | None, terms: TermMap) -> None:
    """Clause 5.7.2.4: a Query Entities needs an entity type selection, attrs or q naming at
    least one non-system attribute, a geo-query or local scope (``local=true``, or type
    ``*`` which implies it); entity ids or an id pattern alone are too wide."""
    if wildcard or local or geo_query is not None:
        return
    if selectors and all(s.types is not None for s in selectors):
        return
    if attrs and not all(_is_system(a, terms) for a in attrs):
        return
    if q is not None and not all(_is_system(a, terms) for a in query.q_attributes(q)):
        return
    raise BadRequestData(
        "Too wide a query: give an entity type, attrs or q naming a non-system attribute, "
        "a geo-query or local=true (entity ids or an id pattern alone do not narrow it)")



def _within(selectors: tuple[EntitySelector, ...],
            ids: frozenset[str]) -> tuple[EntitySelector, ...]:
    """The selectors restricted to ``ids`` (an entity map's, clause 5.5.14): each keeps only
    the listed ids it names, or lists them all; none left names an empty list (no match)."""
    listed = tuple(sorted(ids))
    if not selectors:
        return (EntitySelector(ids=listed),)
    return tuple(replace(s, ids=listed if s.ids is None else
                         tuple(i for i in s.ids if i in ids)) for s in selectors)


def _check_linked_q(q: query.QNode, join: Join | None) -> None:
    """Clause 5.7.2.4: a q on Linked Entity attributes without Linked Entity retrieval, or
    deeper than ``joinLevel``, is a too deep query (BadRequestData). Within the bound, the
    filter on linked Entities is not implemented (OperationNotSupported)."""
    depth = query.link_depth(q)
    if not depth:
        return
    if join is None:
        raise BadRequestData("q on linked entity attributes ('{...}') needs join=inline "
                             "or join=flat")
    if depth > join.level:
        raise BadRequestData(f"q reaches {depth} linked entity hops, beyond joinLevel "
                             f"{join.level}")
    raise OperationNotSupported("q on linked entity attributes is not supported")


#: members an NGSI-LD system keeps itself: not a qualifying purge filter (clause 5.6.21.4)
SYSTEM_MEMBERS = frozenset(["id", "type", "createdAt", "modifiedAt", "deletedAt", "scope"])


def _dataset_of(body: object) -> str | None:
    dataset = body.get("datasetId") if isinstance(body, dict) else None
    return dataset if isinstance(dataset, str) else None


def _partial_fragment(iri: str, body: dict[str, Any], current: dict[str, Any], terms: TermMap,
                      now: str, attribute: str) -> dict[str, Any]:
    """Clause 5.6.4: the fragment of a Partial Attribute Update, expanded against the target
    instance: it keeps the target's type (another type is BadRequestData) and, when it
    carries only other members (sub-attributes, observedAt...), the target's value."""
    kind = current["type"]
    if "type" in body and body["type"] != kind:
        raise BadRequestData(f"Attribute {attribute!r} is a {kind}; the fragment is a "
                             f"{body['type']!r} (clause 5.6.4)")
    member = VALUE_MEMBER[kind]
    given = {"type": kind, **body}
    if not any(m in body for m in VALUE_MEMBER.values()):
        given[member] = current[member]
    elif member not in body:
        fragment = expand_instance(iri, body, terms, now, attribute)
        return retype(fragment, kind)  # a concise {"value": ...} aimed at another type
    return expand_instance(iri, given, terms, now, attribute)


def _q_labels(node: query.QNode | None) -> Iterator[str]:
    """The attribute names written in a q expression."""
    if isinstance(node, (query.And, query.Or)):
        for child in node.children:
            yield from _q_labels(child)
    elif node is not None:
        yield from node.path.labels or (node.path.attr,)


def _purged(entity: Entity, kept: frozenset[str] | None, dropped: frozenset[str],
            projected: bool, now: str) -> WriteOp | None:
    """The change Purge Entities makes to one matching entity (None: none)."""
    if not projected:
        return WriteOp(entity, None)
    new = copy_entity(entity)
    new["attrs"] = {iri: instances for iri, instances in entity["attrs"].items()
                    if iri not in dropped and (kept is None or iri in kept)}
    if len(new["attrs"]) == len(entity["attrs"]):
        return None
    new["modifiedAt"] = now
    return WriteOp(entity, new)


def check_batch(body: object) -> list[dict[str, Any]]:
    """Clauses 5.6.7.4, 5.6.8.4, 5.6.9.4, 5.6.20.4: the content must be a non-empty array of
    entities (JSON objects), else the whole batch fails with BadRequestData."""
    if not isinstance(body, list) or not body:
        raise BadRequestData("A batch operation takes a non-empty JSON array of entities")
    if not all(isinstance(item, dict) for item in body):
        raise BadRequestData("Every item of a batch must be an entity (a JSON object)")
    return body


def query_document(body: object, params: QueryParams) -> QueryParams:
    """The filters of a Query document (clause 5.2.23: ``entities``, ``attrs``, ``q``, ``geoQ``,
    ``local``) merged with the URL's pagination parameters (POST /entityOperations/query and
    its temporal twin, which reads ``temporalQ`` itself)."""
    if not isinstance(body, dict) or body.get("type", "Query") != "Query":
        raise BadRequestData("The body must be a Query object (type Query)")
    selectors = body.get("entities")
    if selectors is not None and not isinstance(selectors, list):
        raise BadRequestData("entities must be a list of entity selectors")
    geo_q = body.get("geoQ") or {}
    if not isinstance(geo_q, dict):
        raise BadRequestData("geoQ must be an object")
    attrs = body.get("attrs")
    if attrs is not None and not (isinstance(attrs, list)
                                  and all(isinstance(a, str) for a in attrs)):
        raise BadRequestData("attrs must be a list of attribute names")
    q, scope_q, csf = (_optional_string(body, name) for name in ("q", "scopeQ", "csf"))
    local = body.get("local")
    if local is not None and not isinstance(local, bool):
        raise BadRequestData("local must be true or false")
    return replace(
        params, selectors=tuple(selectors) if selectors else None,
        attrs=",".join(attrs) if attrs else None, q=q, scope_q=scope_q, csf=csf,
        georel=geo_q.get("georel"), geometry=geo_q.get("geometry"),
        coordinates=geo_q.get("coordinates"), geoproperty=geo_q.get("geoproperty"),
        local=True if params.local or local else (params.local if local is None else local))


__all__ = ["ALL", "BatchResult", "ChangeListener", "ChangeObserver", "EntityBroker", "QueryPage",
           "QueryParams", "UpdateResult", "WriteOp", "query_document"]


def _optional_string(body: dict[str, Any], name: str) -> str | None:
    """A member of a Query body that is a string when present, else BadRequestData."""
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequestData(f"{name} must be a string")
    return value
