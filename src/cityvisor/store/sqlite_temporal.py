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

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from cityvisor.store.sqlite import id_selection_sql
from cityvisor.store.sqlite_q import type_sql

SCHEMA = """
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
TIME_COLUMNS = {"observedAt": "observed_at", "createdAt": "created_at", "modifiedAt": "modified_at"}
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


class InstanceRecord(NamedTuple):
    """One attribute instance to append to the history (a ``stage`` side record). A named
    tuple in column order: it is created for every change, and goes to ``executemany`` as is."""

    entity: str
    entity_type: str
    attr: str
    dataset_id: str
    observed_at: str
    created_at: str
    modified_at: str
    deleted_at: str | None
    num: float | None
    value: str


@dataclass(frozen=True, slots=True)
class EntityRecord:
    """Create or update (``deleted_at`` None) or mark deleted a temporal entity."""

    entity: str
    types: tuple[str, ...]
    created_at: str
    modified_at: str
    deleted_at: str | None = None


@dataclass(frozen=True, slots=True)
class Statement:
    """Any other change of the temporal tables, run in the ``stage`` transaction."""

    sql: str
    params: tuple[Any, ...] = ()


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


def write_statements(conn: sqlite3.Connection, records: list[Statement]) -> None:
    for r in records:
        conn.execute(r.sql, r.params)


WRITERS: dict[type, Any] = {InstanceRecord: write_instances, EntityRecord: write_entities,
                            Statement: write_statements}


# ---------------------------------------------------------------------------- reads


@dataclass(frozen=True)
class TimeFilter:
    """The temporal query, normalised: column, bounds (text, normalised UTC), lastN."""

    column: str = "observed_at"
    after: str | None = None  # t > after   (timerel=after)
    from_: str | None = None  # t >= from_  (timerel=between)
    before: str | None = None  # t < before  (timerel=before, between)
    last_n: int | None = None

    def sql(self) -> tuple[str, list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        if self.after is not None:
            where.append(f"{self.column} > ?")
            params.append(self.after)
        if self.from_ is not None:
            where.append(f"{self.column} >= ?")
            params.append(self.from_)
        if self.before is not None:
            where.append(f"{self.column} < ?")
            params.append(self.before)
        return "".join(" AND " + w for w in where), params


def entity_rows(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """id -> (types JSON, created_at, modified_at, deleted_at) of temporal entities."""
    found: dict[str, tuple[Any, ...]] = {}
    for start in range(0, len(ids), 500):
        chunk = list(ids[start:start + 500])
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
                f"SELECT id, types, created_at, modified_at, deleted_at FROM temporal_entities "
                f"WHERE id IN ({marks})", chunk):
            found[row[0]] = row[1:]
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
                      limit: int) -> list[tuple[Any, ...]]:
    """Up to ``limit`` rows of one attribute, in time order (lastN: the most recent ones,
    newest first). Row: instance_id, attr, dataset_id, observed_at, created_at, modified_at,
    deleted_at, value."""
    where, params = time.sql()
    order = "DESC" if time.last_n is not None else "ASC"
    return conn.execute(
        f"SELECT {_COLUMNS} FROM temporal_instances INDEXED BY {_index(time.column)} "
        f"WHERE {SERIES}{where} ORDER BY {time.column} {order}, instance_id {order} "
        "LIMIT ?", [entity, attr, *params, limit]).fetchall()


def _index(column: str) -> str:
    return "temporal_observed"


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


def first_time(conn: sqlite3.Connection, entity: str, attr: str, time: TimeFilter) -> str | None:
    where, params = time.sql()
    row = conn.execute(
        f"SELECT min({time.column}) FROM temporal_instances INDEXED BY {_index(time.column)} "
        f"WHERE {SERIES} AND deleted_at IS NULL{where}",
        [entity, attr, *params]).fetchone()
    return row[0] if row else None


def aggregate(conn: sqlite3.Connection, entity: str, attr: str, time: TimeFilter,
              methods: Sequence[str], origin_jd: float, period_ms: int | None,
              months: int | None, origin: str) -> list[tuple[Any, ...]]:
    """Rows (dataset_id, bucket, method values...) of one attribute, grouped per period.

    Buckets: ``period_ms`` fixed periods from the origin (julian day ``origin_jd``); or
    ``months`` calendar months from ``origin``; or one bucket (both None)."""
    where, params = time.sql()
    col = time.column
    if period_ms is not None:
        bucket = f"CAST(round((julianday({col}) - ?) * 86400000.0) AS INTEGER) / ?"
        bucket_params: list[Any] = [origin_jd, period_ms]
    elif months is not None:
        # whole months from the origin, minus one when the day-and-time part is earlier
        bucket = (f"((CAST(substr({col}, 1, 4) AS INTEGER) * 12 + CAST(substr({col}, 6, 2) AS "
                  f"INTEGER)) - ? - (substr({col}, 9) < ?)) / ?")
        bucket_params = [int(origin[:4]) * 12 + int(origin[5:7]), origin[8:], months]
    else:
        bucket, bucket_params = "0", []
    selected = ", ".join(AGGREGATES[m] for m in methods)
    return conn.execute(
        f"SELECT dataset_id, {bucket} AS bucket, {selected} "
        f"FROM temporal_instances INDEXED BY {_index(col)} "
        f"WHERE {SERIES} AND deleted_at IS NULL{where} "
        "GROUP BY dataset_id, bucket ORDER BY dataset_id, bucket",
        [*bucket_params, entity, attr, *params]).fetchall()


def attribute_kind(conn: sqlite3.Connection, entity: str, attr: str) -> str:
    """The type (Property, Relationship...) of an attribute, from one of its instances."""
    row = conn.execute("SELECT json_extract(value, '$.type') FROM temporal_instances "
                       f"WHERE {SERIES} LIMIT 1", (entity, attr)).fetchone()
    return row[0] if row and row[0] else "Property"


def instance_row(conn: sqlite3.Connection, entity: str, attr: str,
                 instance_id: int) -> tuple[Any, ...] | None:
    return conn.execute(
        f"SELECT {_COLUMNS} FROM temporal_instances WHERE instance_id = ? AND {SERIES}",
        (instance_id, entity, attr)).fetchone()


# ---------------------------------------------------------------------------- retention


def retention_settings(conn: sqlite3.Connection) -> dict[str, int]:
    return {attr: days for attr, days in conn.execute(
        "SELECT attr, days FROM temporal_retention ORDER BY attr")}


def set_retention(conn: sqlite3.Connection, attr: str, days: int | None) -> None:
    if days is None:
        conn.execute("DELETE FROM temporal_retention WHERE attr = ?", (attr,))
    else:
        conn.execute("INSERT INTO temporal_retention (attr, days) VALUES (?, ?) "
                      "ON CONFLICT (attr) DO UPDATE SET days = excluded.days", (attr, days))


def purge_condition(cutoffs: dict[str, str], default_cutoff: str | None) -> tuple[str, list[Any]] | None:
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


__all__ = ["SCHEMA", "TIME_COLUMNS", "WRITERS", "EntityRecord", "InstanceRecord", "Statement",
           "TimeFilter"]


def select_entities(conn: sqlite3.Connection, where: list[str], params: list[Any], limit: int,
                    offset: int, count: bool) -> tuple[list[tuple[Any, ...]], int | None]:
    """Temporal entities (id, types JSON, created_at, modified_at) matching ``where`` (alias
    ``te``), in creation order, paginated; and their count if asked."""
    clause = " WHERE " + " AND ".join(where) if where else ""
    total = None
    if count:
        total = conn.execute(f"SELECT count(*) FROM temporal_entities te{clause}",
                             params).fetchone()[0]
    rows: list[tuple[Any, ...]] = []
    if limit > 0:
        rows = conn.execute(
            f"SELECT te.id, te.types, te.created_at, te.modified_at FROM temporal_entities te"
            f"{clause} ORDER BY te.rowid LIMIT ? OFFSET ?", [*params, limit, offset]).fetchall()
    return rows, total


def selection_sql(query: Any) -> tuple[list[str], list[Any]]:
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
