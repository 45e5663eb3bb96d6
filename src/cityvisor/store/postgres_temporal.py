"""PostgreSQL tables of the temporal history (NGSI-LD Temporal API, clauses 5.6.11-5.6.16,
5.7.3-5.7.4).

Layout, in every tenant schema (``postgres_migrations``):

- ``temporal_instances``: one row per recorded attribute instance, declaratively partitioned
  by month of ``observed_at`` (the instance's ``observedAt``, or its ``modifiedAt`` when it has
  none); a month's partition ``temporal_instances_yYYYYmMM`` is created before the first write
  that needs it. Columns: ``instance_id`` (a sequence: ids grow), the entity (the ``seq`` of
  ``temporal_entities``: small index keys), attribute IRI, datasetId ('' for the default
  instance), the four times as ``timestamptz`` (microseconds, as the normalised text form),
  ``num`` (the value when it is a number, for SQL aggregations) and ``value`` (the stored
  instance as JSON text). Indexes: ``(entity, attr, observed_at, instance_id)`` (a time range
  of one attribute is one index range scan), BRIN on ``observed_at`` and on ``instance_id``
  (appended in order: tiny indexes for time scans and instance look-ups).
- ``temporal_entities``: the entities that have a history (also after the entity itself was
  deleted): id, types (``text[]``, GIN), timestamps.
- ``temporal_retention``: retention days per attribute ('' = the whole tenant).

``purge_history`` drops the partitions that lie wholly before every cutoff and deletes the
old rows of the others, one partition at a time. Aggregations run in SQL (``AGGREGATES``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from cityvisor.store.base import Buckets, EntityQuery, StaleWrite, TimeFilter
from cityvisor.store.postgres_connections import TenantSchemas
from cityvisor.store.postgres_errors import ACQUIRE_TIMEOUT_S
from cityvisor.store.postgres_migrations import unquote
from cityvisor.store.postgres_q import Params, selectors_sql
from cityvisor.store.rechecks import selected
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
from cityvisor.store.sql_selection import type_selection_sql

#: timeproperty -> column
TIME_COLUMNS = {"observedAt": "observed_at", "createdAt": "created_at",
                "modifiedAt": "modified_at", "deletedAt": "deleted_at"}
_COLUMNS = ("instance_id, attr, dataset_id, observed_at, created_at, modified_at, deleted_at, "
            "value")
#: the columns an instance is written with (``instance_id`` comes from its sequence)
_INSTANCE_COLUMNS = ("entity", "attr", "dataset_id", "observed_at", "created_at", "modified_at",
                     "deleted_at", "num", "value")
_ENTITY = "(SELECT seq FROM {s}.temporal_entities WHERE id = $1)"


def to_time(text: str) -> datetime:
    """A normalised time (``YYYY-MM-DDTHH:MM:SS.ffffffZ``) as a timestamptz parameter."""
    return datetime.fromisoformat(text)


def to_text(time: datetime) -> str:
    """A timestamptz read back, in the normalised text form."""
    return time.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def partition_months(records: Sequence[object]) -> set[tuple[int, int]]:
    """The (year, month) partitions a batch of side records writes into."""
    months: set[tuple[int, int]] = set()
    for record in records:
        if isinstance(record, (InstanceRecord, InstanceModified)):
            months.add((int(record.observed_at[:4]), int(record.observed_at[5:7])))
    return months


def _partition(month: tuple[int, int]) -> str:
    return f"temporal_instances_y{month[0]:04d}m{month[1]:02d}"


def _month_bounds(month: tuple[int, int]) -> tuple[str, str]:
    year, number = month
    upper = (year + 1, 1) if number == 12 else (year, number + 1)
    return (f"{year:04d}-{number:02d}-01 00:00:00+00", f"{upper[0]:04d}-{upper[1]:02d}-01 00:00:00+00")


def _month_end(month: tuple[int, int]) -> datetime:
    return datetime.fromisoformat(_month_bounds(month)[1])


def _row(record: Any) -> HistoryRow:
    return HistoryRow(record["instance_id"], record["attr"], record["dataset_id"],
                      to_text(record["observed_at"]), to_text(record["created_at"]),
                      to_text(record["modified_at"]),
                      None if record["deleted_at"] is None else to_text(record["deleted_at"]),
                      record["value"])


# ---------------------------------------------------------------------------- writers


async def write_instances(conn: asyncpg.Connection, schema: str,
                          records: list[InstanceRecord]) -> None:
    first: dict[str, InstanceRecord] = {}
    for r in records:
        first.setdefault(r.entity, r)
    ids = list(first)
    # an entity without a row gets one (its instances can come before its EntityRecord); the
    # instances then go in a statement of their own with their entities' seq (one statement
    # joining the two would be planned generically for a few rows and join in O(n x m))
    rows = await conn.fetch(
        f"WITH made AS (INSERT INTO {schema}.temporal_entities (id, types, created_at, "
        "modified_at) SELECT id, ARRAY[t], c, c FROM unnest($1::text[], $2::text[], $3::text[]) "
        "AS u(id, t, c) ON CONFLICT (id) DO NOTHING RETURNING id, seq) "
        f"SELECT id, seq FROM made UNION ALL SELECT id, seq FROM {schema}.temporal_entities "
        "WHERE id = ANY($1)", ids, [first[i].entity_type for i in ids],
        [first[i].created_at for i in ids])
    seqs = {row["id"]: row["seq"] for row in rows}
    if len(seqs) < len(ids):
        # another process made an entity's row after this statement's snapshot was taken
        raise StaleWrite("The history of an entity was begun by another writer meanwhile")
    # binary COPY: the rows are encoded column by column (an INSERT of unnest arrays has
    # asyncpg inspect every array element, a third of a large batch's time); COPY keeps the
    # rows' order, so the instance ids grow in it
    await conn.copy_records_to_table(
        "temporal_instances", schema_name=unquote(schema), columns=_INSTANCE_COLUMNS,
        records=[(seqs[r.entity], r.attr, r.dataset_id, to_time(r.observed_at),
                  to_time(r.created_at), to_time(r.modified_at),
                  None if r.deleted_at is None else to_time(r.deleted_at), r.num, r.value)
                 for r in records])


async def write_entities(conn: asyncpg.Connection, schema: str,
                         records: list[EntityRecord]) -> None:
    upserts = [(r.entity, list(r.types), r.created_at, r.modified_at) for r in records
               if r.deleted_at is None]
    deleted = [(r.deleted_at, r.entity) for r in records if r.deleted_at is not None]
    # as in SQLite: the broker never stages the same entity deleted and re-created together
    if upserts:
        # one statement for the batch; an entity twice in it (several writers of a group
        # commit) keeps its last record
        await conn.execute(
            f"INSERT INTO {schema}.temporal_entities (id, types, created_at, modified_at) "
            "SELECT DISTINCT ON (u.id) u.id, ARRAY(SELECT jsonb_array_elements_text(u.t::jsonb)), "
            "u.c, u.m FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH "
            "ORDINALITY AS u(id, t, c, m, n) ORDER BY u.id, u.n DESC "
            "ON CONFLICT (id) DO UPDATE SET types = excluded.types, "
            "modified_at = excluded.modified_at, deleted_at = NULL",
            [u[0] for u in upserts], [orjson.dumps(u[1]).decode() for u in upserts],
            [u[2] for u in upserts], [u[3] for u in upserts])
    if deleted:
        await _set_last(conn, "deleted_at = u.v, modified_at = u.v", schema,
                        [(entity, at) for at, entity in deleted])


async def _touch(conn: asyncpg.Connection, schema: str, records: list[EntityTouched]) -> None:
    await _set_last(conn, "modified_at = u.v", schema,
                    [(r.entity, r.modified_at) for r in records])


async def _set_last(conn: asyncpg.Connection, assignments: str, schema: str,
                    values: list[tuple[str, str]]) -> None:
    """``UPDATE temporal_entities SET <assignments>`` from (entity id, value ``u.v``) pairs,
    one statement; the last pair of an entity wins."""
    await conn.execute(
        f"UPDATE {schema}.temporal_entities t SET {assignments} FROM (SELECT DISTINCT ON "
        "(x.id) x.id, x.v FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS x(id, v, n) "
        "ORDER BY x.id, x.n DESC) u WHERE t.id = u.id",
        [v[0] for v in values], [v[1] for v in values])


async def _delete_histories(conn: asyncpg.Connection, schema: str,
                            records: list[HistoryDeleted]) -> None:
    ids = [r.entity for r in records]
    await conn.execute(
        f"DELETE FROM {schema}.temporal_instances WHERE entity IN "
        f"(SELECT seq FROM {schema}.temporal_entities WHERE id = ANY($1))", ids)
    await conn.execute(f"DELETE FROM {schema}.temporal_entities WHERE id = ANY($1)", ids)


async def _delete_attributes(conn: asyncpg.Connection, schema: str,
                             records: list[AttributeHistoryDeleted]) -> None:
    await conn.executemany(
        f"DELETE FROM {schema}.temporal_instances WHERE entity = {_ENTITY.format(s=schema)} "
        "AND attr = $2 AND ($3::text IS NULL OR dataset_id = $3)",
        [(r.entity, r.attr, r.dataset_id) for r in records])


async def _modify_instances(conn: asyncpg.Connection, schema: str,
                            records: list[InstanceModified]) -> None:
    await conn.executemany(
        f"UPDATE {schema}.temporal_instances SET observed_at = $1, modified_at = $2, num = $3, "
        "value = $4 WHERE instance_id = $5",
        [(to_time(r.observed_at), to_time(r.modified_at), r.num, r.value, r.instance_id)
         for r in records])


async def _delete_instances(conn: asyncpg.Connection, schema: str,
                            records: list[InstanceDeleted]) -> None:
    await conn.execute(f"DELETE FROM {schema}.temporal_instances WHERE instance_id = ANY($1)",
                       [r.instance_id for r in records])


WRITERS: dict[type, Callable[[asyncpg.Connection, str, list[Any]], Awaitable[None]]] = {
    InstanceRecord: write_instances, EntityRecord: write_entities, EntityTouched: _touch,
    HistoryDeleted: _delete_histories, AttributeHistoryDeleted: _delete_attributes,
    InstanceModified: _modify_instances, InstanceDeleted: _delete_instances}


# ---------------------------------------------------------------------------- reads


def time_sql(time: TimeFilter, p: Params) -> tuple[str, str]:
    """(column, `` AND ...`` fragment) of a time filter."""
    column = TIME_COLUMNS[time.timeproperty]
    # on the deletedAt axis only the deletions have a time
    where = [f"{column} IS NOT NULL"] if column == "deleted_at" else []
    if time.after is not None:
        where.append(f"{column} > {p(to_time(time.after), 'timestamptz')}")
    if time.from_ is not None:
        where.append(f"{column} >= {p(to_time(time.from_), 'timestamptz')}")
    if time.before is not None:
        where.append(f"{column} < {p(to_time(time.before), 'timestamptz')}")
    return column, "".join(" AND " + w for w in where)


#: the value ``distinctCount`` compares: the first value member (a boolean as 0/1, as the
#: other backends count it)
_MEMBER = ("coalesce(" + ", ".join(
    f"nullif(value::jsonb -> '{m}', 'null'::jsonb)"
    for m in ("value", "object", "languageMap", "valueList", "objectList", "json", "vocab")) + ")")
_DISTINCT = (f"(CASE jsonb_typeof({_MEMBER}) WHEN 'boolean' THEN "
             f"to_jsonb((({_MEMBER})::text)::boolean::int) ELSE {_MEMBER} END)")
#: aggregation method -> SQL aggregate over the rows of one period
AGGREGATES = {
    "totalCount": "count(*)",
    "distinctCount": f"count(DISTINCT {_DISTINCT})",
    "sum": "sum(num)",
    "avg": "avg(num)",
    "min": "min(num)",
    "max": "max(num)",
    "sumsq": "sum(num * num)",
    # sample standard deviation, from the moments of the period (as the SQLite backend)
    "stddev": "CASE WHEN count(num) > 1 THEN sqrt(greatest(0.0, (sum(num * num) - sum(num) * "
              "sum(num) / count(num)) / (count(num) - 1))) END",
}


class TemporalTables(TenantSchemas):
    """The temporal-history reads, partitions and retention of ``PostgresStore`` (the port's
    docstrings say what each does)."""

    def __init__(self, pool: asyncpg.Pool, namespace: str = "ngsild") -> None:
        super().__init__(pool, namespace)
        self._partitions: dict[str, set[tuple[int, int]]] = {}

    async def _ensure_partitions(self, schema: str, months: set[tuple[int, int]],
                                 fresh: bool = False) -> None:
        """Create the month partitions a write needs (before its transaction: DDL there
        would hold a lock on the whole table until the group commits)."""
        if not months:
            return
        known = self._partitions.get(schema)
        if known is None or fresh or not months <= known:
            known = self._partitions[schema] = await self._existing_partitions(schema)
        missing = months - known
        if not missing:
            return
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
            for month in sorted(missing):
                low, high = _month_bounds(month)
                # another process may make it at the same time
                with suppress(asyncpg.DuplicateTableError, asyncpg.UniqueViolationError):
                    await conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {schema}.{_partition(month)} PARTITION OF "
                        f"{schema}.temporal_instances FOR VALUES FROM ('{low}') TO ('{high}')")
                known.add(month)

    async def _existing_partitions(self, schema: str) -> set[tuple[int, int]]:
        rows = await self.pool.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = $1::regclass", f"{schema}.temporal_instances")
        months = set()
        for row in rows:
            name: str = row["relname"]
            months.add((int(name[-7:-3]), int(name[-2:])))
        return months

    async def temporal_entities(self, tenant: str | None, ids: Sequence[str], *,
                                staged: bool = False) -> dict[str, TemporalEntity]:
        schema = await self._schema(tenant)
        if schema is None or not ids:
            return {}
        async with self._reading(tenant, staged) as conn:
            rows = await conn.fetch(
                "SELECT id, types, created_at, modified_at, deleted_at FROM "
                f"{schema}.temporal_entities WHERE id = ANY($1)", list(ids))
        return {r["id"]: TemporalEntity(r["id"], tuple(r["types"]), r["created_at"],
                                        r["modified_at"], r["deleted_at"]) for r in rows}

    async def select_temporal_entities(self, tenant: str | None, query: EntityQuery
                                       ) -> tuple[list[TemporalEntity], int | None]:
        schema = await self._schema(tenant)
        if schema is None:
            return [], 0 if query.count else None
        p = Params()
        where, exact = self._selection_sql(schema, query, p)
        clause = " WHERE " + " AND ".join(where) if where else ""
        select = ("SELECT te.id, te.types, te.created_at, te.modified_at, te.deleted_at "
                  f"FROM {schema}.temporal_entities te{clause} ORDER BY te.seq")
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
            if exact:
                total = (int(await conn.fetchval(
                    f"SELECT count(*) FROM {schema}.temporal_entities te{clause}", *p.values))
                    if query.count else None)
                rows = [] if query.limit <= 0 else await conn.fetch(
                    f"{select} LIMIT {p(query.limit)} OFFSET {p(query.offset)}", *p.values)
            else:  # an idPattern only Python matches exactly
                rows = [r for r in await conn.fetch(select, *p.values)
                        if selected(query.selectors, r["id"], r["types"])]
                total = len(rows) if query.count else None
                rows = rows[query.offset:query.offset + query.limit] if query.limit > 0 else []
        return [TemporalEntity(r["id"], tuple(r["types"]), r["created_at"], r["modified_at"],
                               r["deleted_at"]) for r in rows], total

    @staticmethod
    def _selection_sql(schema: str, query: EntityQuery, p: Params) -> tuple[list[str], bool]:
        sql, exact = selectors_sql(query.selectors, p, "te", lambda types: type_selection_sql(
            types, lambda name: f"te.types @> ARRAY[{p(name.iri, 'text')}]"))
        where = [] if sql is None else [sql]
        if query.attrs:
            where.append(f"EXISTS (SELECT 1 FROM {schema}.temporal_instances ti WHERE "
                         f"ti.entity = te.seq AND ti.attr = ANY({p(sorted(query.attrs), 'text[]')}))")
        return where, exact

    async def has_history(self, tenant: str | None, entity: str, attr: str,
                          dataset_id: str | None, *, staged: bool = False) -> bool:
        schema = await self._schema(tenant)
        if schema is None:
            return False
        async with self._reading(tenant, staged) as conn:
            return bool(await conn.fetchval(
                f"SELECT EXISTS (SELECT 1 FROM {schema}.temporal_instances WHERE entity = "
                f"{_ENTITY.format(s=schema)} AND attr = $2 AND ($3::text IS NULL OR "
                "dataset_id = $3))", entity, attr, dataset_id))

    async def history_instance(self, tenant: str | None, entity: str, attr: str,
                               instance_id: int, *, staged: bool = False) -> HistoryRow | None:
        schema = await self._schema(tenant)
        if schema is None:
            return None
        async with self._reading(tenant, staged) as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM {schema}.temporal_instances WHERE entity = "
                f"{_ENTITY.format(s=schema)} AND attr = $2 AND instance_id = $3",
                entity, attr, instance_id)
        return None if row is None else _row(row)

    async def _attributes(self, conn: asyncpg.Connection, schema: str, entity: str,
                          attrs: frozenset[str] | None) -> tuple[int | None, list[str]]:
        """(the entity's seq, its attributes with a history, in IRI order): a skip scan of
        the series index, one probe per attribute."""
        seq = await conn.fetchval(f"SELECT seq FROM {schema}.temporal_entities WHERE id = $1",
                                  entity)
        if seq is None:
            return None, []
        rows = await conn.fetch(
            f"WITH RECURSIVE a(attr) AS ((SELECT attr FROM {schema}.temporal_instances "
            "WHERE entity = $1 ORDER BY attr LIMIT 1) UNION ALL SELECT (SELECT t.attr FROM "
            f"{schema}.temporal_instances t WHERE t.entity = $1 AND t.attr > a.attr "
            "ORDER BY t.attr LIMIT 1) FROM a WHERE a.attr IS NOT NULL) "
            "SELECT attr FROM a WHERE attr IS NOT NULL", seq)
        found = [r["attr"] for r in rows]
        return seq, [a for a in found if attrs is None or a in attrs]

    async def histories(self, tenant: str | None, ids: Sequence[str],
                        attrs: frozenset[str] | None, time: TimeFilter, limit: int
                        ) -> dict[str, dict[str, list[HistoryRow]]]:
        schema = await self._schema(tenant)
        if schema is None:
            return {}
        out: dict[str, dict[str, list[HistoryRow]]] = {}
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
            for entity in ids:
                found: dict[str, list[HistoryRow]] = out.setdefault(entity, {})
                seq, names = await self._attributes(conn, schema, entity, attrs)
                for attr in names:
                    p = Params()
                    p(seq)
                    p(attr)
                    column, where = time_sql(time, p)
                    order = "DESC" if time.last_n is not None else "ASC"
                    count = limit if time.last_n is None else min(limit, time.last_n)
                    rows = [_row(r) for r in await conn.fetch(
                        f"SELECT {_COLUMNS} FROM {schema}.temporal_instances WHERE entity = $1 "
                        f"AND attr = $2{where} ORDER BY {column} {order}, instance_id {order} "
                        f"LIMIT {p(max(count, 0))}", *p.values)]
                    if time.last_n is not None:
                        rows.reverse()
                    if rows:
                        found[attr] = rows
        return out

    async def aggregate_histories(self, tenant: str | None, ids: Sequence[str],
                                  attrs: frozenset[str] | None, time: TimeFilter,
                                  methods: Sequence[str], buckets: Buckets,
                                  origin: str | None, with_last_time: bool
                                  ) -> dict[str, dict[str, AttributeAggregate]]:
        schema = await self._schema(tenant)
        if schema is None:
            return {}
        out: dict[str, dict[str, AttributeAggregate]] = {}
        selected = ", ".join(AGGREGATES[m] for m in methods)
        async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
            for entity in ids:
                per_attr: dict[str, AttributeAggregate] = out.setdefault(entity, {})
                seq, names = await self._attributes(conn, schema, entity, attrs)
                for attr in names:
                    p = Params()
                    p(seq)
                    p(attr)
                    column, where = time_sql(time, p)
                    series = (f"FROM {schema}.temporal_instances WHERE entity = $1 AND attr = $2 "
                              f"AND deleted_at IS NULL{where}")
                    bounds = await conn.fetchrow(
                        f"SELECT min({column}) AS first, max({column}) AS last {series}",
                        *p.values)
                    if bounds["first"] is None:
                        continue
                    start = origin or to_text(bounds["first"])
                    assert start is not None
                    bucket = self._bucket(column, buckets, start, p)
                    rows = await conn.fetch(
                        f"SELECT dataset_id, {bucket} AS bucket, {selected} {series} "
                        "GROUP BY dataset_id, bucket ORDER BY dataset_id, bucket", *p.values)
                    kind = await conn.fetchval(
                        f"SELECT value::jsonb ->> 'type' FROM {schema}.temporal_instances "
                        "WHERE entity = $1 AND attr = $2 ORDER BY instance_id LIMIT 1", seq, attr)
                    per_attr[attr] = AttributeAggregate(
                        kind or "Property", start, [tuple(r) for r in rows],
                        to_text(bounds["last"]) if with_last_time else None)
        return out

    @staticmethod
    def _bucket(column: str, buckets: Buckets, origin: str, p: Params) -> str:
        """The period number of a row: fixed periods or calendar months from ``origin``."""
        if buckets.period_ms is not None:
            return (f"floor((extract(epoch FROM {column}) - extract(epoch FROM "
                    f"{p(to_time(origin), 'timestamptz')})) * 1000000 / "
                    f"{p(buckets.period_ms * 1000, 'numeric')})::bigint")
        if buckets.months is not None:
            # whole months from the origin, minus one when the day-and-time part is earlier
            utc = f"({column} AT TIME ZONE 'UTC')"
            return (f"(((extract(year FROM {utc}) * 12 + extract(month FROM {utc}))::bigint - "
                    f"{p(int(origin[:4]) * 12 + int(origin[5:7]), 'bigint')} - CASE WHEN "
                    f"to_char({utc}, 'DD\"T\"HH24:MI:SS.US') COLLATE \"C\" < "
                    f"{p(origin[8:].rstrip('Z'), 'text')} THEN 1 ELSE 0 END) / "
                    f"{p(buckets.months, 'bigint')})")
        return "0"

    async def retention(self, tenant: str | None) -> dict[str, int]:
        schema = await self._schema(tenant)
        if schema is None:
            return {}
        async with self._reading(tenant, True) as conn:
            rows = await conn.fetch(
                f"SELECT attr, days FROM {schema}.temporal_retention ORDER BY attr")
        return {r["attr"]: r["days"] for r in rows}

    async def set_retention(self, tenant: str | None, attr: str, days: int | None) -> None:
        schema = await self._schema(tenant, create=True)
        if days is None:
            await self.pool.execute(f"DELETE FROM {schema}.temporal_retention WHERE attr = $1",
                                    attr)
        else:
            await self.pool.execute(
                f"INSERT INTO {schema}.temporal_retention (attr, days) VALUES ($1, $2) "
                "ON CONFLICT (attr) DO UPDATE SET days = excluded.days", attr, days)

    async def purge_history(self, tenant: str | None, cutoffs: dict[str, str],
                            default_cutoff: str | None) -> int:
        """Drops the partitions wholly before every cutoff (when a default cutoff covers the
        attributes not named), then deletes the old rows partition by partition."""
        schema = await self._schema(tenant)
        if schema is None or (not cutoffs and default_cutoff is None):
            return 0
        p = Params()
        parts = [f"(attr = {p(attr, 'text')} AND observed_at < {p(to_time(cut), 'timestamptz')})"
                 for attr, cut in sorted(cutoffs.items())]
        if default_cutoff is not None:
            parts.append(f"(attr <> ALL({p(sorted(cutoffs), 'text[]')}) AND observed_at < "
                         f"{p(to_time(default_cutoff), 'timestamptz')})")
        condition = " OR ".join(parts)
        lowest = (to_time(min([*cutoffs.values(), default_cutoff]))
                  if default_cutoff is not None else None)
        deleted = 0
        for month in sorted(await self._existing_partitions(schema)):
            table = f"{schema}.{_partition(month)}"
            async with self.pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                if lowest is not None and _month_end(month) <= lowest:
                    async with conn.transaction():
                        deleted += int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
                        await conn.execute(f"DROP TABLE {table}")
                    self._partitions.get(schema, set()).discard(month)
                    continue
                status = await conn.execute(f"DELETE FROM {table} WHERE {condition}", *p.values)
                deleted += int(status.split()[-1])
        return deleted
