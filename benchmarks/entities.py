"""Entity benchmark: a real ``cityvisor serve`` process, 100,000 Streetlight entities.

Prints ONE JSON line of figures on stdout and a human summary on stderr. Phases:

1. batch upsert (POST /entityOperations/upsert, batches of 1,000), then the raw insert rate
   of the very rows the server stored: SQLite (same schema, PRAGMAs and transaction size), or
   with ``--db`` PostgreSQL COPY into the same tables (``_postgres.BenchDatabase.raw_copy``);
2. partial attribute update (PATCH /entities/{id}/attrs/{attr}), 32 concurrent clients
   (``wrk`` when installed, else a minimal asyncio HTTP/1.1 keep-alive client); with
   ``--workers-compare N``, again on a server restarted with ``--workers N`` on the same data;
3. query by type + q (limit=20, and count=true), sequential;
4. geo query near;maxDistance==300 around random points, sequential;
5. server RSS.

Usage::

    .venv/bin/python benchmarks/entities.py                 # 100,000 entities, 15 s of PATCH
    .venv/bin/python benchmarks/entities.py --quick         # 10,000 entities, 5 s (smoke run)
    .venv/bin/python benchmarks/entities.py --profile DIR   # + py-spy profiles of phases 1-4
    .venv/bin/python benchmarks/entities.py --db postgresql://postgres@127.0.0.1:5432/bench \
        --workers-compare 2                                 # on PostgreSQL, PATCH with 1 and 2

See benchmarks/README.md for what each figure means and the latest results.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import random
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import BenchServer, cli_command

if TYPE_CHECKING:  # imported by main() with --db only: asyncpg is an optional extra
    from _postgres import BenchDatabase

CONTEXT = ("https://raw.githubusercontent.com/smart-data-models/dataModel.Streetlighting/"
           "master/context.jsonld")
LINK = f'<{CONTEXT}>; rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
BASE = "/ngsi-ld/v1"
ID_PREFIX = "urn:ngsi-ld:Streetlight:bench:"
LON = (4.30, 4.42)
LAT = (43.80, 43.87)
ATTRIBUTES_PER_ENTITY = 10
BATCH = 1000
CONCURRENCY = 32
STREETS = ["rue de la Madeleine", "rue Nationale", "avenue Jean Jaurès", "rue de la République",
           "rue du Général Perrier", "boulevard Victor Hugo", "route d'Alès"]
TARGETS = {"upsert_attr_per_s": 50_000, "upsert_ratio_vs_raw": 0.5, "patch_req_per_s": 3_000,
           "query_q_p95_ms": 20.0, "rss_mb": 300.0}
#: on PostgreSQL: the ratio is to raw COPY; the PATCH target holds for the server with
#: --workers-compare's worker count (2), which must also be >= 1.4x one worker
TARGETS_POSTGRES = {"upsert_attr_per_s": 30_000, "upsert_ratio_vs_raw": 0.3,
                    "patch_req_per_s": 3_000, "patch_workers_speedup": 1.4,
                    "query_q_p95_ms": 20.0}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data


def streetlight(i: int, rng: random.Random) -> dict[str, Any]:
    """One Streetlight in normalized form: 10 attributes (1 GeoProperty, 1 Relationship)."""
    at = "2025-11-27T17:30:00Z"
    state = rng.choices(["on", "off", "low"], [0.6, 0.3, 0.1])[0]
    level = round(rng.random(), 3) if state != "off" else 0.0
    rated = rng.choice([36, 54, 70, 100, 150])
    return {
        "id": f"{ID_PREFIX}{i}",
        "type": "Streetlight",
        "location": {"type": "GeoProperty", "value": {
            "type": "Point",
            "coordinates": [round(rng.uniform(*LON), 6), round(rng.uniform(*LAT), 6)]}},
        "name": {"type": "Property", "value": f"Lampadaire {i}"},
        "address": {"type": "Property", "value": {
            "streetAddress": f"{rng.randint(1, 250)} {rng.choice(STREETS)}",
            "addressLocality": "Nîmes", "postalCode": "30000", "addressCountry": "FR"}},
        "status": {"type": "Property", "value": rng.choices(
            ["ok", "defectiveLamp", "columnIssue"], [0.97, 0.02, 0.01])[0], "observedAt": at},
        "powerState": {"type": "Property", "value": state, "observedAt": at},
        "illuminanceLevel": {"type": "Property", "value": level, "unitCode": "C62",
                             "observedAt": at},
        "powerConsumption": {"type": "Property", "value": round(rated * level, 1),
                             "unitCode": "WTT", "observedAt": at},
        "lanternHeight": {"type": "Property", "value": rng.choice([4, 6, 8, 10, 12]),
                          "unitCode": "MTR"},
        "lampTechnology": {"type": "Property", "value": rng.choice(["LED", "LED", "HPS", "MH"])},
        "refStreetlightGroup": {"type": "Relationship",
                                "object": f"urn:ngsi-ld:StreetlightGroup:bench:{i % 40 + 1}"},
    }


def batches(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for start in range(1, n + 1, BATCH):
        chunk = [streetlight(i, rng) for i in range(start, min(start + BATCH, n + 1))]
        out.append(json.dumps(chunk, ensure_ascii=False).encode())
    return out


# --------------------------------------------------------------------------- helpers


def percentiles(samples_s: list[float]) -> dict[str, float]:
    """p50/p95/p99/mean of latencies given in seconds, in ms."""
    if not samples_s:
        return {}
    ordered = sorted(samples_s)

    def at(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 2)

    return {"p50_ms": at(50), "p95_ms": at(95), "p99_ms": at(99),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 2), "n": len(ordered)}


class Client:
    """A keep-alive HTTP/1.1 connection (stdlib) for sequential requests."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        self.conn.request(method, path, body=body, headers=headers or {})
        response = self.conn.getresponse()
        data = response.read()
        return response.status, data, {k.lower(): v for k, v in response.getheaders()}

    def close(self) -> None:
        self.conn.close()


# --------------------------------------------------------------------------- 1. upsert


def phase_upsert(server: BenchServer, bodies: list[bytes], n: int) -> dict[str, Any]:
    client = Client(server.port)
    headers = {"Content-Type": "application/json", "Link": LINK}
    started = time.perf_counter()
    for index, body in enumerate(bodies):
        status, data, _ = client.request("POST", f"{BASE}/entityOperations/upsert", body, headers)
        if status not in (201, 204):
            raise RuntimeError(f"upsert batch {index}: HTTP {status}: {data[:500]!r}")
    seconds = time.perf_counter() - started
    client.close()
    return {"entities": n, "batch": BATCH, "attributes_per_entity": ATTRIBUTES_PER_ENTITY,
            **rates(n, seconds)}


def rates(n: int, seconds: float) -> dict[str, Any]:
    """Seconds, entities and attribute instances per second of ``n`` entities."""
    return {"seconds": round(seconds, 2), "entities_per_s": round(n / seconds),
            "attr_per_s": round(n * ATTRIBUTES_PER_ENTITY / seconds)}


def phase_raw_postgres(database: BenchDatabase, n: int) -> dict[str, Any]:
    """COPY the rows the server stored into a scratch schema of the same DDL (see
    ``BenchDatabase.raw_copy``), 1,000 entities per transaction."""
    raw = database.raw_copy(BATCH)
    if raw["entities"] != n:
        raise RuntimeError(f"server database holds {raw['entities']} entities, expected {n}")
    return {**rates(n, raw["seconds"]), "rows": raw["rows"], "db_mb": raw["db_mb"]}


def phase_raw_sqlite(source: Path, n: int) -> dict[str, Any]:
    """Insert the rows the server stored into a fresh file: same schema, PRAGMAs, transactions."""
    from cityvisor.store.sqlite import GEO_SLOTS, SCHEMA
    from cityvisor.store.sqlite_connections import configure
    from cityvisor.store.sqlite_temporal import ATTR_BITS, ATTR_MASK, TEMPORAL_SCHEMA

    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    stats = src.execute("SELECT type, attr, kind, count FROM attribute_stats").fetchall()
    rowids = [r for (r,) in src.execute("SELECT rowid FROM entities ORDER BY rowid")]
    work = Path(tempfile.mkdtemp(prefix="cityvisor-raw-"))
    try:
        dst = sqlite3.connect(work / "raw.sqlite", isolation_level=None)
        configure(dst, "NORMAL")
        dst.executescript(SCHEMA)
        dst.executescript(TEMPORAL_SCHEMA)
        inserted = 0
        insert_seconds = 0.0
        for start in range(0, len(rowids), BATCH):
            low, high = rowids[start], rowids[min(start + BATCH, len(rowids)) - 1]
            # Reading the source rows is not timed: only the inserts are.
            entities = src.execute(
                "SELECT rowid, id, type, doc, created_at, modified_at FROM entities "
                "WHERE rowid BETWEEN ? AND ?", (low, high)).fetchall()
            geo = src.execute("SELECT id, minx, maxx, miny, maxy, attr FROM geo "
                              "WHERE id BETWEEN ? AND ?",
                              (low * GEO_SLOTS, high * GEO_SLOTS + GEO_SLOTS - 1)).fetchall()
            types = src.execute("SELECT type, entity FROM entity_types "
                                "WHERE entity BETWEEN ? AND ?", (low, high)).fetchall()
            values = src.execute("SELECT attr, kind, value, entity FROM attr_values "
                                 "WHERE entity BETWEEN ? AND ?", (low, high)).fetchall()
            ids = [row[1] for row in entities]
            marks = ",".join("?" * len(ids))
            temporal_entities = src.execute(
                "SELECT rowid, id, type, types, created_at, modified_at FROM temporal_entities "
                f"WHERE id IN ({marks})", ids).fetchall()
            history = []
            for entity_rowid in [row[0] for row in temporal_entities]:
                history += src.execute(
                    "SELECT series, entity_type, dataset_id, observed_at, created_at, "
                    "modified_at, deleted_at, num, value FROM temporal_instances "
                    "WHERE series BETWEEN ? AND ?",
                    (entity_rowid << ATTR_BITS, (entity_rowid << ATTR_BITS) | ATTR_MASK)).fetchall()
            attrs = src.execute("SELECT id, iri FROM temporal_attrs").fetchall()
            t0 = time.perf_counter()
            dst.execute("BEGIN IMMEDIATE")
            dst.executemany("INSERT INTO entities (rowid, id, type, doc, created_at, modified_at) "
                            "VALUES (?, ?, ?, ?, ?, ?)", entities)
            if types:
                dst.executemany("INSERT INTO entity_types (type, entity) VALUES (?, ?)", types)
            dst.executemany("INSERT INTO geo (id, minx, maxx, miny, maxy, attr) "
                            "VALUES (?, ?, ?, ?, ?, ?)", geo)
            dst.executemany("INSERT INTO attr_values (attr, kind, value, entity) "
                            "VALUES (?, ?, ?, ?)", values)
            dst.executemany("INSERT OR IGNORE INTO temporal_attrs (id, iri) VALUES (?, ?)", attrs)
            dst.executemany(
                "INSERT INTO temporal_instances (series, entity_type, dataset_id, "
                "observed_at, created_at, modified_at, deleted_at, num, value) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", history)
            dst.executemany("INSERT INTO temporal_entities (rowid, id, type, types, created_at, "
                            "modified_at) VALUES (?, ?, ?, ?, ?, ?)", temporal_entities)
            dst.executemany(
                "INSERT INTO attribute_stats (type, attr, kind, count) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (type, attr, kind) DO UPDATE SET count = excluded.count", stats)
            dst.execute("COMMIT")
            insert_seconds += time.perf_counter() - t0
            inserted += len(entities)
        dst.close()
        size_mb = round((work / "raw.sqlite").stat().st_size / 1e6, 1)
    finally:
        src.close()
        shutil.rmtree(work, ignore_errors=True)
    if inserted != n:
        raise RuntimeError(f"server database holds {inserted} entities, expected {n}")
    return {**rates(n, insert_seconds), "db_mb": size_mb}


# --------------------------------------------------------------------------- 2. PATCH

WRK_LUA = r"""
local n = __N__
local prefix = "__PREFIX__"
local threads = {}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end
function init(args)
  bad = 0
  math.randomseed(os.time() * 1000 + tid * 7919)
  wrk.method = "PATCH"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Link"] = '__LINK__'
end
request = function()
  local path = "/ngsi-ld/v1/entities/" .. prefix .. math.random(1, n) .. "/attrs/illuminanceLevel"
  local body = string.format('{"value": %.3f}', math.random())
  return wrk.format("PATCH", path, nil, body)
end
response = function(status, headers, body)
  if status ~= 204 then bad = bad + 1 end
end
done = function(summary, latency, requests)
  local total_bad = 0
  for _, t in ipairs(threads) do total_bad = total_bad + t:get("bad") end
  io.write(string.format("BENCH %d %d %d %d %d %d %d %d\n", summary.requests, summary.duration,
    total_bad, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, math.floor(latency:percentile(50)),
    math.floor(latency:percentile(95)), math.floor(latency:percentile(99)), math.floor(latency.mean)))
end
"""


def phase_patch(server: BenchServer, client: str, n: int, duration: float) -> dict[str, Any]:
    """The PATCH phase with ``wrk`` or the asyncio client."""
    if client == "wrk":
        return phase_patch_wrk(server, n, duration)
    return phase_patch_asyncio(server, n, duration)


def phase_patch_wrk(server: BenchServer, n: int, duration: float) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    assert wrk is not None
    script = (WRK_LUA.replace("__N__", str(n)).replace("__PREFIX__", ID_PREFIX)
              .replace("__LINK__", LINK))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write(script)
    try:
        run = subprocess.run(
            [wrk, "-t2", f"-c{CONCURRENCY}", f"-d{max(1, round(duration))}s", "--latency",
             "--timeout", "10s", "-s", lua.name, server.url],
            check=False, capture_output=True, text=True, timeout=duration + 60)
    finally:
        os.unlink(lua.name)
    match = re.search(r"^BENCH (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) (\d+)$",
                      run.stdout, re.MULTILINE)
    if run.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    requests, duration_us, bad, socket_errors, p50, p95, p99, mean = map(int, match.groups())
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", run.stdout)
    return {"client": "wrk", "concurrency": CONCURRENCY, "requests": requests,
            "seconds": round(duration_us / 1e6, 2),
            "req_per_s": round(requests / (duration_us / 1e6)),
            "p50_ms": round(p50 / 1000, 2), "p95_ms": round(p95 / 1000, 2),
            "p99_ms": round(p99 / 1000, 2), "mean_ms": round(mean / 1000, 2),
            "non_204": bad, "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": socket_errors}


async def _patch_worker(port: int, n: int, deadline: float, rng: random.Random,
                        latencies: list[float], statuses: Counter[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            body = b'{"value": %.3f}' % rng.random()
            path = f"{BASE}/entities/{ID_PREFIX}{rng.randint(1, n)}/attrs/illuminanceLevel"
            request = (f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                       f"Content-Type: application/json\r\nLink: {LINK}\r\n"
                       f"Content-Length: {len(body)}\r\n\r\n").encode() + body
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            statuses[int(head[9:12])] += 1
    finally:
        writer.close()


def phase_patch_asyncio(server: BenchServer, n: int, duration: float) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()

    async def main() -> float:
        started = time.perf_counter()
        deadline = started + duration
        await asyncio.gather(*(
            _patch_worker(server.port, n, deadline, random.Random(k), latencies, statuses)
            for k in range(CONCURRENCY)))
        return time.perf_counter() - started

    seconds = asyncio.run(main())
    total = sum(statuses.values())
    return {"client": "asyncio", "concurrency": CONCURRENCY, "requests": total,
            "seconds": round(seconds, 2), "req_per_s": round(total / seconds),
            **{k: v for k, v in percentiles(latencies).items() if k != "n"},
            "non_204": total - statuses[204],
            "non_2xx": sum(c for s, c in statuses.items() if not 200 <= s < 300),
            "socket_errors": 0}


# --------------------------------------------------------------------------- 3-4. queries


def run_queries(server: BenchServer, paths: list[str]) -> tuple[list[float], list[int]]:
    client = Client(server.port)
    headers = {"Link": LINK, "Accept": "application/json"}
    latencies: list[float] = []
    counts: list[int] = []
    for path in paths:
        t0 = time.perf_counter()
        status, data, response_headers = client.request("GET", path, None, headers)
        latencies.append(time.perf_counter() - t0)
        if status != 200:
            raise RuntimeError(f"GET {path}: HTTP {status}: {data[:500]!r}")
        count = response_headers.get("ngsild-results-count")
        counts.append(int(count) if count is not None else len(json.loads(data)))
    client.close()
    return latencies, counts


def phase_queries(server: BenchServer, samples: int, seed: int = 3) -> dict[str, Any]:
    rng = random.Random(seed)

    def q_path(count: bool) -> str:
        threshold = round(rng.uniform(0.1, 0.95), 2)
        q = quote(f'powerState=="on";illuminanceLevel>{threshold}', safe="")
        extra = "&count=true" if count else ""
        return f"{BASE}/entities?type=Streetlight&q={q}&limit=20{extra}"

    def near_path() -> str:
        lon, lat = round(rng.uniform(*LON), 5), round(rng.uniform(*LAT), 5)
        coordinates = quote(f"[{lon},{lat}]", safe="")
        return (f"{BASE}/entities?type=Streetlight&georel={quote('near;maxDistance==300')}"
                f"&geometry=Point&coordinates={coordinates}&limit=20")

    run_queries(server, [q_path(False) for _ in range(10)] + [near_path() for _ in range(10)])
    q_lat, q_counts = run_queries(server, [q_path(False) for _ in range(samples)])
    count_lat, totals = run_queries(server, [q_path(True) for _ in range(max(20, samples // 4))])
    near_lat, near_counts = run_queries(server, [near_path() for _ in range(samples)])
    return {
        "query_q": {**percentiles(q_lat), "mean_results": round(statistics.fmean(q_counts), 1)},
        "query_q_count": {**percentiles(count_lat),
                          "mean_count": round(statistics.fmean(totals))},
        "query_near": {**percentiles(near_lat),
                       "mean_results": round(statistics.fmean(near_counts), 1)},
    }


# --------------------------------------------------------------------------- profiling


class Profiler:
    """``py-spy record`` attached to the server for one phase (``--profile DIR``)."""

    def __init__(self, directory: Path | None, pid: int) -> None:
        self.directory = directory
        self.pid = pid
        self.process: subprocess.Popen[bytes] | None = None
        self.output: Path | None = None

    def start(self, name: str) -> None:
        if self.directory is None:
            return
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        self.output = self.directory / f"{name}.txt"
        self.process = subprocess.Popen(
            [spy, "record", "--pid", str(self.pid), "--rate", "200", "--format", "raw",
             "--output", str(self.output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # let py-spy attach

    def stop(self) -> dict[str, Any] | None:
        if self.process is None or self.output is None:
            return None
        self.process.send_signal(2)  # SIGINT: py-spy writes its output and exits
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        self.process = None
        if not self.output.exists():
            log(f"py-spy wrote nothing: {err.decode(errors='replace')[-1000:]}")
            return None
        return summarize_profile(self.output)


def summarize_profile(path: Path, top: int = 12) -> dict[str, Any]:
    """Where the server's samples go, from py-spy's collapsed stacks (``--format raw``).

    ``self_pct``: leaf function (time inside SQLite or other C calls is charged to the Python
    line that made the call); ``self_lines``: the same by source line; ``inclusive_pct``:
    cityvisor functions with everything they call; ``by_package``: self time per package.
    """
    own: Counter[str] = Counter()
    lines: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [_frame(f) for f in stack.split(";")
                  if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += samples
        name, where, lineno = frames[-1]
        own[f"{name} ({where})"] += samples
        lines[f"{name} ({where}:{lineno})"] += samples
        packages[_package(where)] += samples
        for name, where, _ in {(f[0], f[1], "") for f in frames}:
            if where.startswith("cityvisor/") and where != "cityvisor/cli.py":
                inclusive[f"{name} ({where})"] += samples
    if not total:
        return {"samples": 0}

    def share(counter: Counter[str], k: int = top) -> list[list[Any]]:
        return [[name, round(100 * c / total, 1)] for name, c in counter.most_common(k)]

    return {"samples": total, "self_pct": share(own), "self_lines": share(lines, 8),
            "inclusive_pct": share(inclusive), "by_package": share(packages, 8)}


def _frame(frame: str) -> tuple[str, str, str]:
    # "function (/path/site-packages/module.py:123)" -> ("function", "module.py", "123")
    match = re.match(r"^(.*?) \((.*?)(?::(\d+))?\)$", frame)
    if not match:
        return frame, "?", ""
    name, where, lineno = match.groups()
    where = where.split("/site-packages/")[-1].split("/src/")[-1]
    return name, where, lineno or ""


def _package(where: str) -> str:
    if where.startswith("cityvisor/"):
        return "/".join(where.split("/")[:2])
    return where.split("/")[0] if "/" in where else "stdlib:" + where.removesuffix(".py")


# --------------------------------------------------------------------------- main


def serve_has_workers() -> bool:
    """Whether this ``cityvisor serve`` has a ``--workers`` option."""
    done = subprocess.run([*cli_command(), "serve", "--help"], capture_output=True, text=True,
                          check=False, env={**os.environ, "COLUMNS": "200"})
    return "--workers" in done.stdout


def start_server(database: BenchDatabase | None, workers: int = 1) -> BenchServer:
    """``cityvisor serve`` on SQLite (a temporary data directory) or on ``database``."""
    if database is None:
        return BenchServer.start()
    return BenchServer.start(args=database.serve_args(workers), env=database.env())


def target_checks(figures: dict[str, Any], targets: dict[str, float]) -> dict[str, bool | None]:
    """Each target of ``targets`` met or not (None: not measured), and no failed PATCH."""
    patch = figures.get("patch_workers") or figures["patch"]
    checks: dict[str, bool | None] = {
        "upsert_attr_per_s": figures["upsert"]["attr_per_s"] >= targets["upsert_attr_per_s"],
        "upsert_ratio_vs_raw": figures["upsert_ratio_vs_raw"] >= targets["upsert_ratio_vs_raw"],
        "patch_req_per_s": patch["req_per_s"] >= targets["patch_req_per_s"],
        "patch_non_204": all(p["non_204"] == 0 and p["socket_errors"] == 0 for p in (
            figures["patch"], figures.get("patch_workers") or figures["patch"])),
        "query_q_p95_ms": figures["query_q"]["p95_ms"] <= targets["query_q_p95_ms"],
    }
    if "patch_workers_speedup" in targets:
        speedup = figures.get("patch_workers_speedup")
        checks["patch_workers_speedup"] = (None if speedup is None
                                           else speedup >= targets["patch_workers_speedup"])
    if "rss_mb" in targets:
        checks["rss_mb"] = (figures["rss_mb"] or 0) <= targets["rss_mb"]
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=15.0, help="PATCH phase, seconds")
    parser.add_argument("--queries", type=int, default=400, help="samples per query kind")
    parser.add_argument("--quick", action="store_true", help="10,000 entities, 5 s (smoke run)")
    parser.add_argument("--client", choices=["auto", "wrk", "asyncio"], default="auto")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="attach py-spy to the server in phases 1-4, keep profiles in DIR")
    parser.add_argument("--db", metavar="DSN",
                        help="run the server on PostgreSQL (a fresh schema namespace, dropped "
                        "at the end) instead of SQLite")
    parser.add_argument("--workers", type=int, default=1,
                        help="server worker processes (with --db)")
    parser.add_argument("--workers-compare", type=int, nargs="?", const=2, metavar="N",
                        help="with --db: after the PATCH phase, restart the server with "
                        "--workers N (default 2) on the same data and PATCH again")
    args = parser.parse_args()
    if args.quick:
        args.entities, args.duration, args.queries = 10_000, 5.0, 100
    if (args.workers > 1 or args.workers_compare) and not args.db:
        parser.error("--workers and --workers-compare need --db (PostgreSQL)")
    n = args.entities
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "asyncio"
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    database: BenchDatabase | None = None
    if args.db:
        from _postgres import BenchDatabase

        database = BenchDatabase.create(args.db)  # `cityvisor db upgrade` on a new namespace
    compare = args.workers_compare
    if (args.workers > 1 or compare) and not serve_has_workers():
        log("this `cityvisor serve` has no --workers: one worker only")
        args.workers, compare = 1, None
    targets = TARGETS if database is None else TARGETS_POSTGRES

    log(f"generating {n} Streetlight entities ...")
    bodies = batches(n)
    figures: dict[str, Any] = {
        "benchmark": "entities", "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cores": os.cpu_count(), "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version, "entities": n,
        "loadavg_1m_at_start": round(os.getloadavg()[0], 2),  # other load skews the figures
    }
    if database is not None:
        figures.update({"backend": "postgresql", "postgresql": database.version(),
                        "postgresql_settings": database.settings(), "workers": args.workers})
        if args.workers_compare and not compare:
            figures["workers_compare"] = "unavailable: cityvisor serve has no --workers"
    try:
        server = start_server(database, args.workers)
        profiler = Profiler(args.profile, server.pid)
        try:
            log(f"server pid {server.pid} on {server.url}; upserting in batches of {BATCH} ...")
            profiler.start("upsert")
            figures["upsert"] = phase_upsert(server, bodies, n)
            upsert_profile = profiler.stop()
            del bodies
            figures["rss_after_load_mb"] = server.rss_mb()
            if database is None:
                log("raw SQLite insert of the same rows ...")
                raw_key, figures["raw_sqlite"] = "raw_sqlite", phase_raw_sqlite(
                    server.tenant_db(), n)
            else:
                figures["analyze_s"] = database.analyze()  # as autovacuum would, see README
                log("raw PostgreSQL COPY of the same rows ...")
                raw_key, figures["raw_postgres"] = "raw_postgres", phase_raw_postgres(
                    database, n)
            figures["upsert_ratio_vs_raw"] = round(
                figures["upsert"]["attr_per_s"] / figures[raw_key]["attr_per_s"], 3)

            log(f"PATCH with {client}, {CONCURRENCY} connections, {args.duration:.0f} s ...")
            profiler.start("patch")
            figures["patch"] = phase_patch(server, client, n, args.duration)
            patch_profile = profiler.stop()

            log(f"queries: {args.queries} samples each ...")
            profiler.start("query")
            figures.update(phase_queries(server, args.queries))
            query_profile = profiler.stop()

            figures["rss_mb"] = server.rss_mb()
            figures["peak_rss_mb"] = server.peak_rss_mb()
            figures["rss_detail_mb"] = server.rss_breakdown_mb()
            if database is None:
                figures["db_mb"] = round(sum(p.stat().st_size
                                             for p in server.data_dir.rglob("*.sqlite*")) / 1e6, 1)
            if args.profile:
                figures["profiled"] = True  # py-spy pauses the server: figures are perturbed
                figures["profile"] = {"upsert": upsert_profile, "patch": patch_profile,
                                      "query": query_profile}
        finally:
            server.stop()
        if database is not None and compare:
            log(f"PATCH again, server restarted with --workers {compare} ...")
            with start_server(database, compare) as server:
                figures["patch_workers"] = {"workers": compare, **phase_patch(
                    server, client, n, args.duration)}
                figures["rss_workers_mb"] = server.rss_mb()
            figures["patch_workers_speedup"] = round(
                figures["patch_workers"]["req_per_s"] / figures["patch"]["req_per_s"], 2)
        if database is not None:
            figures["db_mb"] = database.size_mb()
        figures["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    finally:
        if database is not None:
            database.drop()

    checks = target_checks(figures, targets)
    figures["targets"] = targets
    figures["pass"] = checks
    print(json.dumps(figures, ensure_ascii=False), flush=True)
    summarize(figures, raw_key, checks, targets)
    return 0


def summarize(figures: dict[str, Any], raw_key: str, checks: dict[str, bool | None],
              targets: dict[str, float]) -> None:
    """The human summary on stderr."""
    up, raw, patch = figures["upsert"], figures[raw_key], figures["patch"]
    mark = {True: "ok  ", False: "MISS", None: "n/a "}
    backend = (f"PostgreSQL {figures['postgresql']}" if "postgresql" in figures
               else f"SQLite {figures['sqlite']}")
    log("")
    log(f"cityvisor entities benchmark: {figures['entities']} entities, {figures['cores']} "
        f"cores, Python {figures['python']}, {backend}")
    log(f"[{mark[checks['upsert_attr_per_s']]}] upsert   {up['attr_per_s']:>9,} attr/s  "
        f"{up['entities_per_s']:,} entities/s ({up['seconds']} s)   "
        f"target >= {targets['upsert_attr_per_s']:,} attr/s")
    log(f"[{mark[checks['upsert_ratio_vs_raw']]}] raw      {raw['attr_per_s']:>9,} attr/s  "
        f"ratio ours/raw {figures['upsert_ratio_vs_raw']}   "
        f"target >= {targets['upsert_ratio_vs_raw']}")
    patches = [("PATCH", patch)]
    if figures.get("patch_workers"):
        patches.append((f"PATCH x{figures['patch_workers']['workers']}",
                        figures["patch_workers"]))
    for title, fig in patches:
        flag = mark[checks["patch_req_per_s"]] if fig is patches[-1][1] else "    "
        log(f"[{flag}] {title:<8} {fig['req_per_s']:>9,} req/s ({fig['client']})  "
            f"p50 {fig['p50_ms']} p95 {fig['p95_ms']} p99 {fig['p99_ms']} ms   "
            f"target >= {targets['patch_req_per_s']:,}")
    if "patch_workers_speedup" in checks:
        log(f"[{mark[checks['patch_workers_speedup']]}] workers  speed-up "
            f"{figures.get('patch_workers_speedup')}   "
            f"target >= {targets['patch_workers_speedup']}")
    log(f"[{mark[checks['patch_non_204']]}] PATCH    non-204 {patch['non_204']}, "
        f"socket errors {patch['socket_errors']}   target 0")
    for key, title in (("query_q", "q"), ("query_q_count", "q count"), ("query_near", "near")):
        fig = figures[key]
        flag = mark[checks["query_q_p95_ms"]] if key == "query_q" else "    "
        log(f"[{flag}] {title:<8} p50 {fig['p50_ms']} p95 {fig['p95_ms']} p99 {fig['p99_ms']} ms"
            + (f"   target p95 <= {targets['query_q_p95_ms']} ms" if key == "query_q" else ""))
    rss_flag = mark[checks["rss_mb"]] if "rss_mb" in checks else "    "
    log(f"[{rss_flag}] RSS      {figures['rss_mb']} MB "
        f"(peak {figures['peak_rss_mb']}; anon {figures['rss_detail_mb']['RssAnon']}, "
        f"file-backed {figures['rss_detail_mb']['RssFile']}; database "
        f"{figures['db_mb']} MB)" + (f"   target <= {targets['rss_mb']} MB"
                                      if "rss_mb" in targets else ""))
    for phase, prof in (figures.get("profile") or {}).items():
        if prof and prof.get("samples"):
            log(f"\nprofile {phase} ({prof['samples']} samples), self %:")
            for name, pct in prof["self_pct"]:
                log(f"  {pct:5.1f}  {name}")
            for key, title in (("self_lines", "self % by line"), ("inclusive_pct", "inclusive %"),
                               ("by_package", "self % by package")):
                log(f"profile {phase}, {title}:")
                for name, pct in prof[key]:
                    log(f"  {pct:5.1f}  {name}")


if __name__ == "__main__":
    sys.exit(main())
