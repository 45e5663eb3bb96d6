"""In-memory backend of the store ports (tests, throw-away brokers), with the SQLite backend's
semantics: the contract suite ``tests/store/test_contract.py`` runs on both.

- Every tenant has two states. ``stage`` validates a whole batch first (an error leaves
  everything unchanged: ``AlreadyExists``, an unknown record type, an unusable GeoJSON value),
  applies it to the *working* state at once and queues it; on the next turn of the event loop
  the tenant's queued batches are replayed onto the *committed* state (one group commit, as
  in SQLite), which completes the awaitables ``stage`` returned. Replay is deterministic (ids
  are counters of the state): both states are equal once committed.
- Reads that see staged changes use the working state (``get``, ``get_many``,
  ``attribute_stats``, ``subscriptions``, ``retention``, ``staged=True`` temporal reads); the
  others the committed one (``query``, temporal queries, outbox readers).
- Entities are kept as JSON text, as SQLite keeps them: reads return fresh copies.
- The side records of a ``stage`` call apply in their order, after its entity changes;
  ``set_retention`` writes both states at once; ``purge_history`` is one staged batch.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, TypeVar

import orjson

from cityvisor.ngsild import geo as geo_predicates
from cityvisor.ngsild import ordering, scopequery
from cityvisor.ngsild import query as q_language
from cityvisor.ngsild.errors import AlreadyExists
from cityvisor.ngsild.model import entity_expiry
from cityvisor.ngsild.tenants import check_tenant
from cityvisor.store import records as rec
from cityvisor.store.base import (
    AttributeStat,
    Buckets,
    Entity,
    EntityQuery,
    OutboxReader,
    QueryResult,
    Store,
    SystemStore,
    TimeFilter,
    WriteOp,
)
from cityvisor.store.rechecks import selected

Box = tuple[float, float, float, float]
T = TypeVar("T")
#: time property of a temporal query -> the row field it reads
_TIME_FIELDS = {"observedAt": "observed_at", "createdAt": "created_at",
                "modifiedAt": "modified_at", "deletedAt": "deleted_at"}
#: the members of a stored instance that hold its value, in the order ``distinctCount`` looks
_VALUE_MEMBERS = ("value", "object", "languageMap", "valueList", "objectList", "json", "vocab")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class _Doc(NamedTuple):
    """A stored entity: its JSON text (copied out on reads), parsed once for the filters."""

    data: bytes
    entity: Entity
    types: frozenset[str]
    boxes: tuple[tuple[str, Box], ...]  # (attribute, box) of every GeoProperty instance
    expires: str | None  # the first expiresAt in the entity (clause 4.22)


class _Row(NamedTuple):
    """One recorded attribute instance (``num`` a float, as in a REAL column)."""

    instance_id: int
    entity: str
    attr: str
    dataset_id: str
    observed_at: str
    created_at: str
    modified_at: str
    deleted_at: str | None
    num: float | None
    value: str

    def history(self) -> rec.HistoryRow:
        return rec.HistoryRow(self.instance_id, *self[2:8], self.value)


class _Mail(NamedTuple):
    """An outbox row; ``next_attempt_at`` 0 means never tried."""

    row: rec.OutboxRow
    next_attempt_at: float


class _Gone(NamedTuple):
    """A prepared change: the entity goes."""

    entity_id: str


class _Purged(NamedTuple):
    """A prepared change: these instances go."""

    instance_ids: tuple[int, ...]


@dataclass
class _State:
    """Everything one tenant holds (its working or its committed copy)."""

    entities: dict[str, _Doc] = field(default_factory=dict)  # insertion order
    temporal: dict[str, rec.TemporalEntity] = field(default_factory=dict)  # creation order
    series: dict[str, dict[str, dict[int, _Row]]] = field(default_factory=dict)
    places: dict[int, tuple[str, str]] = field(default_factory=dict)  # instance -> series
    next_instance: int = 1
    subscriptions: dict[str, rec.StoredSubscription] = field(default_factory=dict)
    outbox: dict[int, _Mail] = field(default_factory=dict)  # id order
    next_outbox: int = 1
    retention: dict[str, int] = field(default_factory=dict)
    expiries: dict[str, str] = field(default_factory=dict)  # transient entity id -> expiry
    entity_maps: dict[str, rec.StoredEntityMap] = field(default_factory=dict)

    def apply(self, change: object) -> None:
        """Apply one prepared change (``_Doc``, ``_Gone``, ``_Purged``) or side record.

        Never fails, and depends on nothing but the state: replaying the changes applied to
        the working state onto the committed one gives the same state (and the same ids)."""
        match change:
            case _Doc():
                self.entities[change.entity["id"]] = change  # an update keeps its place
                if change.expires is not None:
                    self.expiries[change.entity["id"]] = change.expires
                else:
                    self.expiries.pop(change.entity["id"], None)
            case _Gone():
                self.entities.pop(change.entity_id, None)
                self.expiries.pop(change.entity_id, None)
            case rec.InstanceRecord():
                if change.entity not in self.temporal:  # before its EntityRecord
                    self.temporal[change.entity] = rec.TemporalEntity(
                        change.entity, (change.entity_type,), change.created_at,
                        change.created_at)
                number = self.next_instance
                self.next_instance += 1
                self.series.setdefault(change.entity, {}).setdefault(change.attr, {})[
                    number] = _Row(number, change.entity, *change[2:8], _real(change.num),
                                   change.value)
                self.places[number] = (change.entity, change.attr)
            case rec.EntityRecord():
                self._put_temporal(change)
            case rec.EntityTouched():
                if change.entity in self.temporal:
                    self.temporal[change.entity] = replace(self.temporal[change.entity],
                                                           modified_at=change.modified_at)
            case rec.HistoryDeleted():
                self.temporal.pop(change.entity, None)
                for rows in self.series.pop(change.entity, {}).values():
                    for number in rows:
                        del self.places[number]
            case rec.AttributeHistoryDeleted():
                rows = self.series.get(change.entity, {}).get(change.attr, {})
                self._forget(n for n, row in rows.items()
                             if change.dataset_id in (None, row.dataset_id))
            case rec.InstanceModified():
                place = self.places.get(change.instance_id)
                if place is not None:
                    rows = self.series[place[0]][place[1]]
                    rows[change.instance_id] = rows[change.instance_id]._replace(
                        observed_at=change.observed_at, modified_at=change.modified_at,
                        num=_real(change.num), value=change.value)
            case rec.InstanceDeleted():
                self._forget((change.instance_id,))
            case _Purged():
                self._forget(change.instance_ids)
            case rec.SubscriptionPut():
                current = self.subscriptions.get(change.id)
                self.subscriptions[change.id] = (
                    rec.StoredSubscription(change.id, change.doc, change.context)
                    if current is None else replace(current, doc=change.doc,
                                                    context=change.context))
            case rec.SubscriptionDelete():
                self.subscriptions.pop(change.id, None)
                for number in [n for n, mail in self.outbox.items()
                               if mail.row.subscription == change.id]:
                    del self.outbox[number]
            case rec.SubscriptionStatus():
                if change.id in self.subscriptions:
                    self.subscriptions[change.id] = self.subscriptions[change.id].counted(
                        change)
            case rec.OutboxRecord():
                number = self.next_outbox
                self.next_outbox += 1
                self.outbox[number] = _Mail(rec.OutboxRow(
                    number, change.subscription, change.endpoint, change.target,
                    change.payload, change.created_at, 0), 0.0)
            case rec.OutboxDone():
                self.outbox.pop(change.id, None)
            case rec.OutboxRetry():
                mail = self.outbox.get(change.id)
                if mail is not None:
                    self.outbox[change.id] = _Mail(replace(mail.row, attempts=change.attempts),
                                                   change.next_attempt_at)
            case rec.EntityMapPut():
                self.entity_maps[change.entity_map.id] = change.entity_map
            case rec.EntityMapDelete():
                self.entity_maps.pop(change.id, None)
            case rec.EntityMapsExpired():
                for map_id in [i for i, m in self.entity_maps.items()
                               if m.expires_at <= change.until]:
                    del self.entity_maps[map_id]
            case _:
                raise TypeError(f"{type(change).__name__} is not a store record")

    def _put_temporal(self, r: rec.EntityRecord) -> None:
        current = self.temporal.get(r.entity)
        if r.deleted_at is not None:
            if current is not None:
                self.temporal[r.entity] = replace(current, modified_at=r.deleted_at,
                                                  deleted_at=r.deleted_at)
        elif current is None:
            self.temporal[r.entity] = rec.TemporalEntity(r.entity, tuple(r.types),
                                                         r.created_at, r.modified_at)
        else:
            self.temporal[r.entity] = replace(current, types=tuple(r.types),
                                              modified_at=r.modified_at, deleted_at=None)

    def _forget(self, numbers: Iterable[int]) -> None:
        """Drop recorded instances (those that exist)."""
        for number in list(numbers):
            place = self.places.pop(number, None)
            if place is None:
                continue
            attrs = self.series[place[0]]
            del attrs[place[1]][number]
            if not attrs[place[1]]:
                del attrs[place[1]]
            if not attrs:
                del self.series[place[0]]


@dataclass
class _Pending:
    changes: list[object]
    committed: asyncio.Future[None]


# ---------------------------------------------------------------------------- changes


def _real(number: float | None) -> float | None:
    return None if number is None else float(number)


def _document(entity: Entity) -> _Doc:
    """The stored form of an entity; raises for what SQLite refuses to store as well."""
    data = orjson.dumps(entity)
    parsed: Entity = orjson.loads(data)
    boxes = tuple((iri, geo_predicates.bbox(instance["value"]))
                  for iri, instances in parsed["attrs"].items() for instance in instances
                  if instance["type"] == "GeoProperty")
    return _Doc(data, parsed, frozenset(parsed["type"]), boxes, entity_expiry(parsed))


def _prepare(state: _State, ops: list[WriteOp], records: Sequence[object]) -> list[object]:
    """Validate a batch against ``state``; the changes to apply, which cannot fail."""
    changes: list[object] = []
    exists: dict[str, bool] = {}  # entity id -> present after the ops seen so far
    for op in ops:
        if op.new is None:
            if op.old is None:
                raise ValueError("A write op needs an old or a new entity")
            exists[op.old["id"]] = False
            changes.append(_Gone(op.old["id"]))
            continue
        entity_id = op.new["id"]
        present = exists.get(entity_id, entity_id in state.entities)
        if op.old is None and present:
            raise AlreadyExists(f"Entity {entity_id} already exists")
        if op.old is not None and not present:
            raise LookupError(f"Entity {entity_id} does not exist: it cannot be updated")
        exists[entity_id] = True
        changes.append(_document(op.new))
    for record in records:
        if type(record) not in rec.SIDE_RECORDS:
            raise TypeError(f"{type(record).__name__} is not a store record")
        changes.append(record)
    return changes


# ---------------------------------------------------------------------------- filters


def _geo_matches(query: geo_predicates.GeoQuery, box: Box | None, doc: _Doc) -> bool:
    """SQLite's two steps: a GeoProperty box meets the pre-filter box, then the exact test."""
    if box is not None and not any(
            iri == query.geoproperty and b[2] >= box[0] and b[0] <= box[2]
            and b[3] >= box[1] and b[1] <= box[3] for iri, b in doc.boxes):
        return False
    return any(instance["type"] == "GeoProperty"
               and geo_predicates.matches(query, instance["value"])
               for instance in doc.entity["attrs"].get(query.geoproperty, ()))


def _matches(query: EntityQuery, box: Box | None, doc: _Doc) -> bool:
    entity = doc.entity
    return (selected(query.selectors, entity["id"], doc.types)
            and (not query.attrs or any(iri in entity["attrs"] for iri in query.attrs))
            and (query.q is None or q_language.evaluate(query.q, entity))
            and (query.scope is None or scopequery.matches_scopes(query.scope,
                                                                  entity.get("scope")))
            and (query.geo is None or _geo_matches(query.geo, box, doc)))


# ---------------------------------------------------------------------------- aggregation


def _micros(time: str) -> int:
    return (datetime.fromisoformat(time) - _EPOCH) // _MICROSECOND


def _bucket(time: str, origin: str, buckets: Buckets) -> int:
    """The period number of ``time``: fixed periods or calendar months from ``origin``."""
    if buckets.period_ms is not None:
        return (_micros(time) - _micros(origin)) // (buckets.period_ms * 1000)
    if buckets.months is not None:
        months = ((int(time[:4]) * 12 + int(time[5:7])) - (int(origin[:4]) * 12
                  + int(origin[5:7])) - (time[8:] < origin[8:]))
        return months // buckets.months
    return 0


def _distinct_value(value: str) -> object:
    """What ``distinctCount`` compares: the instance's value member, JSON text if compound."""
    instance = orjson.loads(value)
    for member in _VALUE_MEMBERS:
        found = instance.get(member)
        if found is None:
            continue
        if isinstance(found, (dict, list)):
            return orjson.dumps(found).decode()
        return int(found) if isinstance(found, bool) else found
    return None


def _stddev(xs: list[float]) -> float | None:
    """The sample standard deviation, from the moments (as the SQL backends compute it)."""
    n, total = len(xs), sum(xs)
    return (math.sqrt(max(0.0, (sum(x * x for x in xs) - total * total / n) / (n - 1)))
            if n > 1 else None)


#: aggregation method -> its value over the rows of one period and their numbers
_METHODS: dict[str, Callable[[list[_Row], list[float]], object]] = {
    "totalCount": lambda rows, xs: len(rows),
    "distinctCount": lambda rows, xs: len({_distinct_value(r.value) for r in rows} - {None}),
    "sum": lambda rows, xs: sum(xs) if xs else None,
    "avg": lambda rows, xs: sum(xs) / len(xs) if xs else None,
    "min": lambda rows, xs: min(xs, default=None),
    "max": lambda rows, xs: max(xs, default=None),
    "sumsq": lambda rows, xs: sum(x * x for x in xs) if xs else None,
    "stddev": lambda rows, xs: _stddev(xs),
}


def _measure(rows: list[_Row], methods: Sequence[str]) -> list[object]:
    nums = [r.num for r in rows if r.num is not None]
    return [_METHODS[method](rows, nums) for method in methods]


def _kind(rows: dict[int, _Row]) -> str:
    """The attribute's type, from its first instance."""
    kind = orjson.loads(rows[min(rows)].value).get("type")
    return kind if isinstance(kind, str) and kind else "Property"


def _aggregate(rows: dict[int, _Row], time: TimeFilter, methods: Sequence[str],
               buckets: Buckets, origin: str | None, with_last_time: bool
               ) -> rec.AttributeAggregate | None:
    column = _TIME_FIELDS[time.timeproperty]
    live = [(getattr(r, column), r) for r in rows.values()
            if r.deleted_at is None and time.admits(getattr(r, column))]
    if not live:
        return None
    start = origin if origin is not None else min(t for t, _ in live)
    groups: dict[tuple[str, int], list[_Row]] = {}
    for t, row in live:
        groups.setdefault((row.dataset_id, _bucket(t, start, buckets)), []).append(row)
    return rec.AttributeAggregate(
        _kind(rows), start,
        [(dataset, number, *_measure(group, methods))
         for (dataset, number), group in sorted(groups.items())],
        max(t for t, _ in live) if with_last_time else None)


def _history(rows: dict[int, _Row], time: TimeFilter, limit: int) -> list[rec.HistoryRow]:
    column = _TIME_FIELDS[time.timeproperty]
    kept = sorted((r for r in rows.values() if time.admits(getattr(r, column))),
                  key=lambda r: (getattr(r, column), r.instance_id))
    if time.last_n is not None:
        count = min(limit, time.last_n)
        kept = kept[max(len(kept) - count, 0):] if count > 0 else []
    else:
        kept = kept[:max(limit, 0)]
    return [r.history() for r in kept]


# ---------------------------------------------------------------------------- the store


class _MemoryOutboxReader(OutboxReader):
    """Reads a tenant's committed outbox."""

    def __init__(self, state: _State) -> None:
        self._state = state

    async def fresh(self, after_id: int, limit: int) -> list[rec.OutboxRow]:
        rows = [mail.row for number, mail in self._state.outbox.items()
                if number > after_id and mail.next_attempt_at == 0]
        return rows[:max(limit, 0)]

    async def due(self, now: float, limit: int) -> list[rec.OutboxRow]:
        mails = sorted((mail for mail in self._state.outbox.values()
                        if 0 < mail.next_attempt_at <= now),
                       key=lambda mail: (mail.next_attempt_at, mail.row.id))
        return [mail.row for mail in mails[:max(limit, 0)]]

    async def max_id(self) -> int:
        return max(self._state.outbox, default=0)

    async def pending(self) -> int:
        return len(self._state.outbox)

    async def close(self) -> None:
        pass


class MemoryStore(Store):
    """Every tenant's data in this process's memory (see the module docstring)."""

    def __init__(self) -> None:
        self._working: dict[str | None, _State] = {}
        self._committed: dict[str | None, _State] = {}
        self._pending: dict[str | None, _Pending] = {}

    def _view(self, tenant: str | None, staged: bool) -> _State | None:
        check_tenant(tenant)
        return (self._working if staged else self._committed).get(tenant)

    def _create(self, tenant: str | None) -> _State:
        check_tenant(tenant)
        if tenant not in self._working:
            self._working[tenant] = _State()
            self._committed[tenant] = _State()
        return self._working[tenant]

    # ------------------------------------------------------------ writes

    async def stage(self, tenant: str | None, ops: list[WriteOp],
                    records: Sequence[object] = ()) -> Awaitable[None]:
        """Apply the batch to the working state now; it is committed on the next loop turn."""
        check_tenant(tenant)
        if not ops and not records:
            pending = self._pending.get(tenant)
            if pending is not None:
                return asyncio.shield(pending.committed)
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        changes = _prepare(self._working.get(tenant) or _State(), ops, records)
        return self._queue(tenant, changes)

    def _queue(self, tenant: str | None, changes: list[object]) -> Awaitable[None]:
        working = self._create(tenant)
        for change in changes:
            working.apply(change)
        pending = self._pending.get(tenant)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = self._pending[tenant] = _Pending([], loop.create_future())
            loop.call_soon(self._commit, tenant)
        pending.changes.extend(changes)
        # a shield each: a cancelled writer never cancels the others' commit
        return asyncio.shield(pending.committed)

    def _commit(self, tenant: str | None) -> None:
        pending = self._pending.pop(tenant, None)
        if pending is None:
            return
        committed = self._committed[tenant]
        for change in pending.changes:
            committed.apply(change)
        if not pending.committed.done():
            pending.committed.set_result(None)

    async def close(self) -> None:
        for tenant in list(self._pending):
            self._commit(tenant)

    # ------------------------------------------------------------ entities

    async def get(self, tenant: str | None, entity_id: str) -> Entity | None:
        state = self._view(tenant, True)
        doc = None if state is None else state.entities.get(entity_id)
        return None if doc is None else orjson.loads(doc.data)

    async def get_many(self, tenant: str | None, entity_ids: list[str]) -> dict[str, Entity]:
        state = self._view(tenant, True)
        if state is None:
            return {}
        return {entity_id: orjson.loads(state.entities[entity_id].data)
                for entity_id in dict.fromkeys(entity_ids) if entity_id in state.entities}

    async def next_expiry(self, tenant: str | None) -> str | None:
        state = self._view(tenant, True)
        return min(state.expiries.values()) if state is not None and state.expiries else None

    async def expiring(self, tenant: str | None, until: str) -> list[Entity]:
        state = self._view(tenant, True)
        if state is None:
            return []
        due = sorted((at, i) for i, at in state.expiries.items() if at <= until)
        return [orjson.loads(state.entities[i].data) for _, i in due]

    async def query(self, tenant: str | None, query: EntityQuery) -> QueryResult:
        state = self._view(tenant, False)
        if state is None:
            return QueryResult([], 0 if query.count else None)
        box = None if query.geo is None else geo_predicates.prefilter_bbox(query.geo)
        if query.order is not None:
            found = [doc for doc in state.entities.values() if _matches(query, box, doc)]
            docs = ordering.page(found, lambda d: d.entity, query.order, query.offset,
                                 query.limit)
            return QueryResult([orjson.loads(d.data) for d in docs],
                               len(found) if query.count else None)
        matched: list[Entity] = []
        total = 0
        stop = query.offset + query.limit
        for doc in state.entities.values():
            if not _matches(query, box, doc):
                continue
            if query.offset <= total < stop:
                matched.append(orjson.loads(doc.data))
            total += 1
            if total >= stop and not query.count:
                break
        return QueryResult(matched, total if query.count else None)

    async def attribute_stats(self, tenant: str | None) -> list[AttributeStat]:
        state = self._view(tenant, True)
        counts: Counter[tuple[str, str, str]] = Counter()
        for doc in () if state is None else state.entities.values():
            entity = doc.entity
            kinds = {(iri, instance["type"]) for iri, instances in entity["attrs"].items()
                     for instance in instances}
            for entity_type in ("", *entity["type"]):
                counts[(entity_type, "", "")] += 1
                for iri, kind in kinds:
                    counts[(entity_type, iri, kind)] += 1
        return [AttributeStat(*key, count) for key, count in sorted(counts.items()) if count]

    async def has_tenant(self, tenant: str | None) -> bool:
        check_tenant(tenant)
        return tenant is None or tenant in self._working

    async def tenants(self) -> list[str]:
        return sorted(tenant for tenant in self._working if tenant is not None)

    # ------------------------------------------------------------ temporal history

    async def temporal_entities(self, tenant: str | None, ids: Sequence[str], *,
                                staged: bool = False) -> dict[str, rec.TemporalEntity]:
        state = self._view(tenant, staged)
        if state is None:
            return {}
        return {entity_id: state.temporal[entity_id] for entity_id in ids
                if entity_id in state.temporal}

    async def select_temporal_entities(self, tenant: str | None, query: EntityQuery
                                       ) -> tuple[list[rec.TemporalEntity], int | None]:
        state = self._view(tenant, False)
        if state is None:
            return [], 0 if query.count else None
        found = [entity for entity in state.temporal.values()
                 if selected(query.selectors, entity.id, set(entity.types))
                 and (not query.attrs or any(iri in state.series.get(entity.id, {})
                                             for iri in query.attrs))]
        page = found[query.offset:query.offset + query.limit] if query.limit > 0 else []
        return page, len(found) if query.count else None

    async def has_history(self, tenant: str | None, entity: str, attr: str,
                          dataset_id: str | None, *, staged: bool = False) -> bool:
        state = self._view(tenant, staged)
        rows = {} if state is None else state.series.get(entity, {}).get(attr, {})
        return any(dataset_id is None or row.dataset_id == dataset_id for row in rows.values())

    async def history_instance(self, tenant: str | None, entity: str, attr: str,
                               instance_id: int, *, staged: bool = False) -> rec.HistoryRow | None:
        state = self._view(tenant, staged)
        if state is None or state.places.get(instance_id) != (entity, attr):
            return None
        return state.series[entity][attr][instance_id].history()

    async def histories(self, tenant: str | None, ids: Sequence[str],
                        attrs: frozenset[str] | None, time: TimeFilter, limit: int
                        ) -> dict[str, dict[str, list[rec.HistoryRow]]]:
        return self._per_attribute(tenant, ids, attrs,
                                   lambda rows: _history(rows, time, limit) or None)

    async def aggregate_histories(self, tenant: str | None, ids: Sequence[str],
                                  attrs: frozenset[str] | None, time: TimeFilter,
                                  methods: Sequence[str], buckets: Buckets,
                                  origin: str | None, with_last_time: bool
                                  ) -> dict[str, dict[str, rec.AttributeAggregate]]:
        return self._per_attribute(tenant, ids, attrs, lambda rows: _aggregate(
            rows, time, methods, buckets, origin, with_last_time))

    def _per_attribute(self, tenant: str | None, ids: Sequence[str],
                       attrs: frozenset[str] | None,
                       compute: Callable[[dict[int, _Row]], T | None]
                       ) -> dict[str, dict[str, T]]:
        """entity -> attribute -> what ``compute`` makes of its rows (left out if None), in
        the committed state; every id is a key (as in SQLite), attributes in IRI order."""
        state = self._view(tenant, False)
        out: dict[str, dict[str, T]] = {}
        if state is None:
            return out
        for entity_id in ids:
            found = out[entity_id] = {}
            series = state.series.get(entity_id, {})
            for attr in sorted(series):
                result = None if attrs is not None and attr not in attrs else compute(
                    series[attr])
                if result is not None:
                    found[attr] = result
        return out

    async def retention(self, tenant: str | None) -> dict[str, int]:
        state = self._view(tenant, True)
        return {} if state is None else dict(sorted(state.retention.items()))

    async def set_retention(self, tenant: str | None, attr: str, days: int | None) -> None:
        self._create(tenant)
        for state in (self._working[tenant], self._committed[tenant]):
            if days is None:
                state.retention.pop(attr, None)
            else:
                state.retention[attr] = days

    async def purge_history(self, tenant: str | None, cutoffs: dict[str, str],
                            default_cutoff: str | None) -> int:
        state = self._view(tenant, True)
        if state is None:
            return 0
        numbers: list[int] = []
        for attrs in state.series.values():
            for attr, rows in attrs.items():
                cutoff = cutoffs.get(attr, default_cutoff)
                if cutoff is not None:
                    numbers.extend(n for n, row in rows.items() if row.observed_at < cutoff)
        if numbers:
            await self._queue(tenant, [_Purged(tuple(numbers))])
        return len(numbers)

    # ------------------------------------------------------------ subscriptions

    async def subscriptions(self, tenant: str | None) -> list[rec.StoredSubscription]:
        state = self._view(tenant, True)
        return [] if state is None else list(state.subscriptions.values())

    async def subscription(self, tenant: str | None, sub_id: str
                           ) -> rec.StoredSubscription | None:
        state = self._view(tenant, True)
        return None if state is None else state.subscriptions.get(sub_id)

    async def outbox_reader(self, tenant: str | None) -> OutboxReader:
        self._create(tenant)
        return _MemoryOutboxReader(self._committed[tenant])

    # ------------------------------------------------------------ entity maps

    async def entity_map(self, tenant: str | None, map_id: str) -> rec.StoredEntityMap | None:
        state = self._view(tenant, True)
        return None if state is None else state.entity_maps.get(map_id)


class MemorySystemStore(SystemStore):
    """The @contexts and tokens of a broker, in memory."""

    def __init__(self) -> None:
        self._contexts: dict[str, rec.StoredContext] = {}  # local id -> context
        self._tokens: dict[str, rec.StoredToken] = {}

    async def context(self, *, local_id: str | None = None, url: str | None = None
                ) -> rec.StoredContext | None:
        for context in self._contexts.values():
            if ((local_id is None or context.local_id == local_id)
                    and (url is None or context.url == url)):
                return context
        return None

    async def put_context(self, context: rec.StoredContext) -> None:
        same_url = await self.context(url=context.url)
        if same_url is not None:
            self._contexts[same_url.local_id] = replace(same_url, document=context.document,
                                                        kind=context.kind)
        elif context.local_id in self._contexts:
            raise AlreadyExists(f"A context with local id {context.local_id} already exists")
        else:
            self._contexts[context.local_id] = context

    async def contexts(self) -> list[rec.StoredContext]:
        return sorted(self._contexts.values(), key=lambda context: context.created_at)

    async def delete_context(self, local_id: str) -> bool:
        return self._contexts.pop(local_id, None) is not None

    async def add_token(self, token: rec.StoredToken) -> None:
        if token.token_id in self._tokens:
            raise AlreadyExists(f"A token with id {token.token_id} already exists")
        self._tokens[token.token_id] = token

    async def token(self, token_id: str) -> rec.StoredToken | None:
        return self._tokens.get(token_id)

    async def revoke_token(self, token_id: str, at: str) -> bool:
        token = self._tokens.get(token_id)
        if token is None or token.revoked_at is not None:
            return False
        self._tokens[token_id] = replace(token, revoked_at=at)
        return True

    async def tokens(self) -> list[rec.StoredToken]:
        return sorted(self._tokens.values(), key=lambda token: token.created_at)

    async def close(self) -> None:
        pass


__all__ = ["MemoryStore", "MemorySystemStore"]
