"""PostgreSQL/PostGIS backend of the store ports (``docs/postgresql.md``); the entities.

Driver: asyncpg (Apache-2.0, binary protocol, its own connection pool); install it with the
``postgresql`` extra. Layout of the entity tables of a tenant schema (created by
``postgres_migrations``; the temporal history is in ``postgres_temporal``, subscriptions and
the outbox in ``postgres_subscriptions``, entity maps in ``postgres_entity_maps``):

- ``entities``: one row per entity: ``seq`` (insertion order), id, the first type (index
  ``(type, seq)``: a type page stops after ``LIMIT`` rows), every type (``text[]``, GIN), the
  stored form as JSONB (``doc``, which the q translation of ``postgres_q`` reads), timestamps
  and the first ``expiresAt`` (partial index: the expiry look-ups of clause 4.22).
- ``entity_geo``: one PostGIS ``geometry(Geometry, 4326)`` per GeoProperty instance, GiST
  index: every geo-query (clause 4.10) runs in SQL; distances on the sphere (geography,
  ``use_spheroid => false``: the radius the ``ngsild.geo`` evaluator uses).
- ``attribute_counts``: append-only deltas of the ``attribute_stats`` counts, summed on read
  and compacted now and then, so that concurrent writers never wait on a counter row.

JSONB keeps no key order and writes numbers in canonical decimal form: an entity read back
equals the one written (``==``), its members may come in another order.

Writes: ``stage`` runs in the tenant's group transaction (``postgres_connections``); batches
of inserts, updates and deletes go in one statement each (``unnest`` of arrays). Several
processes may share the database, so every update and delete applies only where the stored
document still equals the op's ``old`` (``doc = old::jsonb``), and an insert only where no
entity has the id: otherwise ``StaleWrite`` and the writer's savepoint is rolled back (the
other writers of the group commit).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
import shapely

from cityvisor.ngsild import geo as geo_predicates
from cityvisor.ngsild import ordering, typequery
from cityvisor.ngsild.errors import BadRequestData
from cityvisor.ngsild.model import entity_expiry
from cityvisor.ngsild.tenants import check_tenant
from cityvisor.store.attribute_counts import stats_delta
from cityvisor.store.base import (
    AttributeStat,
    Entity,
    EntityQuery,
    QueryResult,
    StaleWrite,
    Store,
    WriteOp,
)
from cityvisor.store.postgres_connections import TenantSchemas
from cityvisor.store.postgres_entity_maps import WRITERS as ENTITY_MAP_WRITERS
from cityvisor.store.postgres_entity_maps import EntityMapTables
from cityvisor.store.postgres_errors import ACQUIRE_TIMEOUT_S, outages_as_unavailable
from cityvisor.store.postgres_leaders import Leaders
from cityvisor.store.postgres_q import Params, posix_pattern, q_sql, selectors_sql
from cityvisor.store.postgres_subscriptions import FOLD_AFTER, SubscriptionTables
from cityvisor.store.postgres_subscriptions import WRITERS as SUBSCRIPTION_WRITERS
from cityvisor.store.postgres_temporal import WRITERS as TEMPORAL_WRITERS
from cityvisor.store.postgres_temporal import TemporalTables, partition_months
from cityvisor.store.rechecks import rechecked, scoped, selected
from cityvisor.store.records import SubscriptionStatus
from cityvisor.store.sql_selection import order_columns, scope_selection_sql, type_selection_sql

Writer = Callable[[asyncpg.Connection, str, list[Any]], Awaitable[None]]
#: side record type -> ``writer(conn, schema, records)``, run in ``stage``'s transaction
RECORD_WRITERS: dict[type, Writer] = {**TEMPORAL_WRITERS, **SUBSCRIPTION_WRITERS,
                                      **ENTITY_MAP_WRITERS}
#: entity members with a column of their own (text in code point order: COLLATE "C")
MEMBER_COLUMNS = {"id": "e.id", "createdAt": "e.created_at", "modifiedAt": "e.modified_at"}
#: attribute_counts rows written by this process before it compacts them
COMPACT_AFTER = 20_000
#: after a write of an entity is refused (``StaleWrite``), its next read within this many
#: seconds (the retry's) locks its row
CONTENDED_S = 2.0

_INSERT = """
INSERT INTO {s}.entities (id, type, types, doc, created_at, modified_at, expires_at)
SELECT d->>'id', d->'type'->>0, ARRAY(SELECT jsonb_array_elements_text(d->'type')), d,
       d->>'createdAt', d->>'modifiedAt', x
FROM (SELECT t.doc::jsonb AS d, t.x, t.n FROM unnest($1::text[], $2::text[])
      WITH ORDINALITY AS t(doc, x, n)) u ORDER BY u.n
RETURNING seq, id"""
#: an update applies only where the stored document still equals ``old`` (JSONB equality:
#: members in any order, numbers by value); a row changed by a transaction in flight is
#: waited for, then compared in its committed form (READ COMMITTED re-checks the WHERE)
_UPDATE = """
UPDATE {s}.entities e SET type = u.d->'type'->>0,
       types = ARRAY(SELECT jsonb_array_elements_text(u.d->'type')), doc = u.d,
       modified_at = u.d->>'modifiedAt', expires_at = u.x
FROM (SELECT t.id, t.doc::jsonb AS d, t.x, t.old::jsonb AS o
      FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS t(id, doc, x, old)) u
WHERE e.id = u.id AND e.doc = u.o RETURNING e.seq, e.id"""
_DELETE = """
DELETE FROM {s}.entities e
USING (SELECT t.id, t.old::jsonb AS o FROM unnest($1::text[], $2::text[]) AS t(id, old)) u
WHERE e.id = u.id AND e.doc = u.o RETURNING e.seq, e.id"""


def load(text: str) -> Any:
    """A JSON document read back (JSONB writes integers beyond 64 bits that orjson refuses)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _geo_values(entity: Entity | None) -> list[tuple[str, str]]:
    """(attribute, GeoJSON text) of every GeoProperty instance; raises BadRequestData for an
    unusable geometry (as the other backends do, before anything is written)."""
    if entity is None:
        return []
    found = []
    for iri, instances in entity["attrs"].items():
        for instance in instances:
            if instance["type"] == "GeoProperty":
                geo_predicates.bbox(instance["value"])
                found.append((iri, orjson.dumps(instance["value"]).decode()))
    return found


def _runs(ops: list[WriteOp]) -> list[tuple[str, list[WriteOp]]]:
    """Consecutive ops of one kind (insert, update, delete), an entity at most once per run:
    each run is one statement, and the order of the ops is kept."""
    runs: list[tuple[str, list[WriteOp]]] = []
    seen: set[str] = set()
    for op in ops:
        if op.new is None and op.old is None:
            raise ValueError("A write op needs an old or a new entity")
        kind = "insert" if op.old is None else "delete" if op.new is None else "update"
        entity_id = (op.new or op.old or {})["id"]
        if not runs or runs[-1][0] != kind or entity_id in seen:
            runs.append((kind, []))
            seen = set()
        runs[-1][1].append(op)
        seen.add(entity_id)
    return runs


@dataclass(frozen=True)
class _Prepared:
    """What the statements need of one op, computed before the op waits for the connection:
    the JSON texts, the first expiry and the GeoProperty values (old and new)."""

    entity_id: str
    new_text: str | None
    old_text: str | None
    expiry: str | None
    old_geo: list[tuple[str, str]]
    new_geo: list[tuple[str, str]]

    @classmethod
    def of(cls, op: WriteOp) -> _Prepared:
        """Raises BadRequestData for an unusable geometry, before anything is written."""
        if op.new is None and op.old is None:
            raise ValueError("A write op needs an old or a new entity")
        return cls((op.new or op.old or {})["id"],
                   orjson.dumps(op.new).decode() if op.new is not None else None,
                   orjson.dumps(op.old).decode() if op.old is not None else None,
                   entity_expiry(op.new) if op.new is not None else None,
                   _geo_values(op.old), _geo_values(op.new))


@dataclass(eq=False)
class _ReadBatch:
    """The entity reads of one turn of the event loop (``PostgresStore._committed_docs``)."""

    done: asyncio.Future[dict[str, str]]
    ids: set[str] = field(default_factory=set)


@dataclass(eq=False)
class _Part:
    """One ``stage`` call, applied in a group transaction with the others of its turn."""

    schema: str
    ops: list[WriteOp]
    prepared: dict[int, _Prepared]  # id(op) -> its statements' values
    records: Sequence[object]


def _note_staged(group: Any, part: _Part) -> None:
    """Keep the entities the part staged (their JSON text, None if deleted) in the group, for
    ``get_many``."""
    for op in part.ops:
        ready = part.prepared[id(op)]
        group.staged[ready.entity_id] = ready.new_text


@outages_as_unavailable
class PostgresStore(TemporalTables, SubscriptionTables, EntityMapTables, Leaders, TenantSchemas,
                    Store):
    """``Store`` on PostgreSQL/PostGIS: one schema per tenant (see the module docstring).

    Build it with ``postgres_database.open_postgres``; it uses the pool it is given (and
    closes it with itself when ``owns_pool``)."""

    refuses_stale_writes = True

    def __init__(self, pool: asyncpg.Pool, namespace: str = "ngsild", *,
                 owns_pool: bool = False) -> None:
        super().__init__(pool, namespace)
        self._owns_pool = owns_pool
        self._multi_typed: dict[str, bool] = {}
        self._written_counts: Counter[str] = Counter()
        self._written_statuses: Counter[str] = Counter()
        #: (schema, entity id) -> until when a read of the entity locks it (``get_many``)
        self._contended: dict[tuple[str, str], float] = {}
        #: schema -> the entity reads gathering in this turn of the event loop
        self._reads: dict[str, _ReadBatch] = {}

    # ------------------------------------------------------------------ reads

    async def get(self, tenant: str | None, entity_id: str) -> Entity | None:
        return (await self.get_many(tenant, [entity_id])).get(entity_id)

    async def get_many(self, tenant: str | None, entity_ids: list[str]) -> dict[str, Entity]:
        schema = await self._schema(tenant)
        if not entity_ids or schema is None:
            return {}
        ids = list(dict.fromkeys(entity_ids))
        if self._contended and self._take_contended(schema, ids):
            return await self._get_for_update(tenant, schema, ids)
        found: dict[str, Entity] = {}
        unstaged = self._staged_entities(tenant, ids, found)
        if unstaged:
            texts = await self._committed_docs(schema, unstaged)
            found.update((entity_id, load(texts[entity_id]))
                         for entity_id in unstaged if entity_id in texts)
        return {entity_id: found[entity_id] for entity_id in ids if entity_id in found}

    def _committed_docs(self, schema: str, ids: list[str]) -> asyncio.Future[dict[str, str]]:
        """The committed documents (JSON text) of ``ids``: the reads asked for in one turn
        of the event loop share one query (the writers of a turn each read their entity)."""
        batch = self._reads.get(schema)
        if batch is None:
            batch = self._reads[schema] = _ReadBatch(asyncio.get_running_loop().create_future())
            asyncio.get_running_loop().call_soon(self._spawn, self._read_batch(schema, batch))
        batch.ids.update(ids)
        return asyncio.shield(batch.done)

    async def _read_batch(self, schema: str, batch: _ReadBatch) -> None:
        if self._reads.get(schema) is batch:
            del self._reads[schema]
        try:
            async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                rows = await conn.fetch(
                    f"SELECT id, doc FROM {schema}.entities WHERE id = ANY($1)", list(batch.ids))
        except BaseException as error:
            batch.done.set_exception(error)
            batch.done.exception()  # retrieved: callers that gave up log nothing
            if not isinstance(error, Exception):
                raise
        else:
            batch.done.set_result({row["id"]: row["doc"] for row in rows})

    def _staged_entities(self, tenant: str | None, ids: list[str], found: dict[str, Entity]
                         ) -> list[str]:
        """Put in ``found`` the entities of ``ids`` that this process staged and has not seen
        committed yet (in the open group, or the one committing); return the other ids, whose
        committed state any connection reads (another process's changes of them are caught
        at the write: ``StaleWrite``)."""
        groups = [g for g in (self._groups.get(tenant), self._committing.get(tenant))
                  if g is not None and g.staged]
        if not groups:
            return ids
        unstaged = []
        for entity_id in ids:
            for group in groups:
                if entity_id in group.staged:
                    text = group.staged[entity_id]
                    if text is not None:
                        found[entity_id] = load(text)
                    break
            else:
                unstaged.append(entity_id)
        return unstaged

    def _take_contended(self, schema: str, ids: list[str]) -> bool:
        """Whether one of ``ids`` had a write refused lately (then forget it: one read for
        update per refusal, the retry's)."""
        now = time.monotonic()
        found = False
        for entity_id in ids:
            until = self._contended.pop((schema, entity_id), None)
            found = found or (until is not None and until > now)
        return found

    async def _get_for_update(self, tenant: str | None, schema: str, ids: list[str]
                              ) -> dict[str, Entity]:
        """Read in the tenant's group transaction with the rows locked (``FOR UPDATE``) until
        it commits: the retry of a refused write queues on the row lock behind the other
        processes' writers instead of racing them again (PostgreSQL grants a row's lock to
        its waiters in turn), so a process that keeps writing an entity never starves the
        others."""
        found: dict[str, Entity] = {}

        async def read(conn: asyncpg.Connection) -> None:
            try:
                rows = await conn.fetch(f"SELECT id, doc FROM {schema}.entities "
                                        "WHERE id = ANY($1) ORDER BY id FOR UPDATE", ids)
            except asyncpg.DeadlockDetectedError as error:
                raise StaleWrite(f"The read waited on another writer: {error}") from None
            found.update((row["id"], load(row["doc"])) for row in rows)

        await self._in_group(tenant, read)  # committed with the write that follows
        return found

    def _refused(self, schema: str, ids: list[str]) -> None:
        """Remember entities whose write was refused: their next read locks them."""
        until = time.monotonic() + CONTENDED_S
        if len(self._contended) > 10_000:
            self._contended.clear()  # a bound, in case the retries never came
        self._contended.update(((schema, entity_id), until) for entity_id in ids)

    async def next_expiry(self, tenant: str | None) -> str | None:
        schema = await self._schema(tenant)
        if schema is None:
            return None
        async with self._reading(tenant, True) as conn:
            found: str | None = await conn.fetchval(
                f"SELECT min(expires_at) FROM {schema}.entities WHERE expires_at IS NOT NULL")
        return found

    async def expiring(self, tenant: str | None, until: str) -> list[Entity]:
        schema = await self._schema(tenant)
        if schema is None:
            return []
        async with self._reading(tenant, True) as conn:
            rows = await conn.fetch(
                f"SELECT doc FROM {schema}.entities WHERE expires_at IS NOT NULL AND "
                "expires_at <= $1 ORDER BY expires_at, seq", until)
        return [load(row["doc"]) for row in rows]

    async def attribute_stats(self, tenant: str | None) -> list[AttributeStat]:
        schema = await self._schema(tenant)
        if schema is None:
            return []
        async with self._reading(tenant, True) as conn:
            rows = await conn.fetch(
                f"SELECT type, attr, kind, sum(delta) AS n FROM {schema}.attribute_counts "
                "GROUP BY type, attr, kind HAVING sum(delta) > 0 ORDER BY type, attr, kind")
        return [AttributeStat(r["type"], r["attr"], r["kind"], int(r["n"])) for r in rows]

    async def query(self, tenant: str | None, query: EntityQuery) -> QueryResult:
        schema = await self._schema(tenant)
        if schema is None:
            return QueryResult([], 0 if query.count else None)
        try:
            async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                return await self._query(conn, schema, query)
        except asyncpg.DataError as error:
            raise BadRequestData(f"The query cannot be run: {error}") from None
        except asyncpg.InternalServerError as error:  # PostGIS (GEOS) refusing a geometry
            raise BadRequestData(f"The geo-query cannot be run: {error}") from None

    async def _query(self, conn: asyncpg.Connection, schema: str, query: EntityQuery
                     ) -> QueryResult:
        params = Params()
        multi_typed = await self._has_multi_typed(conn, schema)
        where, exact = self._where(schema, query, params, multi_typed)
        clause = " WHERE " + " AND ".join(where) if where else ""
        table = f"{schema}.entities e{clause}"
        args = params.values
        if query.order is not None:
            columns = order_columns(query.order, MEMBER_COLUMNS, "e.seq")
            if not (exact and columns is not None):
                return await self._ordered(conn, table, args, exact, query)
        else:
            columns = "e.seq"
        if exact:
            count = (int(await conn.fetchval(f"SELECT count(*) FROM {table}", *args))
                     if query.count else None)
            entities: list[Entity] = []
            if query.limit > 0:
                n = len(args)
                rows = await conn.fetch(f"SELECT e.doc FROM {table} ORDER BY {columns} "
                                        f"LIMIT ${n + 1} OFFSET ${n + 2}",
                                        *args, query.limit, query.offset)
                entities = [load(row["doc"]) for row in rows]
            return QueryResult(entities, count)
        matched: list[Entity] = []
        total = 0
        stop = query.offset + query.limit
        async for entity in self._candidates(conn, table, args, exact, query):
            if query.offset <= total < stop:
                matched.append(entity)
            total += 1
            if total >= stop and not query.count:
                break
        return QueryResult(matched, total if query.count else None)

    async def _candidates(self, conn: asyncpg.Connection, table: str, args: list[Any],
                          exact: bool, query: EntityQuery) -> AsyncIterator[Entity]:
        """The matching entities in insertion order, streamed from a cursor; the exact
        predicates run here on the candidates of an inexact WHERE."""
        async with conn.transaction(readonly=True):
            async for row in conn.cursor(f"SELECT e.doc FROM {table} ORDER BY e.seq", *args,
                                         prefetch=200):
                entity: Entity = load(row["doc"])
                if exact or (rechecked(query, entity) and scoped(query, entity)
                             and selected(query.selectors, entity["id"], entity["type"])):
                    yield entity

    async def _ordered(self, conn: asyncpg.Connection, table: str, args: list[Any],
                       exact: bool, query: EntityQuery) -> QueryResult:
        """An ordered page (clause 4.23) on other keys than the entity columns:
        ``ordering.page`` sorts the matches keeping only the page's worth of them."""
        assert query.order is not None
        matches = [entity async for entity in self._candidates(conn, table, args, exact, query)]
        entities = ordering.page(matches, lambda e: e, query.order, query.offset, query.limit)
        return QueryResult(entities, len(matches) if query.count else None)

    async def _has_multi_typed(self, conn: asyncpg.Connection, schema: str) -> bool:
        """Whether an entity of the tenant has several types (then type selections use the
        GIN index of every type; otherwise the (type, seq) index of the first one)."""
        if self._multi_typed.get(schema):
            return True
        found = bool(await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {schema}.entities WHERE cardinality(types) > 1)"))
        if found:
            self._multi_typed[schema] = True
        return found

    def _where(self, schema: str, query: EntityQuery, p: Params, multi_typed: bool
               ) -> tuple[list[str], bool]:
        where: list[str] = []
        sql, exact = selectors_sql(query.selectors, p, "e",
                                   lambda types: self._types_sql(types, p, multi_typed))
        if sql is not None:
            where.append(sql)
        if query.attrs:
            where.append(f"(e.doc -> 'attrs') ?| {p(sorted(query.attrs), 'text[]')}")
        if query.scope is not None:
            where.append(self._scope_sql(query, p))
        if query.q is not None:
            sql, q_exact = q_sql(query.q, p)
            where.append(sql)
            exact = exact and q_exact
        if query.geo is not None:
            where.append(self._geo_sql(schema, query.geo, p))
        return where, exact

    @staticmethod
    def _types_sql(types: typequery.TypeNode, p: Params, multi_typed: bool) -> str:
        """A type selection: the (type, seq) index of the first type when no entity of the
        tenant has several, else the GIN index of every type."""
        simple = typequery.simple_types(types)
        if simple is not None and not multi_typed:
            return f"e.type = ANY({p(simple, 'text[]')})"
        if simple is not None:
            return f"e.types && {p(simple, 'text[]')}"
        return type_selection_sql(types, lambda name: f"e.types @> ARRAY[{p(name.iri, 'text')}]")

    @staticmethod
    def _scope_sql(query: EntityQuery, p: Params) -> str:
        """Each scope expression is its anchored regular expression (``ScopeExpr.regex``,
        which ``posix_pattern`` translates exactly) tried on every scope (clause 4.19)."""
        assert query.scope is not None

        def leaf(expression: Any) -> str:
            pattern = posix_pattern(expression.regex, single_line=False)
            assert pattern is not None
            return (f"EXISTS (SELECT 1 FROM jsonb_array_elements_text(CASE WHEN "
                    f"jsonb_typeof(e.doc -> 'scope') = 'array' THEN e.doc -> 'scope' END) "
                    f"AS s(scope) WHERE s.scope ~ {p(pattern, 'text')})")

        return scope_selection_sql(query.scope, leaf)

    @staticmethod
    def _geo_sql(schema: str, geo: geo_predicates.GeoQuery, p: Params) -> str:
        """The geo-query (clause 4.10) on the GeoProperty instances of the attribute."""
        reference = (f"ST_SetSRID(ST_GeomFromGeoJSON({p(shapely.to_geojson(geo.geometry), 'text')})"
                     ", 4326)")
        tests = [f"g.attr = {p(geo.geoproperty, 'text')}"]
        box = geo_predicates.prefilter_bbox(geo)
        if box is not None:
            tests.append(f"g.geom && ST_MakeEnvelope({p(box[0], 'float8')}, {p(box[1], 'float8')}, "
                         f"{p(box[2], 'float8')}, {p(box[3], 'float8')}, 4326)")
        if geo.georel == "near":
            sphere = f"g.geom::geography, {reference}::geography"
            if geo.max_distance is not None:
                tests.append(f"ST_DWithin({sphere}, {p(geo.max_distance, 'float8')}, false)")
            if geo.min_distance is not None:
                tests.append(f"ST_Distance({sphere}, false) >= {p(geo.min_distance, 'float8')}")
        else:
            function = {"within": "ST_Within", "contains": "ST_Contains",
                        "intersects": "ST_Intersects", "disjoint": "ST_Disjoint",
                        "overlaps": "ST_Overlaps", "equals": "ST_Equals"}[geo.georel]
            tests.append(f"{function}(g.geom, {reference})")
        return (f"EXISTS (SELECT 1 FROM {schema}.entity_geo g WHERE g.entity = e.seq AND "
                + " AND ".join(tests) + ")")

    # ------------------------------------------------------------------ writes

    async def stage(self, tenant: str | None, ops: list[WriteOp],
                    records: Sequence[object] = ()) -> Awaitable[None]:
        """Apply ops and records in the tenant's group transaction (all or nothing), with
        those of the writers queued meanwhile; the group commits on the next turn of the
        event loop."""
        check_tenant(tenant)
        if not ops and not records:
            return self._pending(tenant)
        for record in records:
            if type(record) not in RECORD_WRITERS:  # its keys are records.SIDE_RECORDS
                raise TypeError(f"{type(record).__name__} is not a record this store persists")
        prepared = {id(op): _Prepared.of(op) for op in ops}
        schema = await self._schema(tenant, create=True)
        assert schema is not None
        part = _Part(schema, ops, prepared, records)
        months = partition_months(records)
        for attempt in (1, 2):
            await self._ensure_partitions(schema, months, fresh=attempt == 2)
            try:
                return await self._in_group_batched(tenant, part, self._apply, _note_staged)
            except asyncpg.CheckViolationError:
                if attempt == 2 or not months:
                    raise  # not a partition dropped by another process
        raise AssertionError("unreachable")

    async def _apply(self, conn: asyncpg.Connection, parts: list[_Part]) -> None:
        """The parts' ops and records (of one tenant), one statement per kind and table."""
        schema = parts[0].schema
        ops = [op for part in parts for op in part.ops]
        prepared = {k: v for part in parts for k, v in part.prepared.items()}
        stats: Counter[tuple[str, str, str]] = Counter()
        try:
            for kind, run in _runs(ops):
                if kind == "insert":
                    await self._insert(conn, schema, run, prepared, stats)
                elif kind == "update":
                    await self._update(conn, schema, run, prepared, stats)
                else:
                    await self._delete(conn, schema, run, prepared, stats)
        except asyncpg.UniqueViolationError as error:
            raise StaleWrite(f"An entity of this batch already exists: {error}") from None
        except asyncpg.DeadlockDetectedError as error:  # two processes' groups crossed
            raise StaleWrite(f"The batch waited on another writer: {error}") from None
        except (asyncpg.DataError, asyncpg.InternalServerError) as error:
            raise BadRequestData(f"The entity cannot be stored: {error}") from None
        changes = [(t, a, k, n) for (t, a, k), n in sorted(stats.items()) if n]
        if changes:
            await conn.execute(
                f"INSERT INTO {schema}.attribute_counts (type, attr, kind, delta) "
                "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])",
                *(list(column) for column in zip(*changes, strict=True)))
            self._written_counts[schema] += len(changes)
            if self._written_counts[schema] > COMPACT_AFTER:
                self._written_counts[schema] = 0
                self._spawn(self._compact(schema))
        by_type: dict[type, list[Any]] = {}
        for part in parts:
            for record in part.records:
                by_type.setdefault(type(record), []).append(record)
        for record_type, items in by_type.items():
            await RECORD_WRITERS[record_type](conn, schema, items)
        statuses = len(by_type.get(SubscriptionStatus, ()))
        if statuses:
            self._written_statuses[schema] += statuses
            if self._written_statuses[schema] > FOLD_AFTER:
                self._written_statuses[schema] = 0
                self._spawn(self.fold_status(schema))

    async def _insert(self, conn: asyncpg.Connection, schema: str, run: list[WriteOp],
                      prepared: dict[int, _Prepared], stats: Counter[tuple[str, str, str]]
                      ) -> None:
        ready = [prepared[id(op)] for op in run]
        rows = await conn.fetch(_INSERT.format(s=schema), [p.new_text for p in ready],
                                [p.expiry for p in ready])
        seqs = {row["id"]: row["seq"] for row in rows}
        geo_rows = []
        for op, ready_op in zip(run, ready, strict=True):
            assert op.new is not None
            stats_delta(stats, None, op.new)
            geo_rows += [(seqs[op.new["id"]], attr, value) for attr, value in ready_op.new_geo]
        await self._write_geo(conn, schema, [], geo_rows)

    async def _update(self, conn: asyncpg.Connection, schema: str, run: list[WriteOp],
                      prepared: dict[int, _Prepared], stats: Counter[tuple[str, str, str]]
                      ) -> None:
        ready = [prepared[id(op)] for op in run]
        rows = await conn.fetch(_UPDATE.format(s=schema), [p.entity_id for p in ready],
                                [p.new_text for p in ready], [p.expiry for p in ready],
                                [p.old_text for p in ready])
        seqs = {row["id"]: row["seq"] for row in rows}
        moved: list[int] = []
        geo_rows = []
        for op, ready_op in zip(run, ready, strict=True):
            seq = seqs.get(ready_op.entity_id)
            if seq is None:
                self._refused(schema, [ready_op.entity_id])
                raise StaleWrite(f"Entity {ready_op.entity_id} changed since it was read (or "
                                 "it is gone): it is not updated")
            stats_delta(stats, op.old, op.new)
            if ready_op.old_geo != ready_op.new_geo:
                moved.append(seq)
                geo_rows += [(seq, attr, value) for attr, value in ready_op.new_geo]
        await self._write_geo(conn, schema, moved, geo_rows)

    async def _delete(self, conn: asyncpg.Connection, schema: str, run: list[WriteOp],
                      prepared: dict[int, _Prepared], stats: Counter[tuple[str, str, str]]
                      ) -> None:
        olds = {op.old["id"]: (op.old, prepared[id(op)].old_text)
                for op in run if op.old is not None}
        rows = await conn.fetch(_DELETE.format(s=schema), list(olds),
                                [text for _, text in olds.values()])
        if len(rows) < len(olds):
            gone = sorted(set(olds) - {row["id"] for row in rows})
            self._refused(schema, gone)
            raise StaleWrite(f"Entity {gone[0]} changed since it was read (or it is gone): "
                             "it is not deleted")
        for row in rows:
            stats_delta(stats, olds[row["id"]][0], None)
        await self._write_geo(conn, schema, [row["seq"] for row in rows], [])

    @staticmethod
    async def _write_geo(conn: asyncpg.Connection, schema: str, gone: list[int],
                         rows: list[tuple[int, str, str]]) -> None:
        if gone:
            await conn.execute(f"DELETE FROM {schema}.entity_geo WHERE entity = ANY($1)", gone)
        if rows:
            await conn.execute(
                f"INSERT INTO {schema}.entity_geo (entity, attr, geom) "
                "SELECT e, a, ST_Force2D(ST_SetSRID(ST_GeomFromGeoJSON(g), 4326)) "
                "FROM unnest($1::bigint[], $2::text[], $3::text[]) AS u(e, a, g)",
                [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])

    async def _compact(self, schema: str) -> None:
        """Sum the attribute_counts deltas into one row per key (a transaction of its own)."""
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
            await conn.execute(
                f"WITH gone AS (DELETE FROM {schema}.attribute_counts RETURNING *) "
                f"INSERT INTO {schema}.attribute_counts (type, attr, kind, delta) "
                "SELECT type, attr, kind, sum(delta) FROM gone GROUP BY type, attr, kind "
                "HAVING sum(delta) <> 0")

    async def close(self) -> None:
        await self._drop_leadership()
        await self._close_groups()
        if self._owns_pool:
            await self.pool.close()
