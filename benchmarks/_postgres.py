"""Shared helpers for the benchmarks on PostgreSQL (``--db DSN``): a fresh namespace per run.

    database = BenchDatabase.create(dsn)        # namespace bench_<hex>, `cityvisor db upgrade`
    BenchServer.start(args=database.serve_args(workers=2), env=database.env())
    database.schema(), database.tenant_schema("bench"), database.size_mb(), database.version()
    database.drop()                              # every schema of the namespace

The namespace (``CITYVISOR_DB_NAMESPACE``, the prefix of every schema the backend makes:
``<ns>_system``, ``<ns>_default``, ``<ns>_t_...``) is new for each run, so a run never sees
another's data, and is dropped at the end even when the benchmark fails.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import asyncpg
from _server import clean_env, cli_command

from cityvisor.store.postgres_connections import schema_name
from cityvisor.store.postgres_migrations import quote

T = TypeVar("T")

__all__ = ["BenchDatabase"]


@dataclass
class BenchDatabase:
    """A PostgreSQL database (``dsn``) and the schema namespace of one benchmark run."""

    dsn: str
    namespace: str

    @classmethod
    def create(cls, dsn: str) -> BenchDatabase:
        """A new namespace in ``dsn``, migrated by ``cityvisor db upgrade --db DSN``."""
        database = cls(dsn, f"bench_{secrets.token_hex(4)}")
        done = subprocess.run([*cli_command(), "db", "upgrade", "--db", dsn],
                              env=clean_env(database.env()), capture_output=True, text=True,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"cityvisor db upgrade failed ({done.returncode}):\n"
                               f"{done.stdout}{done.stderr}")
        return database

    # ---------------------------------------------------------------- the server's view

    def env(self) -> dict[str, str]:
        """What a ``cityvisor`` command on this namespace adds to its environment."""
        return {"CITYVISOR_DB_NAMESPACE": self.namespace}

    def serve_args(self, workers: int = 1) -> list[str]:
        """``cityvisor serve`` arguments (``--workers`` only when more than one)."""
        return ["--db", self.dsn, *(["--workers", str(workers)] if workers > 1 else [])]

    def schema(self, tenant: str | None = None) -> str:
        """The (unquoted) schema of a tenant, as the store names it."""
        return schema_name(self.namespace, tenant)

    # ---------------------------------------------------------------- direct access

    def run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``work(conn)`` on a connection of its own (the benchmarks are synchronous)."""

        async def go() -> T:
            conn = await asyncpg.connect(self.dsn)
            try:
                return await work(conn)
            finally:
                await conn.close()

        return asyncio.run(go())

    def version(self) -> str:
        async def read(conn: asyncpg.Connection) -> str:
            return str(await conn.fetchval("SHOW server_version")).split()[0]

        return self.run(read)

    def settings(self) -> dict[str, str]:
        """The server settings that move the figures (recorded with them)."""

        async def read(conn: asyncpg.Connection) -> dict[str, str]:
            return {name: str(await conn.fetchval(f"SHOW {name}")) for name in SETTINGS}

        return self.run(read)

    def analyze(self, tenant: str | None = None) -> float:
        """``ANALYZE`` the tenant's tables (what autovacuum does after a bulk load: without
        statistics the planner scans a whole type for a ``limit=20`` query); its seconds."""

        async def analyze(conn: asyncpg.Connection) -> float:
            schema = quote(self.schema(tenant))
            started = time.perf_counter()
            await conn.execute("ANALYZE " + ", ".join(f"{schema}.{t}" for t in ANALYZED))
            return time.perf_counter() - started

        return round(self.run(analyze), 2)

    def size_mb(self) -> float:
        """Tables, indexes and TOAST of every schema of the namespace, in MB."""

        async def read(conn: asyncpg.Connection) -> Any:
            return await conn.fetchval(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname LIKE $1 AND c.relkind IN ('r', 'm')", self.namespace + "\\_%")

        return round(int(self.run(read)) / 1e6, 1)

    def drop(self) -> None:
        """Drop every schema of the namespace (and the raw benchmark's scratch schema)."""

        async def drop(conn: asyncpg.Connection) -> None:
            names = await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1",
                                     self.namespace + "\\_%")
            for (name,) in names:
                await conn.execute(f"DROP SCHEMA {quote(name)} CASCADE")

        self.run(drop)

    # ---------------------------------------------------------------- the raw ceiling

    def raw_copy(self, batch: int) -> dict[str, Any]:
        """The raw PostgreSQL insert rate of the rows the server stored for its entities.

        Reads back every row the store wrote in the default tenant's schema for its entities
        (``RAW_TABLES``), creates a scratch schema with the tenant template's own migration
        steps (same tables, indexes, collations) and the same month partitions of
        ``temporal_instances``, then copies the rows (``copy_records_to_table``, binary COPY)
        ``batch`` entities at a time, one transaction per batch (a commit each, as
        ``synchronous_commit`` says). Only the COPYs and commits are timed."""
        return self.run(lambda conn: _raw_copy(conn, self.schema(), self.namespace + "_rawcopy",
                                               batch))


#: recorded with the figures: a machine without autovacuum never gathers statistics itself
SETTINGS = ("shared_buffers", "synchronous_commit", "fsync", "autovacuum", "max_connections",
            "max_wal_size", "checkpoint_timeout", "wal_compression")
#: the tenant tables a benchmark writes (partitions of temporal_instances included)
ANALYZED = ("entities", "entity_geo", "attribute_counts", "temporal_entities",
            "temporal_instances")

#: table -> columns: every row the store writes for an entity (entity row, geometry, the
#: attribute_stats deltas, its history: entity row and one row per attribute instance)
RAW_TABLES = {
    "entities": ("seq", "id", "type", "types", "doc", "created_at", "modified_at",
                 "expires_at"),
    "entity_geo": ("entity", "attr", "geom"),
    "attribute_counts": ("type", "attr", "kind", "delta"),
    "temporal_entities": ("seq", "id", "types", "created_at", "modified_at", "deleted_at"),
    "temporal_instances": ("instance_id", "entity", "attr", "dataset_id", "observed_at",
                           "created_at", "modified_at", "deleted_at", "num", "value"),
}


async def _raw_copy(conn: asyncpg.Connection, source: str, scratch: str,
                    batch: int) -> dict[str, Any]:
    from cityvisor.store.postgres_migrations import TENANT_STEPS

    src, dst = quote(source), quote(scratch)
    # PostGIS geometry travels as (E)WKB bytes, unchanged, both ways (binary COPY needs it)
    await conn.set_type_codec("geometry", schema="public", encoder=bytes, decoder=bytes,
                              format="binary")
    await conn.execute(f"DROP SCHEMA IF EXISTS {dst} CASCADE")
    await conn.execute(f"CREATE SCHEMA {dst}")
    for _, sql in TENANT_STEPS:
        await conn.execute(sql.replace("{schema}", dst))
    for name, bound in await conn.fetch(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass",
            f"{src}.temporal_instances"):
        await conn.execute(f"CREATE TABLE {dst}.{quote(name)} PARTITION OF "
                           f"{dst}.temporal_instances {bound}")
    # one attribute_stats delta per key and batch, as the store appends them
    stats = [tuple(r) for r in await conn.fetch(
        f"SELECT type, attr, kind, sum(delta)::bigint FROM {src}.attribute_counts "
        "GROUP BY type, attr, kind")]
    seqs = [r for (r,) in await conn.fetch(f"SELECT seq FROM {src}.entities ORDER BY seq")]
    rows = dict.fromkeys(RAW_TABLES, 0)
    seconds = 0.0
    try:
        for start in range(0, len(seqs), batch):
            low, high = seqs[start], seqs[min(start + batch, len(seqs)) - 1]
            # reading the source rows is not timed
            columns = {t: ", ".join(c) for t, c in RAW_TABLES.items()}
            entities = await conn.fetch(f"SELECT {columns['entities']} FROM {src}.entities "
                                        "WHERE seq BETWEEN $1 AND $2", low, high)
            data: dict[str, list[Any]] = {"entities": [tuple(r) for r in entities]}
            data["entity_geo"] = [tuple(r) for r in await conn.fetch(
                f"SELECT {columns['entity_geo']} FROM {src}.entity_geo "
                "WHERE entity BETWEEN $1 AND $2", low, high)]
            data["attribute_counts"] = stats
            data["temporal_entities"] = [tuple(r) for r in await conn.fetch(
                f"SELECT {columns['temporal_entities']} FROM {src}.temporal_entities "
                "WHERE id = ANY($1)", [r["id"] for r in entities])]
            data["temporal_instances"] = [tuple(r) for r in await conn.fetch(
                f"SELECT {columns['temporal_instances']} FROM {src}.temporal_instances "
                "WHERE entity = ANY($1)", [r[0] for r in data["temporal_entities"]])]
            t0 = time.perf_counter()
            async with conn.transaction():
                for table, records in data.items():
                    if records:
                        await conn.copy_records_to_table(
                            table, records=records, columns=RAW_TABLES[table],
                            schema_name=scratch)
            seconds += time.perf_counter() - t0
            for table, records in data.items():
                rows[table] += len(records)
        size = await conn.fetchval(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')", scratch)
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {dst} CASCADE")
    return {"seconds": seconds, "entities": len(seqs), "rows": rows,
            "db_mb": round(int(size) / 1e6, 1)}
