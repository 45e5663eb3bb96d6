"""Temporal API benchmark: time-range and aggregation query latency over a long history.

    .venv/bin/python benchmarks/temporal.py                     # 100,000 instances via HTTP
    .venv/bin/python benchmarks/temporal.py --bulk 10000000     # + 10M rows by direct SQL
    .venv/bin/python benchmarks/temporal.py --db postgresql://postgres@127.0.0.1:5432/bench

Loads ``--entities`` WeatherObserved-like entities (default 10) with ``--instances`` instances
of ``temperature`` in total (default 100,000), spread evenly over one day, through
``POST /temporal/entities`` (1,000 instances per request). Then measures, on one connection:

- ``range``: ``GET /temporal/entities/{id}?attrs=temperature&timerel=between`` over a random
  hour, ``options=temporalValues``;
- ``aggregation``: the same entity's ``avg,min,max`` per hour over the whole day
  (``aggrPeriodDuration=PT1H``, 24 periods).

``--bulk N`` then stops the server, inserts N more rows directly into the tenant database with
SQL (same table and indexes as the server writes; a shortcut: 10M HTTP requests would take
hours), restarts the server on the same data and measures again: the queried entity keeps its
history size, the table is 100x larger, so this measures how well the indexes isolate it.
``--db DSN`` runs the server on PostgreSQL (a fresh schema namespace, ``ANALYZE`` after the
load, dropped at the end; ``--bulk`` is SQLite only).
Prints one JSON line on stdout and a summary on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import BenchServer
from entities import Client, percentiles

from cityvisor.store.sqlite_temporal import ATTR_BITS

BASE = "/ngsi-ld/v1"
TENANT = "bench"
DAY = datetime(2026, 1, 1, tzinfo=UTC)
ATTR = "https://uri.etsi.org/ngsi-ld/default-context/temperature"


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entity_id(n: int) -> str:
    return f"urn:ngsi-ld:WeatherObserved:bench:{n}"


def load_http(server: BenchServer, entities: int, instances: int) -> dict[str, Any]:
    client = Client(server.port)
    headers = {"Content-Type": "application/json", "NGSILD-Tenant": TENANT}
    per_entity = instances // entities
    step = 86400 / per_entity
    rng = random.Random(1)
    started = time.perf_counter()
    sent = 0
    for n in range(entities):
        for start in range(0, per_entity, 1000):
            chunk = [{"type": "Property", "value": round(rng.uniform(-5, 35), 2),
                      "observedAt": iso(DAY + timedelta(seconds=i * step))}
                     for i in range(start, min(start + 1000, per_entity))]
            body = json.dumps({"id": entity_id(n), "type": "WeatherObserved",
                               "temperature": chunk}).encode()
            status, data, _ = client.request("POST", f"{BASE}/temporal/entities", body, headers)
            if status not in (201, 204):
                raise RuntimeError(f"HTTP {status}: {data[:300]!r}")
            sent += len(chunk)
    seconds = time.perf_counter() - started
    client.close()
    return {"instances": sent, "seconds": round(seconds, 2),
            "instances_per_s": round(sent / seconds)}


def load_bulk(db: Path, rows: int, first_entity: int) -> dict[str, Any]:
    """Direct SQL insert of ``rows`` instances (server stopped): 10,000 per extra entity."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-262144")
    rng = random.Random(2)
    per_entity = 10_000
    step = 86400 / per_entity
    times = [iso(DAY + timedelta(seconds=i * step)) for i in range(per_entity)]
    created = iso(DAY)
    started = time.perf_counter()
    done = 0
    n = first_entity
    while done < rows:
        count = min(per_entity, rows - done)
        eid = entity_id(n)
        conn.execute("BEGIN")
        conn.execute("INSERT OR IGNORE INTO temporal_entities (id, type, types, created_at, "
                     "modified_at) VALUES (?, ?, ?, ?, ?)",
                     (eid, "https://uri.etsi.org/ngsi-ld/default-context/WeatherObserved",
                      '["https://uri.etsi.org/ngsi-ld/default-context/WeatherObserved"]',
                      created, created))
        conn.execute("INSERT OR IGNORE INTO temporal_attrs (iri) VALUES (?)", (ATTR,))
        (series,) = conn.execute(
            f"SELECT ((SELECT rowid FROM temporal_entities WHERE id = ?) << {ATTR_BITS}) | "
            "(SELECT id FROM temporal_attrs WHERE iri = ?)", (eid, ATTR)).fetchone()
        batch = []
        for i in range(count):
            value = round(rng.uniform(-5, 35), 2)
            batch.append((series, "https://uri.etsi.org/ngsi-ld/default-context/WeatherObserved",
                          "", times[i], created, created, None, value,
                          f'{{"type":"Property","value":{value},"observedAt":"{times[i]}",'
                          f'"createdAt":"{created}","modifiedAt":"{created}"}}'))
        conn.executemany(
            "INSERT INTO temporal_instances (series, entity_type, dataset_id, observed_at, "
            "created_at, modified_at, deleted_at, num, value) VALUES (?,?,?,?,?,?,?,?,?)", batch)
        conn.execute("COMMIT")
        done += count
        n += 1
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    total = conn.execute("SELECT count(*) FROM temporal_instances").fetchone()[0]
    conn.close()
    seconds = time.perf_counter() - started
    return {"rows_inserted": done, "rows_total": total, "seconds": round(seconds, 1),
            "db_mb": round(db.stat().st_size / 1e6, 1)}


def measure(server: BenchServer, entities: int, samples: int) -> dict[str, Any]:
    client = Client(server.port)
    headers = {"NGSILD-Tenant": TENANT}
    rng = random.Random(3)
    ranges: list[float] = []
    sizes: list[int] = []
    for _ in range(samples):
        start = DAY + timedelta(hours=rng.randrange(0, 23))
        path = (f"{BASE}/temporal/entities/{entity_id(rng.randrange(entities))}?attrs=temperature"
                f"&timerel=between&timeAt={iso(start)}&endTimeAt={iso(start + timedelta(hours=1))}"
                "&options=temporalValues")
        t0 = time.perf_counter()
        status, data, _ = client.request("GET", path, None, headers)
        ranges.append(time.perf_counter() - t0)
        if status != 200:
            raise RuntimeError(f"range query: HTTP {status}: {data[:300]!r}")
        sizes.append(len(json.loads(data)["temperature"]["values"]))
    aggs: list[float] = []
    for _ in range(samples):
        path = (f"{BASE}/temporal/entities/{entity_id(rng.randrange(entities))}?attrs=temperature"
                f"&timerel=between&timeAt={iso(DAY)}&endTimeAt={iso(DAY + timedelta(days=1))}"
                "&options=aggregatedValues&aggrMethods=avg,min,max&aggrPeriodDuration=PT1H")
        t0 = time.perf_counter()
        status, data, _ = client.request("GET", path, None, headers)
        aggs.append(time.perf_counter() - t0)
        if status != 200:
            raise RuntimeError(f"aggregation: HTTP {status}: {data[:300]!r}")
        periods = len(json.loads(data)["temperature"]["avg"])
        if periods != 24:
            raise RuntimeError(f"aggregation: {periods} periods, expected 24")
    client.close()
    return {"range": {**percentiles(ranges), "mean_instances": round(sum(sizes) / len(sizes))},
            "aggregation": percentiles(aggs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=10)
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--bulk", type=int, default=0, help="rows added by direct SQL")
    parser.add_argument("--db", metavar="DSN", help="run the server on PostgreSQL")
    args = parser.parse_args()
    if args.db and args.bulk:
        parser.error("--bulk inserts into the SQLite file: not with --db")
    work = Path(tempfile.mkdtemp(prefix="cityvisor-temporal-bench-"))
    result: dict[str, Any] = {"benchmark": "temporal", "date": iso(datetime.now(UTC)),
                              "sqlite": sqlite3.sqlite_version,
                              "loadavg_1m_at_start": round(os.getloadavg()[0], 2)}
    database = None
    serve: dict[str, Any] = {}
    if args.db:
        from _postgres import BenchDatabase

        database = BenchDatabase.create(args.db)
        serve = {"args": database.serve_args(), "env": database.env()}
        result.update(backend="postgresql", postgresql=database.version(),
                      postgresql_settings=database.settings())
    try:
        server = BenchServer.start(data_dir=work, **serve)
        try:
            result["load"] = load_http(server, args.entities, args.instances)
            if database is not None:
                result["analyze_s"] = database.analyze(TENANT)  # as autovacuum would
            result["at_http_load"] = measure(server, args.entities, args.samples)
            db = server.tenant_db(TENANT)
        finally:
            server.stop()
        if args.bulk:
            result["bulk"] = load_bulk(db, args.bulk, args.entities)
            server = BenchServer.start(data_dir=work)
            try:
                result["at_bulk"] = measure(server, args.entities, args.samples)
            finally:
                server.stop()
        targets = {"aggregation_p95_ms_100k": 30.0 if database is None else 50.0,
                   "aggregation_p95_ms_10m": 1000.0}
        passed = {"aggregation_p95_ms_100k":
                  result["at_http_load"]["aggregation"]["p95_ms"] <= targets[
                      "aggregation_p95_ms_100k"]}
        if args.bulk:
            passed["aggregation_p95_ms_10m"] = (
                result["at_bulk"]["aggregation"]["p95_ms"] <= targets["aggregation_p95_ms_10m"])
        result["targets"], result["pass"] = targets, passed
        result["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if database is not None:
            database.drop()
    print(json.dumps(result))
    print(json.dumps(result, indent=1), file=sys.stderr)
    return 0 if all(result.get("pass", {}).values()) else 1


if __name__ == "__main__":
    sys.exit(main())
