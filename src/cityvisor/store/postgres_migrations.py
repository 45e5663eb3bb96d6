"""Versioned schema migrations of the PostgreSQL backend (``docs/postgresql.md``).

Two ordered lists of ``(version, SQL)`` steps: ``SYSTEM_STEPS`` for the schema shared by all
tenants (``<namespace>_system``: contexts, tokens, the tenant registry and
``schema_migrations``), ``TENANT_STEPS`` for the template of every tenant schema (``{schema}``
stands for the quoted schema name). ``schema_migrations`` records, per schema, every version
applied. A new step is appended with the next version, never edited once released.

- ``upgrade(dsn)`` applies the missing steps (the system schema, then every registered
  tenant), under an advisory lock so that two processes never migrate at once; ``cityvisor db
  upgrade`` runs it.
- ``check(dsn)`` raises ``DatabaseBehind`` when a schema lacks a step: a server refuses to
  start on a database older than its code.
- A tenant created by a write gets every step at once (``create_tenant_schema``).
"""

from __future__ import annotations

import asyncpg

#: the PostGIS extension every tenant schema needs (geometry columns, GiST indexes)
EXTENSIONS = "CREATE EXTENSION IF NOT EXISTS postgis"

SYSTEM_STEPS: list[tuple[int, str]] = [
    (1, """
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
  schema_name text COLLATE "C" NOT NULL,
  version integer NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (schema_name, version)
);
CREATE TABLE IF NOT EXISTS {schema}.tenants (
  seq bigint GENERATED ALWAYS AS IDENTITY,
  name text COLLATE "C" PRIMARY KEY,        -- '' is the default tenant
  schema_name text COLLATE "C" NOT NULL UNIQUE
);
CREATE TABLE {schema}.contexts (
  seq bigint GENERATED ALWAYS AS IDENTITY,
  id text COLLATE "C" PRIMARY KEY,
  url text COLLATE "C" NOT NULL UNIQUE,
  kind text NOT NULL,                         -- Hosted | Cached
  document bytea NOT NULL,                    -- the whole document, {"@context": ...}
  created_at text COLLATE "C" NOT NULL
);
CREATE TABLE {schema}.tokens (
  seq bigint GENERATED ALWAYS AS IDENTITY,
  id text COLLATE "C" PRIMARY KEY,
  secret_sha256 text NOT NULL,
  role text NOT NULL,
  tenant text NOT NULL,
  name text NOT NULL DEFAULT '',
  created_at text COLLATE "C" NOT NULL,
  revoked_at text
);
"""),
]

TENANT_STEPS: list[tuple[int, str]] = [
    (1, """
-- entities in the stored form (docs/internal-model.md); seq gives the insertion order
CREATE TABLE {schema}.entities (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id text COLLATE "C" NOT NULL UNIQUE,
  type text COLLATE "C" NOT NULL,             -- the first type: (type, seq) serves type pages
  types text[] COLLATE "C" NOT NULL,          -- every type: GIN for multi-typed selections
  doc jsonb NOT NULL,
  created_at text COLLATE "C" NOT NULL,
  modified_at text COLLATE "C" NOT NULL,
  expires_at text COLLATE "C"                 -- the first expiresAt (clause 4.22)
);
CREATE INDEX entities_type ON {schema}.entities (type, seq);
CREATE INDEX entities_types ON {schema}.entities USING gin (types);
CREATE INDEX entities_expiry ON {schema}.entities (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX entities_multi_typed ON {schema}.entities (seq) WHERE cardinality(types) > 1;
-- one row per GeoProperty instance (clause 4.7), for the geo-queries (clause 4.10)
CREATE TABLE {schema}.entity_geo (
  entity bigint NOT NULL,                     -- entities.seq
  attr text COLLATE "C" NOT NULL,
  geom geometry(Geometry, 4326) NOT NULL
);
CREATE INDEX entity_geo_entity ON {schema}.entity_geo (entity);
CREATE INDEX entity_geo_geom ON {schema}.entity_geo USING gist (geom);
-- attribute_stats deltas (append-only, compacted now and then: writers never wait on a row)
CREATE TABLE {schema}.attribute_counts (
  type text COLLATE "C" NOT NULL,
  attr text COLLATE "C" NOT NULL,
  kind text COLLATE "C" NOT NULL,
  delta bigint NOT NULL
);

-- temporal history (clauses 5.6.11-5.6.16, 5.7.3-5.7.4)
CREATE TABLE {schema}.temporal_entities (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id text COLLATE "C" NOT NULL UNIQUE,
  types text[] COLLATE "C" NOT NULL,
  created_at text COLLATE "C" NOT NULL,
  modified_at text COLLATE "C" NOT NULL,
  deleted_at text COLLATE "C"
);
CREATE INDEX temporal_entities_types ON {schema}.temporal_entities USING gin (types);
CREATE SEQUENCE {schema}.temporal_instance_ids;
-- attribute instances, partitioned by month of observed_at (partitions made on demand)
CREATE TABLE {schema}.temporal_instances (
  instance_id bigint NOT NULL DEFAULT nextval('{schema}.temporal_instance_ids'),
  entity bigint NOT NULL,                     -- temporal_entities.seq
  attr text COLLATE "C" NOT NULL,
  dataset_id text COLLATE "C" NOT NULL,
  observed_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL,
  modified_at timestamptz NOT NULL,
  deleted_at timestamptz,
  num double precision,
  value text NOT NULL
) PARTITION BY RANGE (observed_at);
CREATE INDEX temporal_series ON {schema}.temporal_instances (entity, attr, observed_at, instance_id);
CREATE INDEX temporal_time ON {schema}.temporal_instances USING brin (observed_at);
CREATE INDEX temporal_ids ON {schema}.temporal_instances USING brin (instance_id);
CREATE TABLE {schema}.temporal_retention (
  attr text COLLATE "C" PRIMARY KEY,
  days integer NOT NULL
);

-- subscriptions and the transactional outbox
CREATE TABLE {schema}.subscriptions (
  seq bigint GENERATED ALWAYS AS IDENTITY,
  id text COLLATE "C" PRIMARY KEY,
  doc text NOT NULL,
  context text,
  times_sent integer NOT NULL DEFAULT 0,
  last_notification text,
  last_success text,
  last_failure text,
  delivery text
);
CREATE TABLE {schema}.outbox (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- never reused
  subscription text COLLATE "C" NOT NULL,
  endpoint text NOT NULL,
  target text NOT NULL,
  payload bytea NOT NULL,
  created_at double precision NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at double precision NOT NULL DEFAULT 0
);
CREATE INDEX outbox_retry ON {schema}.outbox (next_attempt_at) WHERE next_attempt_at > 0;
CREATE INDEX outbox_subscription ON {schema}.outbox (subscription);

-- entity maps (clause 5.2.39)
CREATE TABLE {schema}.entity_maps (
  id text COLLATE "C" PRIMARY KEY,
  expires_at text COLLATE "C" NOT NULL,
  entity_ids text[] NOT NULL,
  created_at text NOT NULL
);
CREATE INDEX entity_maps_expiry ON {schema}.entity_maps (expires_at);
"""),
    (2, """
-- outbox claims: a reader (a worker's dispatcher) holds the rows it read until claimed_until
-- (a lease); several workers never deliver the same row at once, a dead worker's rows come
-- back when the lease expires
ALTER TABLE {schema}.outbox ADD COLUMN claimed_by text, ADD COLUMN claimed_until timestamptz;
CREATE INDEX outbox_unclaimed ON {schema}.outbox (id)
  WHERE next_attempt_at = 0 AND claimed_until IS NULL;
CREATE INDEX outbox_claims ON {schema}.outbox (claimed_until) WHERE claimed_until IS NOT NULL;
"""),
    (3, """
-- notifications that failed (clause 5.2.14 timesFailed), incremented like times_sent
ALTER TABLE {schema}.subscriptions ADD COLUMN times_failed integer NOT NULL DEFAULT 0;
"""),
    (4, """
-- delivery figures as appended increments, summed on read and folded into subscriptions now
-- and then: the workers' transactions never wait on a subscription's row to count a delivery
CREATE TABLE {schema}.subscription_deltas (
  subscription text COLLATE "C" NOT NULL,
  sent integer NOT NULL,
  failed integer NOT NULL,
  last_notification text COLLATE "C",
  last_success text COLLATE "C",
  last_failure text COLLATE "C"
);
CREATE INDEX subscription_deltas_subscription ON {schema}.subscription_deltas (subscription);
"""),
    (5, """
-- room on each page of entities for the next version of a row: an update that changes no
-- indexed column (a new attribute value: what devices send) stays on its page and touches no
-- index (a HOT update); rows written before this step get the room when rewritten
ALTER TABLE {schema}.entities SET (fillfactor = 85);
"""),
]

SYSTEM_VERSION = SYSTEM_STEPS[-1][0]
TENANT_VERSION = TENANT_STEPS[-1][0]


class DatabaseBehind(RuntimeError):
    """The database schema is older than this code: ``cityvisor db upgrade`` brings it up."""


def quote(identifier: str) -> str:
    """A quoted SQL identifier (PostgreSQL rules: double quotes, doubled inside)."""
    if "\x00" in identifier:
        raise ValueError("an identifier cannot hold a NUL character")
    return '"' + identifier.replace('"', '""') + '"'


def unquote(quoted: str) -> str:
    """The identifier of ``quote(identifier)`` (for the APIs that quote names themselves)."""
    if len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
        raise ValueError(f"not a quoted identifier: {quoted}")
    return quoted[1:-1].replace('""', '"')


async def _applied(conn: asyncpg.Connection, system: str, schema: str) -> int:
    version = await conn.fetchval(
        f"SELECT max(version) FROM {quote(system)}.schema_migrations WHERE schema_name = $1",
        schema)
    return int(version or 0)


async def _run_steps(conn: asyncpg.Connection, system: str, schema: str,
                     steps: list[tuple[int, str]], since: int) -> None:
    for version, sql in steps:
        if version <= since:
            continue
        await conn.execute(sql.replace("{schema}", quote(schema)))
        await conn.execute(
            f"INSERT INTO {quote(system)}.schema_migrations (schema_name, version) "
            "VALUES ($1, $2)", schema, version)


async def _lock(conn: asyncpg.Connection, system: str) -> None:
    """A transaction-wide advisory lock per system schema: one migrator at a time."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "cityvisor:" + system)


async def upgrade_system(conn: asyncpg.Connection, system: str) -> None:
    """Create or upgrade the system schema (inside the caller's transaction)."""
    await _lock(conn, system)
    await conn.execute(EXTENSIONS)
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(system)}")
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL",
                                 f"{quote(system)}.schema_migrations")
    since = await _applied(conn, system, system) if exists else 0
    await _run_steps(conn, system, system, SYSTEM_STEPS, since)


async def create_tenant_schema(conn: asyncpg.Connection, system: str, tenant: str,
                               schema: str) -> None:
    """Create (or upgrade) one tenant's schema and register it (in the caller's
    transaction)."""
    await _lock(conn, system)
    await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}")
    await _run_steps(conn, system, schema, TENANT_STEPS, await _applied(conn, system, schema))
    await conn.execute(
        f"INSERT INTO {quote(system)}.tenants (name, schema_name) VALUES ($1, $2) "
        "ON CONFLICT (name) DO NOTHING", tenant, schema)


async def upgrade_connection(conn: asyncpg.Connection, system: str) -> None:
    """Bring the system schema and every registered tenant schema to the latest version."""
    async with conn.transaction():
        await upgrade_system(conn, system)
        for name, schema in await conn.fetch(
                f"SELECT name, schema_name FROM {quote(system)}.tenants ORDER BY seq"):
            await create_tenant_schema(conn, system, name, schema)


async def check_connection(conn: asyncpg.Connection, system: str) -> None:
    """Raise ``DatabaseBehind`` unless every schema has every step of this code."""
    hint = "run `cityvisor db upgrade` to migrate it"
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL",
                                 f"{quote(system)}.schema_migrations")
    if not exists:
        raise DatabaseBehind(f"The database has no cityvisor schema {system!r}: {hint}")
    if await _applied(conn, system, system) < SYSTEM_VERSION:
        raise DatabaseBehind(f"The system schema {system!r} is behind "
                             f"(version {SYSTEM_VERSION} needed): {hint}")
    behind = await conn.fetch(
        f"SELECT t.schema_name, coalesce(max(m.version), 0) AS version "
        f"FROM {quote(system)}.tenants t LEFT JOIN {quote(system)}.schema_migrations m "
        "ON m.schema_name = t.schema_name GROUP BY t.schema_name "
        "HAVING coalesce(max(m.version), 0) < $1", TENANT_VERSION)
    if behind:
        names = ", ".join(f"{r['schema_name']} (version {r['version']})" for r in behind)
        raise DatabaseBehind(f"Tenant schemas are behind version {TENANT_VERSION}: {names}: "
                             f"{hint}")
