"""Embedded store: one SQLite file per tenant, WAL mode (ADR 0002); the entities.

Layout of the entity tables of a tenant database (the temporal history is in
``sqlite_temporal``, subscriptions and the outbox in ``sqlite_subscriptions``, entity maps in
``sqlite_entity_maps``):

- ``entities``: one row per entity: id, first type IRI, the stored form as JSON text (``doc``,
  which ``json_extract`` filters read), timestamps. Index ``(type, rowid)`` serves type queries
  in insertion order, so ``LIMIT`` stops early.
- ``entity_types``: the extra types of multi-typed entities (rare).
- ``geo``: an R*Tree of the bounding boxes of every GeoProperty instance, rowid
  ``entity_rowid * 1024 + slot``; exact predicates run in Python (shapely) on the candidates.
- ``attr_values``: every scalar value a ``q`` comparison looks at, per (attribute, kind
  n/s/b, value, entity), so that simple comparisons (``a>5``, ``a=="x"``, ranges, lists) are
  answered from an index instead of parsing JSON; other ``q`` terms run ``json_extract`` SQL
  (``sqlite_q``).
- ``attribute_stats``: counts per (type, attribute, kind), kept in step by every write, for
  ``/types`` and ``/attributes`` without scanning.

Writes run on the caller's thread (the event loop) in ``BEGIN IMMEDIATE`` transactions shared
by the writers of one loop turn (group commit); ``synchronous=NORMAL`` in WAL mode makes a
committed transaction survive a killed process (``synchronous=FULL``, setting
``sqlite_synchronous``, survives power loss too). Queries run on the read pool of
``sqlite_connections``.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

from cityvisor.ngsild import geo as geo_predicates
from cityvisor.ngsild import ordering, typequery
from cityvisor.ngsild import query as q_language
from cityvisor.ngsild.errors import AlreadyExists
from cityvisor.ngsild.model import entity_expiry
from cityvisor.store.attribute_counts import stats_delta
from cityvisor.store.base import (
    AttributeStat,
    Entity,
    EntityQuery,
    EntitySelector,
    QueryResult,
    Store,
    WriteOp,
)
from cityvisor.store.rechecks import geo_matches
from cityvisor.store.sql_selection import order_columns
from cityvisor.store.sqlite_connections import id_selection_sql
from cityvisor.store.sqlite_entity_maps import ENTITY_MAP_SCHEMA, EntityMapTables
from cityvisor.store.sqlite_entity_maps import WRITERS as ENTITY_MAP_WRITERS
from cityvisor.store.sqlite_q import q_sql, scope_sql, type_sql
from cityvisor.store.sqlite_subscriptions import (
    SUBSCRIPTION_SCHEMA,
    SubscriptionTables,
    upgrade_subscriptions,
)
from cityvisor.store.sqlite_subscriptions import WRITERS as SUBSCRIPTION_WRITERS
from cityvisor.store.sqlite_temporal import TEMPORAL_SCHEMA, TemporalTables
from cityvisor.store.sqlite_temporal import WRITERS as TEMPORAL_WRITERS

GEO_SLOTS = 1024  # GeoProperty instances indexed per entity

SCHEMA = """
CREATE TABLE IF NOT EXISTS entities (
  rowid INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  type TEXT NOT NULL,
  doc TEXT NOT NULL,
  created_at TEXT NOT NULL,
  modified_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entities_type ON entities(type);
CREATE TABLE IF NOT EXISTS entity_types (
  type TEXT NOT NULL, entity INTEGER NOT NULL, PRIMARY KEY (type, entity)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entity_types_entity ON entity_types(entity);
CREATE VIRTUAL TABLE IF NOT EXISTS geo USING rtree(id, minx, maxx, miny, maxy, +attr TEXT);
CREATE TABLE IF NOT EXISTS attr_values (
  attr TEXT NOT NULL, kind TEXT NOT NULL, value ANY, entity INTEGER NOT NULL,
  PRIMARY KEY (attr, kind, value, entity)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS attr_values_entity ON attr_values(entity, attr, kind, value);
CREATE TABLE IF NOT EXISTS expiries (
  id TEXT PRIMARY KEY, at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS expiries_at ON expiries(at);
CREATE TABLE IF NOT EXISTS attribute_stats (
  type TEXT NOT NULL, attr TEXT NOT NULL, kind TEXT NOT NULL, count INTEGER NOT NULL,
  PRIMARY KEY (type, attr, kind)
) WITHOUT ROWID;
"""


class SqliteStore(TemporalTables, SubscriptionTables, EntityMapTables, Store):
    """The embedded backend: ``<directory>/default.sqlite`` and ``tenant-<name>.sqlite``."""

    schemas = (SCHEMA, TEMPORAL_SCHEMA, SUBSCRIPTION_SCHEMA, ENTITY_MAP_SCHEMA)

    def __init__(self, directory: Path | str, *, synchronous: str = "NORMAL",
                 readers: int = 4) -> None:
        super().__init__(directory, synchronous=synchronous, readers=readers)
        self._multi_typed: dict[str | None, bool] = {}
        self._committed: dict[str | None, asyncio.Future[None]] = {}

    def _opened(self, tenant: str | None, conn: sqlite3.Connection) -> None:
        upgrade_subscriptions(conn)
        self._multi_typed[tenant] = (
            conn.execute("SELECT 1 FROM entity_types LIMIT 1").fetchone() is not None)

    # ------------------------------------------------------------------ reads

    async def get(self, tenant: str | None, entity_id: str) -> Entity | None:
        if not self._exists(tenant):
            return None
        row = self._writer(tenant).execute(
            "SELECT doc FROM entities WHERE id = ?", (entity_id,)
        ).fetchone()
        return orjson.loads(row[0]) if row else None

    async def get_many(self, tenant: str | None, entity_ids: list[str]) -> dict[str, Entity]:
        if not entity_ids or not self._exists(tenant):
            return {}
        conn = self._writer(tenant)
        found: dict[str, Entity] = {}
        unique = list(dict.fromkeys(entity_ids))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for entity_id, doc in conn.execute(
                f"SELECT id, doc FROM entities WHERE id IN ({marks})", chunk
            ):
                found[entity_id] = orjson.loads(doc)
        return found

    async def query(self, tenant: str | None, query: EntityQuery) -> QueryResult:
        return await self._read(self._query_sync, tenant, query)

    async def next_expiry(self, tenant: str | None) -> str | None:
        if not self._exists(tenant):
            return None
        row = self._writer(tenant).execute("SELECT min(at) FROM expiries").fetchone()
        return row[0] if row else None

    async def expiring(self, tenant: str | None, until: str) -> list[Entity]:
        if not self._exists(tenant):
            return []
        rows = self._writer(tenant).execute(
            "SELECT e.doc FROM expiries x JOIN entities e ON e.id = x.id WHERE x.at <= ? "
            "ORDER BY x.at", (until,)).fetchall()
        return [orjson.loads(doc) for (doc,) in rows]

    def _query_sync(self, tenant: str | None, query: EntityQuery) -> QueryResult:
        conn = self._reader(tenant)
        if conn is None:
            return QueryResult([], 0 if query.count else None)
        where, params, exact = self._where(tenant, query)
        clause = " WHERE " + " AND ".join(where) if where else ""
        if query.order is not None:
            return self._ordered(conn, clause, params, exact, query)
        if exact:
            count = None
            if query.count:
                count = conn.execute(f"SELECT count(*) FROM entities e{clause}", params).fetchone()[0]
            entities: list[Entity] = []
            if query.limit > 0:
                rows = conn.execute(
                    f"SELECT e.doc FROM entities e{clause} ORDER BY e.rowid LIMIT ? OFFSET ?",
                    [*params, query.limit, query.offset],
                )
                entities = [orjson.loads(doc) for (doc,) in rows]
            return QueryResult(entities, count)
        # Inexact SQL: stream the candidates and apply the exact predicates here.
        matched: list[Entity] = []
        total = 0
        stop = query.offset + query.limit
        for entity in self._candidates(conn, clause, params, exact, query):
            if query.offset <= total < stop:
                matched.append(entity)
            total += 1
            if total >= stop and not query.count:
                break
        return QueryResult(matched, total if query.count else None)

    @staticmethod
    def _candidates(conn: sqlite3.Connection, clause: str, params: list[Any], exact: bool,
                    query: EntityQuery) -> Iterator[Entity]:
        """The matching entities in insertion order; the exact predicates run here on the
        candidates of an inexact WHERE."""
        for (doc,) in conn.execute(f"SELECT e.doc FROM entities e{clause} ORDER BY e.rowid", params):
            entity: Entity = orjson.loads(doc)
            if not exact:
                if query.q is not None and not q_language.evaluate(query.q, entity):
                    continue
                if query.geo is not None and not geo_matches(query.geo, entity):
                    continue
            yield entity

    def _ordered(self, conn: sqlite3.Connection, clause: str, params: list[Any], exact: bool,
                 query: EntityQuery) -> QueryResult:
        """An ordered page (clause 4.23): the WHERE selects, ``ordering.page`` sorts the
        matches keeping only the page's worth of them."""
        assert query.order is not None
        columns = order_columns(query.order, _MEMBER_COLUMNS, "e.rowid")
        if exact and columns is not None:
            count = (conn.execute(f"SELECT count(*) FROM entities e{clause}", params).fetchone()[0]
                     if query.count else None)
            rows = conn.execute(f"SELECT e.doc FROM entities e{clause} ORDER BY {columns} "
                                "LIMIT ? OFFSET ?", [*params, max(query.limit, 0), query.offset])
            return QueryResult([orjson.loads(doc) for (doc,) in rows], count)
        total = [0]

        def counted() -> Iterator[Entity]:
            for entity in self._candidates(conn, clause, params, exact, query):
                total[0] += 1
                yield entity

        entities = ordering.page(counted(), lambda e: e, query.order, query.offset, query.limit)
        if query.count and query.limit <= 0:
            total[0] = sum(1 for _ in self._candidates(conn, clause, params, exact, query))
        return QueryResult(entities, total[0] if query.count else None)

    def _where(self, tenant: str | None, query: EntityQuery) -> tuple[list[str], list[Any], bool]:
        where: list[str] = []
        params: list[Any] = []
        exact = True
        if query.selectors:
            alternatives: list[str] = []
            for selector in query.selectors:
                clause, clause_params = self._selector_sql(tenant, selector)
                alternatives.append(clause)
                params.extend(clause_params)
            where.append(alternatives[0] if len(alternatives) == 1
                         else "(" + " OR ".join(alternatives) + ")")
        if query.attrs:
            where.append("(" + " OR ".join(
                "json_type(e.doc, ?) IS NOT NULL" for _ in query.attrs) + ")")
            params.extend(_attr_path(iri) for iri in sorted(query.attrs))
        if query.scope is not None:
            sql, scope_params = scope_sql(query.scope, "e.doc")
            where.append(sql)
            params.extend(scope_params)
        if query.q is not None:
            sql, q_params, q_exact = q_sql(query.q, probe=not query.count)
            where.append(sql)
            params.extend(q_params)
            exact = exact and q_exact
        if query.geo is not None:
            exact = False
            box = geo_predicates.prefilter_bbox(query.geo)
            if box is not None:
                minx, miny, maxx, maxy = box
                where.append(
                    f"e.rowid IN (SELECT id / {GEO_SLOTS} FROM geo WHERE maxx >= ? AND minx <= ? "
                    "AND maxy >= ? AND miny <= ? AND attr = ?)"
                )
                params.extend([minx, maxx, miny, maxy, query.geo.geoproperty])
        return where, params, exact

    def _selector_sql(self, tenant: str | None, selector: EntitySelector) -> tuple[str, list[Any]]:
        where, params = id_selection_sql("e.id", selector)
        if selector.types is not None:
            simple = typequery.simple_types(selector.types)
            if simple is not None and not self._multi_typed.get(tenant, True):
                where.append(f"e.type IN ({','.join('?' * len(simple))})")
                params.extend(simple)
            else:
                sql, type_params = self._type_sql(selector.types)
                where.append(sql)
                params.extend(type_params)
        return ("(" + " AND ".join(where) + ")" if where else "1"), params

    @staticmethod
    def _type_sql(node: typequery.TypeNode) -> tuple[str, list[Any]]:
        # One placeholder per type term: matched against the first type or the extra types.
        def one(_iri: str) -> str:
            return ("(e.type = ? OR EXISTS(SELECT 1 FROM entity_types t "
                    "WHERE t.entity = e.rowid AND t.type = ?))")

        sql, params = type_sql(node, one)
        doubled: list[Any] = []
        for iri in params:
            doubled.extend([iri, iri])
        return sql, doubled

    async def attribute_stats(self, tenant: str | None) -> list[AttributeStat]:
        if not self._exists(tenant):
            return []
        rows = self._writer(tenant).execute(
            "SELECT type, attr, kind, count FROM attribute_stats WHERE count > 0 ORDER BY type, attr"
        )
        return [AttributeStat(*row) for row in rows]

    # ------------------------------------------------------------------ writes

    async def stage(self, tenant: str | None, ops: list[WriteOp],
                    records: Sequence[object] = ()) -> Awaitable[None]:
        """Apply ops inside the tenant's open group transaction (under a savepoint, so they
        are all-or-nothing); the transaction commits on the next turn of the event loop, so
        concurrent writers share one commit."""
        loop = asyncio.get_running_loop()
        committed = self._committed.get(tenant)
        if not ops and not records:
            if committed is not None:
                return asyncio.shield(committed)
            done = loop.create_future()
            done.set_result(None)
            return done
        conn = self._writer(tenant)
        if committed is None:
            conn.execute("BEGIN IMMEDIATE")
            committed = self._committed[tenant] = loop.create_future()
            loop.call_soon(self._commit, tenant)
        side = _SideRows()
        conn.execute("SAVEPOINT op")
        try:
            inserts: list[Entity] = []
            for op in ops:
                if op.old is None and op.new is not None:
                    inserts.append(op.new)
                    continue
                self._insert(conn, tenant, inserts, side)
                self._apply(conn, tenant, op, side)
            self._insert(conn, tenant, inserts, side)
            side.write(conn)
            self._write_records(conn, records)
        except BaseException:
            conn.execute("ROLLBACK TO op")
            conn.execute("RELEASE op")
            raise
        conn.execute("RELEASE op")
        # Writers of one loop turn share this future: each gets a shield, so that a cancelled
        # writer (a dropped request, a stopping task) never cancels the others' commit.
        return asyncio.shield(committed)

    def _write_records(self, conn: sqlite3.Connection, records: Sequence[object]) -> None:
        """Side records, grouped by type (one ``executemany`` each), in first-seen order."""
        by_type: dict[type, list[Any]] = {}
        for record in records:
            by_type.setdefault(type(record), []).append(record)
        for record_type, items in by_type.items():
            writer = RECORD_WRITERS.get(record_type)
            if writer is None:
                raise TypeError(f"{record_type.__name__} is not a record this store persists")
            writer(conn, items)

    def _commit(self, tenant: str | None) -> None:
        committed = self._committed.pop(tenant)
        try:
            self._writers[tenant].execute("COMMIT")
        except Exception as error:
            with contextlib.suppress(sqlite3.Error):
                self._writers[tenant].execute("ROLLBACK")
            if not committed.done():
                committed.set_exception(error)
        else:
            if not committed.done():
                committed.set_result(None)

    def _insert(self, conn: sqlite3.Connection, tenant: str | None, entities: list[Entity],
                side: _SideRows) -> None:
        """Insert new entities with one ``executemany``; rowids are assigned here, after the
        largest one in the table (read inside this write transaction, so it is current)."""
        if not entities:
            return
        first = (conn.execute("SELECT max(rowid) FROM entities").fetchone()[0] or 0) + 1
        rows = []
        for offset, new in enumerate(entities):
            stats_delta(side.stats, None, new)
            side.change(first + offset, None, new)
            if len(new["type"]) > 1:
                self._multi_typed[tenant] = True
            rows.append((first + offset, new["id"], new["type"][0], orjson.dumps(new).decode(),
                         new["createdAt"], new["modifiedAt"]))
        expiries = [(new["id"], at) for new in entities if (at := entity_expiry(new))]
        entities.clear()
        try:
            conn.executemany("INSERT INTO entities (rowid, id, type, doc, created_at, "
                             "modified_at) VALUES (?, ?, ?, ?, ?, ?)", rows)
        except sqlite3.IntegrityError as error:
            raise AlreadyExists(f"An entity of this batch already exists: {error}") from error
        if expiries:
            conn.executemany("INSERT OR REPLACE INTO expiries (id, at) VALUES (?, ?)", expiries)

    def _apply(self, conn: sqlite3.Connection, tenant: str | None, op: WriteOp,
               side: _SideRows) -> None:
        """Write one entity row; collect its index rows in ``side`` (written in bulk)."""
        old, new = op.old, op.new
        stats_delta(side.stats, old, new)
        _write_expiry(conn, old, new)
        if new is None:
            assert old is not None
            row = conn.execute("DELETE FROM entities WHERE id = ? RETURNING rowid",
                               (old["id"],)).fetchone()
            if row is not None:
                side.change(row[0], old, None)
            return
        doc = orjson.dumps(new).decode()
        if old is None:
            try:
                rowid = conn.execute(
                    "INSERT INTO entities (id, type, doc, created_at, modified_at) "
                    "VALUES (?, ?, ?, ?, ?) RETURNING rowid",
                    (new["id"], new["type"][0], doc, new["createdAt"], new["modifiedAt"]),
                ).fetchone()[0]
            except sqlite3.IntegrityError as error:
                raise AlreadyExists(f"Entity {new['id']} already exists") from error
        else:
            rowid = conn.execute(
                "UPDATE entities SET type = ?, doc = ?, modified_at = ? WHERE id = ? "
                "RETURNING rowid",
                (new["type"][0], doc, new["modifiedAt"], new["id"]),
            ).fetchone()[0]
        side.change(rowid, old, new)
        if len(new["type"]) > 1:
            self._multi_typed[tenant] = True

    async def close(self) -> None:
        for tenant in list(self._committed):
            self._commit(tenant)
        self._close_connections()


class _SideRows:
    """Changes to the index tables of one ``stage`` call, written with one ``executemany``
    per table. Later changes of the same row win, so an entity changed twice in a batch ends
    in its final state."""

    def __init__(self) -> None:
        self.stats: Counter[tuple[str, str, str]] = Counter()
        self.values: dict[tuple[str, str, Any, int], bool] = {}  # row -> present?
        self.geo: dict[int, tuple[Any, ...] | None] = {}  # R*Tree id -> row or None
        self.types: dict[int, list[str]] = {}  # entity rowid -> extra types

    def change(self, rowid: int, old: Entity | None, new: Entity | None) -> None:
        old_attrs = old["attrs"] if old else {}
        new_attrs = new["attrs"] if new else {}
        for iri in old_attrs.keys() | new_attrs.keys():
            before, after = old_attrs.get(iri), new_attrs.get(iri)
            if before == after:
                continue
            old_values = _values(iri, before)
            new_values = _values(iri, after)
            for row in old_values - new_values:
                self.values[(*row, rowid)] = False
            for row in new_values - old_values:
                self.values[(*row, rowid)] = True
        old_boxes = list(_geo_boxes(old)) if old else []
        new_boxes = list(_geo_boxes(new)) if new else []
        if old_boxes != new_boxes:
            for slot in range(min(len(old_boxes), GEO_SLOTS)):
                self.geo[rowid * GEO_SLOTS + slot] = None
            for slot, (attr, b) in enumerate(new_boxes[:GEO_SLOTS]):
                self.geo[rowid * GEO_SLOTS + slot] = (b[0], b[2], b[1], b[3], attr)
        old_types = old["type"][1:] if old else []
        new_types = new["type"][1:] if new else []
        if old_types != new_types:
            self.types[rowid] = new_types

    def write(self, conn: sqlite3.Connection) -> None:
        if self.values:
            conn.executemany(
                "DELETE FROM attr_values WHERE attr = ? AND kind = ? AND value = ? AND entity = ?",
                [row for row, present in self.values.items() if not present])
            conn.executemany(
                "INSERT OR IGNORE INTO attr_values (attr, kind, value, entity) VALUES (?, ?, ?, ?)",
                [row for row, present in self.values.items() if present])
        if self.geo:
            conn.executemany("DELETE FROM geo WHERE id = ?", [(i,) for i in self.geo])
            conn.executemany(
                "INSERT INTO geo (id, minx, maxx, miny, maxy, attr) VALUES (?, ?, ?, ?, ?, ?)",
                [(i, *row) for i, row in self.geo.items() if row is not None])
        if self.types:
            conn.executemany("DELETE FROM entity_types WHERE entity = ?",
                             [(e,) for e in self.types])
            conn.executemany("INSERT OR IGNORE INTO entity_types (type, entity) VALUES (?, ?)",
                             [(t, e) for e, types in self.types.items() for t in types])
        changes = [(t, a, k, n) for (t, a, k), n in self.stats.items() if n]
        if changes:
            conn.executemany(
                "INSERT INTO attribute_stats (type, attr, kind, count) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (type, attr, kind) DO UPDATE SET count = count + excluded.count",
                changes)
            if any(n < 0 for *_, n in changes):
                conn.execute("DELETE FROM attribute_stats WHERE count <= 0")


_INT64 = 2**63


def _write_expiry(conn: sqlite3.Connection, old: Entity | None, new: Entity | None) -> None:
    """Keep the ``expiries`` row of a changed entity (clause 4.22 transience)."""
    at = entity_expiry(new) if new is not None else None
    if new is not None and at is not None:
        conn.execute("INSERT OR REPLACE INTO expiries (id, at) VALUES (?, ?)", (new["id"], at))
    elif old is not None and entity_expiry(old) is not None:
        conn.execute("DELETE FROM expiries WHERE id = ?", (old["id"],))


def _values(iri: str, instances: list[dict[str, Any]] | None) -> set[tuple[str, str, Any]]:
    """(attribute, kind, value) rows of an attribute for ``attr_values``."""
    rows: set[tuple[str, str, Any]] = set()
    if instances is None:
        return rows
    if len(instances) == 1:  # fast path: one Property with a scalar value
        instance = instances[0]
        value: Any = instance.get("value")
        if instance["type"] == "Property" and type(value) in (str, int, float, bool):
            if type(value) is str:
                rows.add((iri, "s", value))
            elif type(value) is bool:
                rows.add((iri, "b", int(value)))
            elif type(value) is float or -_INT64 <= value < _INT64:
                rows.add((iri, "n", value))
            else:
                rows.add((iri, "n", float(value)))
            return rows
    for instance in instances:
        for value in q_language.comparable_values(instance):
            if isinstance(value, bool):
                rows.add((iri, "b", int(value)))
            elif isinstance(value, int):
                rows.add((iri, "n", value if -_INT64 <= value < _INT64 else float(value)))
            elif isinstance(value, float):
                rows.add((iri, "n", value))
            elif isinstance(value, str):
                rows.add((iri, "s", value))
    return rows


def _attr_path(iri: str) -> str:
    return '$.attrs."' + iri.replace('"', '\\"') + '"'


#: side record type -> ``writer(conn, records)``, run in ``stage``'s transaction
RECORD_WRITERS: dict[type, Callable[[sqlite3.Connection, list[Any]], None]] = {
    **TEMPORAL_WRITERS, **SUBSCRIPTION_WRITERS, **ENTITY_MAP_WRITERS}


#: entity members with a column of their own (text in code point order, as Python compares)
_MEMBER_COLUMNS = {"id": "e.id", "createdAt": "e.created_at", "modifiedAt": "e.modified_at"}


def _geo_boxes(entity: Entity) -> Iterator[tuple[str, tuple[float, float, float, float]]]:
    for iri, instances in entity["attrs"].items():
        for instance in instances:
            if instance["type"] == "GeoProperty":
                yield iri, geo_predicates.bbox(instance["value"])
