"""The NGSI-LD Temporal API semantics (ETSI GS CIM 009 v1.8, clauses 5.6.11-5.6.16, 5.7.3-5.7.4,
4.5.7-4.5.9 and 4.11).

- **Recording**: ``TemporalBroker.record`` is an ``EntityBroker`` listener; for every entity
  change it returns one ``InstanceRecord`` per attribute instance that is new or changed, and
  one per instance that disappeared (with ``deletedAt``), staged in the same transaction.
- **Queries**: entities are selected by id/idPattern/type/attrs from the temporal entities
  table (so deleted entities keep their history); ``q`` and a geo-query are judged on the
  instances within the temporal query (clause 5.7.4.4); then each attribute's history is
  read with one index range scan per attribute.
- **Representations**: normalized temporal (arrays of instances with ``instanceId``),
  ``temporalValues`` (``[[value, time], ...]``), ``aggregatedValues`` (``[[value, start, end]]``
  per period, computed in SQL).
- **Pagination of long histories** (clause 6.3.10): at most ``max_instances`` instances per
  attribute; beyond, 206 with ``Content-Range: date-time <start>-<end>/<lastN or *>``.
- **Retention**: a per-tenant / per-attribute number of days, purged in the background.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from cityvisor.broker.entities import (
    ALL,
    EntityBroker,
    QueryParams,
    query_document,
    utc_now,
)
from cityvisor.broker.temporal_query import (
    INSTANCE_PREFIX,
    NO_PROJECTION,
    Projection,
    TemporalQuery,
    TemporalResult,
    paginate,
    render_aggregates,
    render_attribute,
    render_head,
    row_time,
    stored_instance,
)
from cityvisor.ngsild import geo as geo_predicates
from cityvisor.ngsild import query as q_language
from cityvisor.ngsild.context import CORE_IRI, TermMap
from cityvisor.ngsild.errors import (
    BadRequestData,
    NonexistentTenant,
    ResourceNotFound,
)
from cityvisor.ngsild.model import (
    NULL,
    VALUE_MEMBER,
    attribute_iri,
    check_attribute_name,
    check_name,
    check_uri,
    expand_instance,
    expand_scope,
    expand_types,
)
from cityvisor.ngsild.time import (
    Period,
    format_utc_micros,
    normalize_time,
    parse_utc,
    period_bounds,
)
from cityvisor.store.base import Buckets, EntityQuery, Store, WriteOp
from cityvisor.store.records import (
    AttributeAggregate,
    AttributeHistoryDeleted,
    EntityRecord,
    EntityTouched,
    HistoryDeleted,
    HistoryRow,
    InstanceDeleted,
    InstanceModified,
    InstanceRecord,
    TemporalEntity,
)
from cityvisor.tasks import cancel_and_wait

LOG = logging.getLogger("cityvisor.temporal")
DEFAULT_MAX_INSTANCES = 1000
#: candidate entities judged per step of a windowed q / geo-query selection
_SELECTION_PAGE = 200
_INT64 = 2**63


# ---------------------------------------------------------------------------- recording


def _num(instance: dict[str, Any]) -> float | None:
    if instance["type"] != "Property":
        return None
    value = instance.get("value")
    if type(value) is float:
        return value
    if type(value) is int:
        return value if -_INT64 <= value < _INT64 else float(value)
    return None


#: instance members kept in their own columns, not repeated in the stored JSON (a third of it)
_COLUMN_MEMBERS = ("createdAt", "modifiedAt")


def _dumps(instance: dict[str, Any]) -> str:
    stored = {k: v for k, v in instance.items() if k not in _COLUMN_MEMBERS}
    try:
        return orjson.dumps(stored).decode()
    except TypeError:  # integers beyond 64 bits
        return json.dumps(stored, ensure_ascii=False)


def instance_record(entity_id: str, entity_type: str, iri: str, instance: dict[str, Any],
                    deleted_at: str | None = None) -> InstanceRecord:
    if deleted_at is not None:
        return InstanceRecord(entity_id, entity_type, iri, instance.get("datasetId", ""),
                                 deleted_at, instance["createdAt"], deleted_at, deleted_at, None,
                                 _dumps(instance))
    modified = instance["modifiedAt"]
    observed = instance.get("observedAt")
    return InstanceRecord(
        entity_id, entity_type, iri, instance.get("datasetId", ""),
        modified if observed is None else normalize_time(observed), instance["createdAt"],
        modified, None, _num(instance), _dumps(instance))


#: the Scope's temporal evolution is recorded as a Property of this name (clause 4.5.6)
SCOPE_IRI = CORE_IRI + "scope"


def scope_instance(scope: list[str], at: str) -> dict[str, Any]:
    """Clause 4.5.6: the Scope as an instance of a Property whose only sub-properties are
    temporal; changed through the core API, its ``observedAt`` is a copy of ``modifiedAt``."""
    return {"type": "Property", "value": scope[0] if len(scope) == 1 else scope,
            "observedAt": at, "createdAt": at, "modifiedAt": at}


def _scope_records(old: dict[str, Any] | None, new: dict[str, Any] | None,
                   at: str) -> list[InstanceRecord]:
    """The Scope's history row of an entity change: a new instance when it changed, a
    deletion when it went away."""
    before = old.get("scope") if old is not None else None
    after = new.get("scope") if new is not None else None
    if before == after:
        return []
    entity = new if new is not None else old
    assert entity is not None
    if after:
        return [instance_record(entity["id"], entity["type"][0], SCOPE_IRI,
                                scope_instance(after, at))]
    return [instance_record(entity["id"], entity["type"][0], SCOPE_IRI,
                            scope_instance(before, at), at)] if before else []


def _by_dataset(instances: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i.get("datasetId", ""): i for i in instances}


def changes_to_records(ops: Sequence[WriteOp], now: Callable[[], str]) -> list[object]:
    """The history rows of a batch of entity changes (see the module docstring)."""
    records: list[object] = []
    for op in ops:
        old, new = op.old, op.new
        if new is None:
            assert old is not None
            deleted = now()
            kind = old["type"][0]
            for iri, instances in old["attrs"].items():
                for instance in instances:
                    records.append(instance_record(old["id"], kind, iri, instance, deleted))
            records.extend(_scope_records(old, None, deleted))
            records.append(EntityRecord(old["id"], tuple(old["type"]), old["createdAt"],
                                           deleted, deleted))
            continue
        entity_id, kind = new["id"], new["type"][0]
        if old is None or old["type"] != new["type"]:
            records.append(EntityRecord(entity_id, tuple(new["type"]), new["createdAt"],
                                           new["modifiedAt"]))
        records.extend(_scope_records(old, new, new["modifiedAt"]))
        old_attrs = old["attrs"] if old is not None else {}
        new_attrs = new["attrs"]
        for iri, instances in new_attrs.items():
            before = old_attrs.get(iri)
            if before is None:
                for instance in instances:
                    records.append(instance_record(entity_id, kind, iri, instance))
                continue
            if before == instances:
                continue
            if len(before) == 1 and len(instances) == 1 and (
                    before[0].get("datasetId") == instances[0].get("datasetId")):
                records.append(instance_record(entity_id, kind, iri, instances[0]))
                continue
            previous = _by_dataset(before)
            for instance in instances:
                if previous.pop(instance.get("datasetId", ""), None) != instance:
                    records.append(instance_record(entity_id, kind, iri, instance))
            for instance in previous.values():
                records.append(instance_record(entity_id, kind, iri, instance, new["modifiedAt"]))
        for iri in old_attrs.keys() - new_attrs.keys():
            for instance in old_attrs[iri]:
                records.append(instance_record(entity_id, kind, iri, instance, new["modifiedAt"]))
    return records


# ---------------------------------------------------------------------------- broker


class TemporalBroker:
    """Temporal API operations for every tenant, recording, and retention."""

    def __init__(self, store: Store, broker: EntityBroker, *,
                 max_instances: int = DEFAULT_MAX_INSTANCES,
                 retention_days: int | None = None, purge_interval_s: float = 3600.0,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.broker = broker
        self.contexts = broker.contexts
        self.max_instances = max_instances
        self.retention_days = retention_days
        self.purge_interval_s = purge_interval_s
        self.now = now  # the retention clock (injectable)
        self._task: asyncio.Task[None] | None = None

    async def record(self, tenant: str | None, ops: list[WriteOp]) -> Sequence[object]:
        """The ``EntityBroker`` change listener (wired by the composition root): history rows
        of the changes, staged in their transaction."""
        return changes_to_records(ops, self.broker.clock)

    # ------------------------------------------------------------ helpers

    async def _require_tenant(self, tenant: str | None) -> None:
        if not await self.store.has_tenant(tenant):
            raise NonexistentTenant(f"Tenant {tenant!r} does not exist")

    async def _entity_row(self, tenant: str | None, entity_id: str) -> TemporalEntity | None:
        """The temporal entity as the writer sees it (staged changes included)."""
        found = await self.store.temporal_entities(tenant, [entity_id], staged=True)
        return found.get(entity_id)

    async def _existing(self, tenant: str | None, entity_id: str) -> TemporalEntity:
        check_uri(entity_id, "Entity id")
        await self._require_tenant(tenant)
        row = await self._entity_row(tenant, entity_id)
        if row is None:
            raise ResourceNotFound(f"Entity {entity_id} has no temporal representation")
        return row

    @staticmethod
    def _instances(body: dict[str, Any], terms: TermMap, now: str,
                   skip: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]]:
        """(attribute IRI, expanded instance) pairs of a temporal fragment: each attribute is an
        array of instances (or one instance)."""
        found: list[tuple[str, dict[str, Any]]] = []
        for name, raw in body.items():
            if name in skip:
                continue
            check_attribute_name(name)  # clause 4.5.1: no core non-reified term
            iri = terms.expand(name)
            items = raw if isinstance(raw, list) else [raw]
            if not items:
                raise BadRequestData(f"Attribute {name!r} has no instance")
            if any(item == NULL for item in items):
                # clause 5.2.1 / 5.5.4: "urn:ngsi-ld:null" marks a deleted value inside an
                # instance, never a member of a temporal representation
                raise BadRequestData(f"Attribute {name!r} is {NULL!r}: a temporal "
                                     "representation holds instances, not a deletion marker")
            for item in items:
                found.append((iri, expand_instance(iri, item, terms, now, name, deletion=True)))
        return found

    # ------------------------------------------------------------ writes (5.6.11-5.6.16)

    async def create_or_append(self, tenant: str | None, context: Any, body: object) -> bool:
        """5.6.11 Create or Update Temporal Representation of an Entity; True if created."""
        terms = await self.contexts.term_map(context)
        if not isinstance(body, dict):
            raise BadRequestData("The temporal entity must be a JSON object")
        entity_id = check_uri(body.get("id"), "Entity id")
        if "type" not in body:
            raise BadRequestData("The temporal entity has no type")
        types = expand_types(body["type"], terms)
        now = utc_now()
        pairs = self._instances(body, terms, now, ("id", "type", "@context", "scope",
                                                   "createdAt", "modifiedAt"))
        pairs.extend(_scope_pairs(body, terms, now))
        async with self.broker.lock(tenant):
            row = await self._entity_row(tenant, entity_id)
            created_at = now
            if row is not None:
                merged = list(row.types)
                types = merged + [t for t in types if t not in merged]
                created_at = row.created_at
            records: list[object] = [EntityRecord(entity_id, tuple(types), created_at, now)]
            records.extend(instance_record(entity_id, types[0], iri, i) for iri, i in pairs)
            durable = await self.store.stage(tenant, [], records)
        await durable
        return row is None

    async def append_attributes(self, tenant: str | None, context: Any, entity_id: str,
                                body: object) -> None:
        """5.6.12 Add Attributes to Temporal Representation of an Entity."""
        terms = await self.contexts.term_map(context)
        if not isinstance(body, dict):
            raise BadRequestData("The body must be a JSON object of attributes")
        if "id" in body and body["id"] != entity_id:
            raise BadRequestData("The id in the body differs from the id in the URL")
        now = utc_now()
        pairs = self._instances(body, terms, now, ("id", "type", "@context", "scope",
                                                   "createdAt", "modifiedAt"))
        pairs.extend(_scope_pairs(body, terms, now))
        if not pairs:
            raise BadRequestData("The body has no attribute")
        async with self.broker.lock(tenant):
            row = await self._existing(tenant, entity_id)
            kind = row.types[0]
            records: list[object] = [instance_record(entity_id, kind, iri, i) for iri, i in pairs]
            records.append(EntityTouched(entity_id, now))
            durable = await self.store.stage(tenant, [], records)
        await durable

    async def delete_entity(self, tenant: str | None, entity_id: str) -> None:
        """5.6.16 Delete Temporal Representation of an Entity."""
        async with self.broker.lock(tenant):
            await self._existing(tenant, entity_id)
            durable = await self.store.stage(tenant, [], [HistoryDeleted(entity_id)])
        await durable

    async def delete_attribute(self, tenant: str | None, context: Any, entity_id: str,
                               attribute: str, *, dataset_id: str | None = None,
                               delete_all: bool = False) -> None:
        """5.6.13 Delete Attribute from Temporal Representation of an Entity."""
        terms = await self.contexts.term_map(context)
        iri = attribute_iri(terms, attribute, dataset_id)
        which = None if delete_all else (dataset_id or "")
        async with self.broker.lock(tenant):
            await self._existing(tenant, entity_id)
            if not await self.store.has_history(tenant, entity_id, iri, which, staged=True):
                raise ResourceNotFound(
                    f"Entity {entity_id} has no history of attribute {attribute}"
                    + (f" with datasetId {dataset_id}" if dataset_id else ""))
            durable = await self.store.stage(
                tenant, [], [AttributeHistoryDeleted(entity_id, iri, which)])
        await durable

    def _instance_id(self, text: str) -> int | None:
        check_uri(text, "instanceId")
        if not text.startswith(INSTANCE_PREFIX) or not text[len(INSTANCE_PREFIX):].isdigit():
            return None
        number = int(text[len(INSTANCE_PREFIX):])
        return number if number < _INT64 else None

    async def _instance(self, tenant: str | None, entity_id: str, iri: str, attribute: str,
                        instance_text: str) -> HistoryRow:
        await self._existing(tenant, entity_id)
        number = self._instance_id(instance_text)
        found = None if number is None else await self.store.history_instance(
            tenant, entity_id, iri, number, staged=True)
        if found is None:
            raise ResourceNotFound(f"Attribute {attribute} of entity {entity_id} has no instance "
                                   f"{instance_text}")
        return found

    async def modify_instance(self, tenant: str | None, context: Any, entity_id: str,
                              attribute: str, instance_text: str, body: object) -> None:
        """5.6.14 Modify Attribute Instance in Temporal Representation of an Entity: the
        fragment's members replace the instance's; createdAt is kept, modifiedAt is now."""
        terms = await self.contexts.term_map(context)
        iri = attribute_iri(terms, attribute)
        if isinstance(body, dict) and attribute in body and len(body) == 1:
            body = body[attribute]  # {"attr": {...}} form
        if isinstance(body, list):
            if len(body) != 1:
                raise BadRequestData("Modify one instance: the body holds one attribute instance")
            body = body[0]
        now = utc_now()
        async with self.broker.lock(tenant):
            current_row = await self._instance(tenant, entity_id, iri, attribute, instance_text)
            current = stored_instance(current_row)
            if current_row.deleted_at is not None:
                raise BadRequestData(f"Instance {instance_text} records a deletion; it cannot be "
                                     "modified")
            fragment = expand_instance(iri, _with_type(body, current), terms, now, attribute,
                                       deletion=True)
            if fragment.get("datasetId", "") != current.get("datasetId", ""):
                raise BadRequestData("The datasetId of an instance cannot be changed")
            merged = {k: v for k, v in current.items() if k != VALUE_MEMBER[current["type"]]}
            merged.update({k: v for k, v in fragment.items() if k not in ("createdAt",)})
            merged["createdAt"] = current["createdAt"]
            merged["modifiedAt"] = now
            record = instance_record(entity_id, "", iri, merged)
            durable = await self.store.stage(tenant, [], [InstanceModified(
                current_row.instance_id,
                record.observed_at if "observedAt" in merged else current_row.observed_at, now,
                record.num, record.value)])
        await durable

    async def delete_instance(self, tenant: str | None, context: Any, entity_id: str,
                              attribute: str, instance_text: str) -> None:
        """5.6.15 Delete Attribute Instance from Temporal Representation of an Entity."""
        terms = await self.contexts.term_map(context)
        iri = attribute_iri(terms, attribute)
        async with self.broker.lock(tenant):
            row = await self._instance(tenant, entity_id, iri, attribute, instance_text)
            durable = await self.store.stage(tenant, [], [InstanceDeleted(row.instance_id)])
        await durable

    # ------------------------------------------------------------ reads (5.7.3, 5.7.4)

    async def retrieve(self, tenant: str | None, context: Any, entity_id: str,
                       tq: TemporalQuery, attrs: str | None = None,
                       projection: Projection = NO_PROJECTION) -> TemporalResult:
        """5.7.3 Retrieve Temporal Evolution of an Entity; ``projection``: pick / omit
        (clause 5.7.3.4: ResourceNotFound when they leave no member)."""
        check_uri(entity_id, "Entity id")
        terms = await self.contexts.term_map(context)
        wanted = _attr_set(attrs, terms)
        await self.broker.expire(tenant)  # clause 4.22: never serve expired data
        await self._require_tenant(tenant)
        rows = await self.store.temporal_entities(tenant, [entity_id])
        if entity_id not in rows:
            raise ResourceNotFound(f"Entity {entity_id} has no temporal representation")
        found = rows[entity_id]
        if wanted is not None and not any([await self.store.has_history(
                tenant, entity_id, iri, None) for iri in sorted(wanted)]):
            # clause 5.7.3.4: none of the requested attributes has a temporal representation
            raise ResourceNotFound(f"Entity {entity_id} has no history of attribute "
                                   f"{', '.join(sorted(terms.compact(i) for i in wanted))}")
        heads = [(entity_id, list(found.types), found.created_at, found.modified_at)]
        result = await self._histories(tenant, heads, wanted, tq, terms, projection)
        if not result.entities[0]:
            raise ResourceNotFound(f"Entity {entity_id} has no member left after pick / omit")
        return result

    async def query(self, tenant: str | None, context: Any, params: QueryParams,
                    tq: TemporalQuery, *, descending: bool | None = None,
                    projection: Projection = NO_PROJECTION) -> TemporalResult:
        """5.7.4 Query Temporal Evolution of Entities; ``descending`` orders the entities by
        id (``orderBy=id``, clause 5.7.4.4), None keeps the order of their creation;
        ``projection``: pick / omit, which shape the entities and select none."""
        terms = await self.contexts.term_map(context)
        _refuse_linked_q(params.q)
        query = self.broker.entity_query(params, terms)  # the 5.7.2.4 too-wide rule too
        await self.broker.expire(tenant)  # clause 4.22: never serve expired data
        await self._require_tenant(tenant)
        selected, count = await self._select_on_window(tenant, query, tq, descending)
        heads = [(e.id, list(e.types), e.created_at, e.modified_at) for e in selected]
        result = await self._histories(tenant, heads, query.attrs, tq, terms, projection)
        result.count = count
        return result

    async def matching_ids(self, tenant: str | None, context: Any, params: QueryParams,
                           tq: TemporalQuery, limit: int = ALL) -> list[str]:
        """The ids of the entities a temporal query matches, unpaginated, at most ``limit``
        (what an entity map made by the query holds, clause 5.7.4.4)."""
        terms = await self.contexts.term_map(context)
        query = replace(self.broker.entity_query(params, terms), offset=0, limit=limit,
                        count=False)
        selected, _ = await self._select_on_window(tenant, query, tq, None)
        return [entity.id for entity in selected]

    async def _select_on_window(self, tenant: str | None, query: EntityQuery,
                                tq: TemporalQuery, descending: bool | None
                                ) -> tuple[list[TemporalEntity], int | None]:
        """The entities that have instances within the temporal query (of the requested
        attributes and datasetIds) and whose windowed instances satisfy ``q`` and the
        geo-query (clause 5.7.4.4: the values filter and the geospatial restrictions are
        checked against the attribute instances the temporal filter selected, not against the
        current state); then the page ``offset``/``limit`` of them and their count."""
        judged = frozenset() if query.q is None else q_language.q_attributes(query.q)
        if query.geo is not None:
            judged |= {query.geo.geoproperty}
        candidates = replace(query, q=None, geo=None, limit=_SELECTION_PAGE, offset=0,
                             count=False)
        enough = None if query.count or descending is not None else query.offset + query.limit
        limit = self.max_instances if tq.last_n is None else min(tq.last_n, self.max_instances)
        window = tq.time_filter()
        matched: list[TemporalEntity] = []
        while enough is None or len(matched) < enough:
            page, _ = await self.store.select_temporal_entities(tenant, candidates)
            ids = [e.id for e in page]
            # one instance per attribute tells whether an entity has some in the window,
            # unless only some datasetIds count
            present = await self.store.histories(tenant, ids, query.attrs, window,
                                                 limit if tq.datasets is not None else 1)
            values = await self.store.histories(tenant, ids, judged, window, limit) if (
                judged) else {}
            for head in page:
                if not any(tq.keeps(row) for rows in present.get(head.id, {}).values()
                           for row in rows):
                    continue
                windowed = {"id": head.id, "type": list(head.types), "attrs": {
                    iri: [stored_instance(r) for r in rows
                          if r.deleted_at is None and tq.keeps(r)]
                    for iri, rows in values.get(head.id, {}).items()}}
                if _window_matches(query, windowed):
                    matched.append(head)
            if len(page) < _SELECTION_PAGE:
                break
            candidates = replace(candidates, offset=candidates.offset + _SELECTION_PAGE)
        if descending is not None:
            matched.sort(key=lambda e: e.id, reverse=descending)
        return (matched[query.offset:query.offset + query.limit],
                len(matched) if query.count else None)

    async def batch_query(self, tenant: str | None, context: Any, body: object,
                          params: QueryParams, raw: dict[str, Any],
                          projection: Projection = NO_PROJECTION) -> TemporalResult:
        """5.7.4 via POST /temporal/entityOperations/query (Query with temporalQ)."""
        merged = query_document(body, params)
        assert isinstance(body, dict)  # checked by query_document
        temporal_q = body.get("temporalQ") or {}
        if not isinstance(temporal_q, dict):
            raise BadRequestData("temporalQ must be an object")
        last_n = temporal_q.get("lastN", raw.get("lastN"))
        # the aggregation: the Query's aggrParams (clause 5.2.44), the temporalQ's members
        # (clause 5.2.21) or the URL; asking for one in the body asks for aggregatedValues
        aggr_params = body.get("aggrParams", {})
        if not isinstance(aggr_params, dict):
            raise BadRequestData("aggrParams must be an object")
        options = raw.get("options")
        methods = aggr_params.get("aggrMethods", temporal_q.get("aggrMethods"))
        period = aggr_params.get("aggrPeriodDuration", temporal_q.get("aggrPeriodDuration"))
        if methods is not None or period is not None:
            named = [o.strip() for o in (options or "").split(",") if o.strip()]
            options = ",".join(named if "aggregatedValues" in named
                               else [*named, "aggregatedValues"])
        tq = TemporalQuery.parse(
            timerel=temporal_q.get("timerel"), time_at=temporal_q.get("timeAt"),
            end_time_at=temporal_q.get("endTimeAt"),
            timeproperty=temporal_q.get("timeproperty"),
            last_n=str(last_n) if isinstance(last_n, int) and not isinstance(last_n, bool)
            else last_n,
            options=options, aggr_methods=raw.get("aggrMethods") if methods is None else methods,
            aggr_period=raw.get("aggrPeriodDuration") if period is None else period)
        return await self.query(tenant, context, merged, tq, projection=projection)

    # ------------------------------------------------------------ histories and rendering

    async def _histories(self, tenant: str | None, heads: list[tuple[Any, ...]],
                         wanted: frozenset[str] | None, tq: TemporalQuery,
                         terms: TermMap, projection: Projection = NO_PROJECTION
                         ) -> TemporalResult:
        ids = [h[0] for h in heads]
        picked = projection.attributes(terms)
        if picked is not None:  # only the picked attributes are read
            wanted = picked if wanted is None else wanted & picked
        if tq.mode == "aggregatedValues":
            aggregates = await self._aggregates(tenant, ids, wanted, tq)
            entities = [projection.apply(render_head(h, terms, tq) | render_aggregates(
                aggregates.get(h[0], {}), terms, tq)) for h in heads]
            return TemporalResult(entities)
        limit = self.max_instances if tq.last_n is None else min(tq.last_n, self.max_instances)
        # lastN within the limit is a complete answer: no page to follow; otherwise one more
        # instance than the limit tells whether the history was truncated
        capped = tq.last_n is None or tq.last_n > limit
        data = await self.store.histories(tenant, ids, wanted, tq.time_filter(),
                                          limit + capped)
        if tq.datasets is not None:
            data = {entity: {attr: kept for attr, rows in attrs.items()
                             if (kept := [r for r in rows if tq.keeps(r)])}
                    for entity, attrs in data.items()}
        truncated: list[str] = []
        for histories in data.values():
            for attr, rows in histories.items():
                if len(rows) > limit:
                    rows = rows[-limit:] if tq.last_n is not None else rows[:limit]
                    histories[attr] = rows
                    # the time of the last row kept (the oldest one for lastN)
                    truncated.append(row_time(rows[0] if tq.last_n is not None else rows[-1],
                                              tq.timeproperty))
        content_range = None
        if truncated:
            data, content_range = paginate(data, truncated, tq)
        entities = []
        for head in heads:
            out = render_head(head, terms, tq)
            for iri, rows in data.get(head[0], {}).items():
                out[terms.compact(iri)] = render_attribute(rows, terms, tq)
            entities.append(projection.apply(out))
        return TemporalResult(entities, content_range=content_range)

    async def _aggregates(self, tenant: str | None, ids: list[str],
                          wanted: frozenset[str] | None, tq: TemporalQuery
                          ) -> dict[str, dict[str, list[tuple[Any, ...]]]]:
        """entity -> attribute -> [(dataset_id, kind, start, end, values...)]."""
        period = tq.period
        origin = tq.time_at if tq.timerel in ("after", "between") else None
        if tq.timerel == "between":
            whole_end = tq.end_time_at
        elif tq.timerel == "before":
            whole_end = tq.time_at
        else:
            whole_end = None
        found = await self.store.aggregate_histories(
            tenant, ids, wanted, tq.time_filter(), tq.methods,
            Buckets(period.ms, period.months), origin,
            with_last_time=period.whole and whole_end is None)
        out: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
        for entity_id, per_attr in found.items():
            out[entity_id] = {attr: results for attr, aggregate in per_attr.items() if (
                results := [r for r in self._aggregate_results(aggregate, period, whole_end)
                            if tq.datasets is None or r[0] in tq.datasets])}
        return out

    @staticmethod
    def _aggregate_results(aggregate: AttributeAggregate, period: Period,
                           whole_end: str | None) -> list[tuple[Any, ...]]:
        origin = parse_utc(aggregate.origin)
        results = []
        for dataset_id, bucket, *values in aggregate.rows:
            if not period.whole:
                bounds = period_bounds(origin, bucket, period)
            else:
                bounds = (aggregate.origin, whole_end or aggregate.last_time or aggregate.origin)
            results.append((dataset_id, aggregate.kind, *bounds, *values))
        return results

    # ------------------------------------------------------------ retention

    async def purge(self, now: datetime | None = None) -> int:
        """Delete the instances older than their retention, in every tenant; returns how many."""
        moment = now or self.now()
        tenants: list[str | None] = [None, *await self.store.tenants()]
        deleted = 0
        for tenant in tenants:
            settings = await self.store.retention(tenant)
            default_days = settings.pop("", self.retention_days)
            cutoffs = {attr: format_utc_micros(moment - timedelta(days=days))
                       for attr, days in settings.items()}
            default_cutoff = (None if default_days is None else
                              format_utc_micros(moment - timedelta(days=default_days)))
            deleted += await self.store.purge_history(tenant, cutoffs, default_cutoff)
        return deleted

    def start(self) -> None:
        """Start the background purge (every ``purge_interval_s``)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._purge_loop())

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(self.purge_interval_s)
            try:
                if await self.store.leader("retention"):  # one worker purges for all
                    await self.purge()
            except Exception:  # keep purging later; never kill the server
                LOG.exception("temporal retention purge failed")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None


def _window_matches(query: EntityQuery, entity: dict[str, Any]) -> bool:
    """``q`` and the geo-query on an entity holding the windowed instances of its attributes
    (any instance may satisfy a term, as any datasetId instance does for the current state)."""
    if query.q is not None and not q_language.evaluate(query.q, entity):
        return False
    geo = query.geo
    return geo is None or any(
        instance.get("type") == "GeoProperty" and geo_predicates.matches(geo, instance.get("value"))
        for instance in entity["attrs"].get(geo.geoproperty, ()))


def _scope_pairs(body: dict[str, Any], terms: TermMap,
                 now: str) -> list[tuple[str, dict[str, Any]]]:
    """The Scope of a temporal fragment (clause 4.5.6): its instances (Property instances
    whose value is a scope or a list of scopes), or the scope itself, one instance at
    ``now``."""
    if "scope" not in body:
        return []
    raw = body["scope"]
    items = raw if isinstance(raw, list) and all(isinstance(i, dict) for i in raw) and raw \
        else [raw]
    pairs = []
    for item in items:
        if not isinstance(item, dict):
            pairs.append((SCOPE_IRI, scope_instance(expand_scope(item), now)))
            continue
        instance = expand_instance(SCOPE_IRI, item, terms, now, "scope", deletion=True)
        if instance["type"] != "Property":
            raise BadRequestData("A Scope instance is a Property (clause 4.5.6)")
        if instance["value"] != NULL:
            scope = expand_scope(instance["value"])
            instance["value"] = scope[0] if len(scope) == 1 else scope
        pairs.append((SCOPE_IRI, instance))
    return pairs


def _refuse_linked_q(q: str | None) -> None:
    """Clause 5.7.4.4: the values filter of a temporal query is judged on the entities' own
    attribute instances; a term on a linked entity (``owner{name}==...``) is BadRequestData."""
    if q is not None and "{" in re.sub(r'"(?:[^"\\]|\\.)*"', "", q):
        raise BadRequestData(f"q of a temporal query cannot filter on linked entities: {q!r}")


def _with_type(body: object, current: dict[str, Any]) -> object:
    """A concise fragment ({"value": ...}) keeps the instance's type."""
    if isinstance(body, dict) and "type" not in body:
        member = VALUE_MEMBER[current["type"]]
        if member in body:
            return {"type": current["type"], **body}
    if not isinstance(body, dict):
        return {"type": current["type"], VALUE_MEMBER[current["type"]]: body}
    return body


def _attr_set(attrs: str | None, terms: TermMap) -> frozenset[str] | None:
    if attrs is None:
        return None
    names = [a.strip() for a in attrs.split(",")]
    if not all(names):
        raise BadRequestData(f"Parameter attrs has an empty item: {attrs!r}")
    return frozenset(terms.expand(n) for n in names)


# ---------------------------------------------------------------------------- CLI support


def expand_attribute(name: str) -> str:
    """An attribute name for the CLI: an absolute IRI as is, a term with the core context."""
    from cityvisor.broker.contexts import core_context_document
    from cityvisor.ngsild.context import compile_context

    check_name(name)
    return compile_context([], core_context_document()["@context"]).expand(name)


__all__ = ["Projection", "TemporalBroker", "TemporalQuery", "TemporalResult",
           "changes_to_records", "expand_attribute"]
