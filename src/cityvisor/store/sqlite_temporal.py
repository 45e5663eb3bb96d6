"""SQLite tables of the temporal history (NGSI-LD Temporal API, clauses 5.6.11-5.6.16, 5.7.3-5.7.4).

Layout, in every tenant database (see ``docs/temporal.md`` for the choice of indexes):

- ``temporal_instances``: one row per recorded attribute instance: entity id, first type IRI,
  attribute IRI, datasetId ('' for the default instance), the three time columns normalised to
  ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (so that text order is time order), ``deleted_at`` for a
  deletion, ``num`` (the value when it is a number, for SQL aggregations) and ``value`` (the
  stored instance as JSON). ``observed_at`` is the instance's ``observedAt``, or its
  ``modifiedAt`` when it has none, so that every row has a place on the observedAt axis.
  The entity and attribute are one integer, ``series`` = (``temporal_entities.rowid`` << 20) |
  ``temporal_attrs.id``: index entries stay small and writing a new history costs no extra row
  nor index entry (a per-(entity, attribute) table cost ~18 % of the CPU of a bulk upsert). Index ``(series, observed_at, dataset_id,
  deleted_at, num)``: a time-range query or an aggregation of one attribute of one entity is
  one index range scan (numeric aggregations never read the table).
- ``temporal_entities``: the entities that have a history (also after the entity itself was
  deleted from the core store): id, types (JSON list), timestamps. Written when an entity is
  created, deleted or changes type, not on attribute updates (the hot path).
- ``temporal_retention``: retention days per attribute ('' = the whole tenant).

Writes are side records of ``SqliteStore.stage`` (same transaction as the entity change);
reads run on the store's read pool, each function below taking a read connection.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from cityvisor.store.base import Buckets, EntityQuery, TimeFilter
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
from cityvisor.store.sqlite_connections import TenantDatabases, id_selection_sql
from cityvisor.store.sqlite_q import type_sql

TEMPORAL_SCHEMA = """
CREATE TABLE IF NOT EXISTS temporal_attrs (
  id INTEGER PRIMARY KEY,
  iri TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS temporal_instances (
  instance_id INTEGER PRIMARY KEY,
  series INTEGER NOT NULL,
  entity_type TEXT NOT NULL,
  dataset_id TEXT NOT NULL,
  observed_at TEXT NOT NULL,
  created_at TEXT NOT NULL,
  modified_at TEXT NOT NULL,
  deleted_at TEXT,
  num REAL,
  value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS temporal_observed ON temporal_instances(series, observed_at,
                                                                 dataset_id, deleted_at, num);

CREATE TABLE IF NOT EXISTS temporal_entities (
  rowid INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  type TEXT NOT NULL,
  types TEXT NOT NULL,
  created_at TEXT NOT NULL,
  modified_at TEXT NOT NULL,
  deleted_at TEXT
);
CREATE INDEX IF NOT EXISTS temporal_entities_type ON temporal_entities(type);
CREATE TABLE IF NOT EXISTS temporal_retention (
  attr TEXT PRIMARY KEY,
  days INTEGER NOT NULL
) WITHOUT ROWID;
"""

#: timeproperty -> column
TIME_COLUMNS = {"observedAt": "observed_at", "createdAt": "created_at", "modifiedAt": "modified_at",
                "deletedAt": "deleted_at"}
#: one (entity, attribute) history is one integer (see the module docstring), so the history
#: index stays ~3x smaller than with the two IRIs (it must fit the writer's page cache)
ATTR_BITS = 20
ATTR_MASK = (1 << ATTR_BITS) - 1
_ENTITY_ROWID = "(SELECT rowid FROM temporal_entities WHERE id = ?)"
SERIES = (f"series = (({_ENTITY_ROWID} << {ATTR_BITS}) | "
          "(SELECT id FROM temporal_attrs WHERE iri = ?))")
#: every series of one entity (parameter: the entity id), an index range
ENTITY_SERIES = (f"series BETWEEN ((SELECT rowid FROM temporal_entities WHERE id = ?1) << {ATTR_BITS}) "
                 f"AND ((SELECT rowid FROM temporal_entities WHERE id = ?1) << {ATTR_BITS}) + {ATTR_MASK}")
_COLUMNS = (f"instance_id, (SELECT iri FROM temporal_attrs WHERE id = series & {ATTR_MASK}) AS attr, "
            "dataset_id, observed_at, created_at, modified_at, deleted_at, "
            "value")


def write_instances(conn: sqlite3.Connection, records: list[InstanceRecord]) -> None:
    attrs = _attr_ids(conn, {r.attr for r in records})
    entities = _entity_rowids(conn, records)
    conn.executemany(
        "INSERT INTO temporal_instances (series, entity_type, dataset_id, observed_at, "
        "created_at, modified_at, deleted_at, num, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [((entities[r.entity] << ATTR_BITS) | attrs[r.attr], r.entity_type, r.dataset_id,
          r.observed_at, r.created_at, r.modified_at, r.deleted_at, r.num, r.value)
         for r in records])


def _attr_ids(conn: sqlite3.Connection, iris: set[str]) -> dict[str, int]:
    """Attribute IRI -> small integer, creating the missing ones (a handful per tenant)."""
    marks = ",".join("?" * len(iris))
    query = f"SELECT iri, id FROM temporal_attrs WHERE iri IN ({marks})"
    ids = dict(conn.execute(query, list(iris)).fetchall())
    missing = iris - ids.keys()
    if missing:
        conn.executemany("INSERT OR IGNORE INTO temporal_attrs (iri) VALUES (?)",
                         [(iri,) for iri in sorted(missing)])
        ids = dict(conn.execute(query, list(iris)).fetchall())
        if max(ids.values()) > ATTR_MASK:
            raise ValueError(f"more than {ATTR_MASK} attribute names have a history")
    return ids


def _entity_rowids(conn: sqlite3.Connection, records: list[InstanceRecord]) -> dict[str, int]:
    """Entity id -> ``temporal_entities`` rowid; an entity without a row gets one (its instances
    can be written before its EntityRecord in the same transaction)."""
    types = {r.entity: r.entity_type for r in records}
    found: dict[str, int] = {}
    ids = list(types)
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        found.update(conn.execute(
            f"SELECT id, rowid FROM temporal_entities WHERE id IN ({','.join('?' * len(chunk))})",
            chunk).fetchall())
    missing = [entity for entity in ids if entity not in found]
    if missing:
        first = {r.entity: r.created_at for r in reversed(records)}
        for entity in missing:
            found[entity] = conn.execute(
                "INSERT INTO temporal_entities (id, type, types, created_at, modified_at) "
                "VALUES (?, ?, ?, ?, ?) RETURNING rowid",
                (entity, types[entity], orjson.dumps([types[entity]]).decode(),
                 first[entity], first[entity])).fetchone()[0]
    return found


def write_entities(conn: sqlite3.Connection, records: list[EntityRecord]) -> None:
    deleted = [(r.deleted_at, r.deleted_at, r.entity) for r in records
               if r.deleted_at is not None]
    upserts = [(r.entity, r.types[0], orjson.dumps(list(r.types)).decode(), r.created_at,
                r.modified_at) for r in records if r.deleted_at is None]
    # Order matters only for the same entity deleted and re-created in one batch, which the
    # broker never stages together; deletions of other entities are independent.
    if upserts:
        conn.executemany(
            "INSERT INTO temporal_entities (id, type, types, created_at, modified_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET type = excluded.type, "
            "types = excluded.types, modified_at = excluded.modified_at, deleted_at = NULL",
            upserts)
    if deleted:
        conn.executemany("UPDATE temporal_entities SET deleted_at = ?, modified_at = ? "
                         "WHERE id = ?", deleted)


def _touch(conn: sqlite3.Connection, records: list[EntityTouched]) -> None:
    conn.executemany("UPDATE temporal_entities SET modified_at = ? WHERE id = ?",
                     [(r.modified_at, r.entity) for r in records])


def _delete_histories(conn: sqlite3.Connection, records: list[HistoryDeleted]) -> None:
    for r in records:
        conn.execute(f"DELETE FROM temporal_instances WHERE {ENTITY_SERIES}", (r.entity,))
        conn.execute("DELETE FROM temporal_entities WHERE id = ?", (r.entity,))


def _delete_attributes(conn: sqlite3.Connection, records: list[AttributeHistoryDeleted]) -> None:
    for r in records:
        if r.dataset_id is None:
            conn.execute(f"DELETE FROM temporal_instances WHERE {SERIES}", (r.entity, r.attr))
        else:
            conn.execute(f"DELETE FROM temporal_instances WHERE {SERIES} AND dataset_id = ?",
                         (r.entity, r.attr, r.dataset_id))


def _modify_instances(conn: sqlite3.Connection, records: list[InstanceModified]) -> None:
    conn.executemany(
        "UPDATE temporal_instances SET observed_at = ?, modified_at = ?, num = ?, value = ? "
        "WHERE instance_id = ?",
        [(r.observed_at, r.modified_at, r.num, r.value, r.instance_id) for r in records])


def _delete_instances(conn: sqlite3.Connection, records: list[InstanceDeleted]) -> None:
    conn.executemany("DELETE FROM temporal_instances WHERE instance_id = ?",
                     [(r.instance_id,) for r in records])


@dataclass(frozen=True, slots=True)
class PurgeWindow:
    """Delete the instances of ids ``low < id <= high`` matching a retention condition."""

    low: int
    high: int
    condition: str
    params: tuple[Any, ...]


def _purge(conn: sqlite3.Connection, records: list[PurgeWindow]) -> None:
    for r in records:
        conn.execute(f"DELETE FROM temporal_instances WHERE instance_id > ? AND instance_id <= ? "
                     f"AND {r.condition}", (r.low, r.high, *r.params))


WRITERS: dict[type, Callable[[sqlite3.Connection, list[Any]], None]] = {
    InstanceRecord: write_instances, EntityRecord: write_entities, EntityTouched: _touch,
    HistoryDeleted: _delete_histories, AttributeHistoryDeleted: _delete_attributes,
    InstanceModified: _modify_instances, InstanceDeleted: _delete_instances,
    PurgeWindow: _purge}


# ---------------------------------------------------------------------------- reads


def time_sql(time: TimeFilter) -> tuple[str, str, list[Any]]:
    """(column, `` AND ...`` fragment, params) of a time filter."""
    column = TIME_COLUMNS[time.timeproperty]
    # on the deletedAt axis only the deletions have a time
    where: list[str] = [f"{column} IS NOT NULL"] if column == "deleted_at" else []
    params: list[Any] = []
    if time.after is not None:
        where.append(f"{column} > ?")
        params.append(time.after)
    if time.from_ is not None:
        where.append(f"{column} >= ?")
        params.append(time.from_)
    if time.before is not None:
        where.append(f"{column} < ?")
        params.append(time.before)
    return column, "".join(" AND " + w for w in where), params


def _entity_rows(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, TemporalEntity]:
    found: dict[str, TemporalEntity] = {}
    for start in range(0, len(ids), 500):
        chunk = list(ids[start:start + 500])
        marks = ",".join("?" * len(chunk))
        for entity_id, types, created, modified, deleted in conn.execute(
                f"SELECT id, types, created_at, modified_at, deleted_at FROM temporal_entities "
                f"WHERE id IN ({marks})", chunk):
            found[entity_id] = TemporalEntity(entity_id, tuple(orjson.loads(types)), created,
                                              modified, deleted)
    return found


def entity_attributes(conn: sqlite3.Connection, entity: str) -> list[str]:
    """The attributes with a history."""
    row = conn.execute("SELECT rowid FROM temporal_entities WHERE id = ?", (entity,)).fetchone()
    if row is None:
        return []
    rows = conn.execute(
        "SELECT a.iri FROM temporal_attrs a WHERE EXISTS (SELECT 1 FROM temporal_instances "
        f"WHERE series = (? << {ATTR_BITS}) | a.id) ORDER BY a.iri", (row[0],))
    return [attr for (attr,) in rows]


def attribute_history(conn: sqlite3.Connection, entity: str, attr: str, time: TimeFilter,
                       limit: int) -> list[HistoryRow]:
    """Up to ``limit`` rows of one attribute in ascending time (lastN: the most recent)."""
    column, where, params = time_sql(time)
    order = "DESC" if time.last_n is not None else "ASC"
    rows = [HistoryRow(*row) for row in conn.execute(
        f"SELECT {_COLUMNS} FROM temporal_instances INDEXED BY temporal_observed "
        f"WHERE {SERIES}{where} ORDER BY {column} {order}, instance_id {order} "
        "LIMIT ?", [entity, attr, *params,
                    limit if time.last_n is None else min(limit, time.last_n)])]
    if time.last_n is not None:
        rows.reverse()
    return rows


#: aggregation method -> SQL aggregate over the rows of one period
AGGREGATES = {
    "totalCount": "count(*)",
    "distinctCount": "count(DISTINCT coalesce(json_extract(value, '$.value'), "
                     "json_extract(value, '$.object'), json(json_extract(value, '$.languageMap')), "
                     "json(json_extract(value, '$.valueList')), "
                     "json(json_extract(value, '$.objectList')), json(json_extract(value, '$.json')), "
                     "json_extract(value, '$.vocab')))",
    "sum": "sum(num)",
    "avg": "avg(num)",
    "min": "min(num)",
    "max": "max(num)",
    "sumsq": "sum(num * num)",
    # sample standard deviation (like PostgreSQL's stddev), from the moments of the period
    "stddev": "CASE WHEN count(num) > 1 THEN sqrt(max(0.0, (sum(num * num) - sum(num) * sum(num) "
              "/ count(num)) / (count(num) - 1))) END",
}


def _bound_time(conn: sqlite3.Connection, entity: str, attr: str, time: TimeFilter,
                function: str) -> str | None:
    """``min`` or ``max`` of the time of the recorded (not deleted) instances in range."""
    column, where, params = time_sql(time)
    row = conn.execute(
        f"SELECT {function}({column}) FROM temporal_instances INDEXED BY temporal_observed "
        f"WHERE {SERIES} AND deleted_at IS NULL{where}", [entity, attr, *params]).fetchone()
    return row[0] if row else None


def aggregate(conn: sqlite3.Connection, entity: str, attr: str, time: TimeFilter,
               methods: Sequence[str], buckets: Buckets, origin: str) -> list[tuple[Any, ...]]:
    """Rows (dataset_id, bucket, method values...) of one attribute, grouped per period."""
    col, where, params = time_sql(time)
    if buckets.period_ms is not None:
        origin_jd = datetime.fromisoformat(origin).timestamp() / 86400.0 + 2440587.5
        bucket = f"CAST(round((julianday({col}) - ?) * 86400000.0) AS INTEGER) / ?"
        bucket_params: list[Any] = [origin_jd, buckets.period_ms]
    elif buckets.months is not None:
        # whole months from the origin, minus one when the day-and-time part is earlier
        bucket = (f"((CAST(substr({col}, 1, 4) AS INTEGER) * 12 + CAST(substr({col}, 6, 2) AS "
                  f"INTEGER)) - ? - (substr({col}, 9) < ?)) / ?")
        bucket_params = [int(origin[:4]) * 12 + int(origin[5:7]), origin[8:], buckets.months]
    else:
        bucket, bucket_params = "0", []
    selected = ", ".join(AGGREGATES[m] for m in methods)
    return conn.execute(
        f"SELECT dataset_id, {bucket} AS bucket, {selected} "
        f"FROM temporal_instances INDEXED BY temporal_observed "
        f"WHERE {SERIES} AND deleted_at IS NULL{where} "
        "GROUP BY dataset_id, bucket ORDER BY dataset_id, bucket",
        [*bucket_params, entity, attr, *params]).fetchall()


def _attribute_kind(conn: sqlite3.Connection, entity: str, attr: str) -> str:
    """The type (Property, Relationship...) of an attribute, from one of its instances."""
    row = conn.execute("SELECT json_extract(value, '$.type') FROM temporal_instances "
                       f"WHERE {SERIES} LIMIT 1", (entity, attr)).fetchone()
    return row[0] if row and row[0] else "Property"


def purge_condition(cutoffs: dict[str, str],
                     default_cutoff: str | None) -> tuple[str, list[Any]] | None:
    """WHERE fragment selecting rows older than their retention (attribute cutoffs first)."""
    parts: list[str] = []
    params: list[Any] = []
    for attr, cutoff in sorted(cutoffs.items()):
        parts.append(f"(series & {ATTR_MASK} IN (SELECT id FROM temporal_attrs WHERE iri = ?) "
                     "AND observed_at < ?)")
        params.extend([attr, cutoff])
    if default_cutoff is not None:
        if cutoffs:
            marks = ",".join("?" * len(cutoffs))
            parts.append(f"(series & {ATTR_MASK} NOT IN (SELECT id FROM temporal_attrs "
                         f"WHERE iri IN ({marks})) AND observed_at < ?)")
            params.extend([*sorted(cutoffs), default_cutoff])
        else:
            parts.append("observed_at < ?")
            params.append(default_cutoff)
    if not parts:
        return None
    return "(" + " OR ".join(parts) + ")", params


def selection_sql(query: EntityQuery) -> tuple[list[str], list[Any]]:
    """WHERE fragments over ``temporal_entities te`` for the selectors and attrs of a query."""
    where: list[str] = []
    params: list[Any] = []
    alternatives: list[str] = []
    for selector in query.selectors:
        parts, id_params = id_selection_sql("te.id", selector)
        params.extend(id_params)
        if selector.types is not None:
            sql, type_params = type_sql(
                selector.types,
                lambda _iri: "te.type = ?1x OR (json_array_length(te.types) > 1 AND EXISTS("
                             "SELECT 1 FROM json_each(te.types) WHERE json_each.value = ?1x))")
            # each term's placeholder appears twice: expand the marker into two parameters
            sql = sql.replace("?1x", "?")
            parts.append(sql)
            for iri in type_params:
                params.extend([iri, iri])
        alternatives.append("(" + " AND ".join(parts) + ")" if parts else "1")
    if alternatives:
        where.append(alternatives[0] if len(alternatives) == 1
                     else "(" + " OR ".join(alternatives) + ")")
    if query.attrs:
        marks = ",".join("?" * len(query.attrs))
        where.append(f"EXISTS (SELECT 1 FROM temporal_attrs a WHERE a.iri IN ({marks}) "
                     "AND EXISTS (SELECT 1 FROM temporal_instances ti "
                     f"WHERE ti.series = (te.rowid << {ATTR_BITS}) | a.id))")
        params.extend(sorted(query.attrs))
    return where, params


class TemporalTables(TenantDatabases):
    """The temporal-history reads and retention of ``SqliteStore`` (the port's docstrings say
    what each does). Reads of committed data run on the read pool; ``staged`` ones on the
    writer."""

    #: instance ids handled per purge transaction
    purge_window = 50_000

    #: ``SqliteStore.stage`` (the purge stages its deletions in the group transaction)
    stage: Callable[[str | None, list[Any], Sequence[object]], Awaitable[Awaitable[None]]]

    async def _on(self, tenant: str | None, staged: bool,
                  read: Callable[[sqlite3.Connection], Any], empty: Any) -> Any:
        if staged:
            conn = self._read_staged(tenant)
            return empty if conn is None else read(conn)

        def on_reader() -> Any:
            reader = self._reader(tenant)
            return empty if reader is None else read(reader)

        return await self._read(on_reader)

    async def temporal_entities(self, tenant: str | None, ids: Sequence[str], *,
                                staged: bool = False) -> dict[str, TemporalEntity]:
        found: dict[str, TemporalEntity] = await self._on(
            tenant, staged, lambda conn: _entity_rows(conn, ids), {})
        return found

    async def select_temporal_entities(self, tenant: str | None, query: EntityQuery
                                       ) -> tuple[list[TemporalEntity], int | None]:
        where, params = selection_sql(query)
        clause = " WHERE " + " AND ".join(where) if where else ""

        def select(conn: sqlite3.Connection) -> tuple[list[TemporalEntity], int | None]:
            total = None
            if query.count:
                total = conn.execute(f"SELECT count(*) FROM temporal_entities te{clause}",
                                     params).fetchone()[0]
            rows: list[TemporalEntity] = []
            if query.limit > 0:
                rows = [TemporalEntity(i, tuple(orjson.loads(t)), c, m, d) for i, t, c, m, d in
                        conn.execute(
                            "SELECT te.id, te.types, te.created_at, te.modified_at, te.deleted_at "
                            f"FROM temporal_entities te{clause} ORDER BY te.rowid LIMIT ? OFFSET ?",
                            [*params, query.limit, query.offset])]
            return rows, total

        result: tuple[list[TemporalEntity], int | None] = await self._on(
            tenant, False, select, ([], 0 if query.count else None))
        return result

    async def has_history(self, tenant: str | None, entity: str, attr: str,
                          dataset_id: str | None, *, staged: bool = False) -> bool:
        where, params = SERIES, [entity, attr]
        if dataset_id is not None:
            where += " AND dataset_id = ?"
            params.append(dataset_id)
        found: bool = await self._on(tenant, staged, lambda conn: conn.execute(
            f"SELECT 1 FROM temporal_instances WHERE {where} LIMIT 1", params).fetchone()
            is not None, False)
        return found

    async def history_instance(self, tenant: str | None, entity: str, attr: str,
                               instance_id: int, *, staged: bool = False) -> HistoryRow | None:
        def read(conn: sqlite3.Connection) -> HistoryRow | None:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM temporal_instances WHERE instance_id = ? AND {SERIES}",
                (instance_id, entity, attr)).fetchone()
            return None if row is None else HistoryRow(*row)

        found: HistoryRow | None = await self._on(tenant, staged, read, None)
        return found

    async def histories(self, tenant: str | None, ids: Sequence[str],
                        attrs: frozenset[str] | None, time: TimeFilter, limit: int
                        ) -> dict[str, dict[str, list[HistoryRow]]]:
        def read(conn: sqlite3.Connection) -> dict[str, dict[str, list[HistoryRow]]]:
            out: dict[str, dict[str, list[HistoryRow]]] = {}
            for entity_id in ids:
                histories: dict[str, list[HistoryRow]] = {}
                for attr in entity_attributes(conn, entity_id):
                    if attrs is not None and attr not in attrs:
                        continue
                    rows = attribute_history(conn, entity_id, attr, time, limit)
                    if rows:
                        histories[attr] = rows
                out[entity_id] = histories
            return out

        found: dict[str, dict[str, list[HistoryRow]]] = await self._on(tenant, False, read, {})
        return found

    async def aggregate_histories(self, tenant: str | None, ids: Sequence[str],
                                  attrs: frozenset[str] | None, time: TimeFilter,
                                  methods: Sequence[str], buckets: Buckets,
                                  origin: str | None, with_last_time: bool
                                  ) -> dict[str, dict[str, AttributeAggregate]]:
        def read(conn: sqlite3.Connection) -> dict[str, dict[str, AttributeAggregate]]:
            out: dict[str, dict[str, AttributeAggregate]] = {}
            for entity_id in ids:
                per_attr: dict[str, AttributeAggregate] = {}
                for attr in entity_attributes(conn, entity_id):
                    if attrs is not None and attr not in attrs:
                        continue
                    start = origin or _bound_time(conn, entity_id, attr, time, "min")
                    if start is None:
                        continue
                    rows = aggregate(conn, entity_id, attr, time, methods, buckets, start)
                    if not rows:
                        continue
                    last = (_bound_time(conn, entity_id, attr, time, "max")
                            if with_last_time else None)
                    per_attr[attr] = AttributeAggregate(
                        _attribute_kind(conn, entity_id, attr), start, rows, last)
                out[entity_id] = per_attr
            return out

        found: dict[str, dict[str, AttributeAggregate]] = await self._on(tenant, False, read, {})
        return found

    async def retention(self, tenant: str | None) -> dict[str, int]:
        conn = self._read_staged(tenant)
        if conn is None:
            return {}
        return {attr: days for attr, days in conn.execute(
            "SELECT attr, days FROM temporal_retention ORDER BY attr")}

    async def set_retention(self, tenant: str | None, attr: str, days: int | None) -> None:
        conn = self._writer(tenant)
        if days is None:
            conn.execute("DELETE FROM temporal_retention WHERE attr = ?", (attr,))
        else:
            conn.execute("INSERT INTO temporal_retention (attr, days) VALUES (?, ?) "
                         "ON CONFLICT (attr) DO UPDATE SET days = excluded.days", (attr, days))

    async def purge_history(self, tenant: str | None, cutoffs: dict[str, str],
                            default_cutoff: str | None) -> int:
        """Works in windows of instance ids, each staged in the group transaction, so that
        writers are never blocked for long."""
        condition = purge_condition(cutoffs, default_cutoff)
        conn = self._read_staged(tenant)
        if condition is None or conn is None:
            return 0
        sql, params = condition
        top = conn.execute("SELECT max(instance_id) FROM temporal_instances").fetchone()[0] or 0
        deleted = low = 0
        while low < top:
            high = low + self.purge_window
            (found,) = conn.execute(
                f"SELECT count(*) FROM temporal_instances WHERE instance_id > ? AND "
                f"instance_id <= ? AND {sql}", [low, high, *params]).fetchone()
            if found:
                await (await self.stage(tenant, [], [PurgeWindow(low, high, sql, tuple(params))]))
                deleted += found
            low = high
            await asyncio.sleep(0)
        return deleted
