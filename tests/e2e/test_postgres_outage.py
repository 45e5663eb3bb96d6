"""A PostgreSQL restart under a write load, against a real ``cityvisor serve --db``: the API
answers 503 with a problem (never a 500, never a hang) while the database is away, recovers by
itself, and every acknowledged write is stored exactly once (current state and history)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.private_postgres import PrivatePostgres, postgres_binaries
from support.server import cityvisor_script, clean_env, start_serve

pytestmark = pytest.mark.slow


@pytest.fixture
def database(tmp_path: Path) -> Iterator[PrivatePostgres]:
    if postgres_binaries() is None or not Path("/usr/share/postgresql").exists():
        pytest.skip("no PostgreSQL server binaries on this machine")
    server = PrivatePostgres(Path("/tmp") / f"cityvisor-pg-{tmp_path.name}")
    try:
        yield server
    finally:
        server.remove()


def call(url: str, method: str, body: object) -> tuple[int, dict[str, object] | None, float]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method=method,
                                     headers={"Content-Type": "application/json"})
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, None, time.monotonic() - started
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null"), time.monotonic() - started
    except TimeoutError:
        return 0, None, time.monotonic() - started  # no answer: a hang


def test_a_database_restart_during_writes_loses_nothing_acknowledged(
        database: PrivatePostgres, tmp_path: Path) -> None:
    subprocess.run([cityvisor_script(), "db", "upgrade", "--db", database.dsn], check=True,
                   env=clean_env(), capture_output=True, timeout=60)
    server = start_serve(tmp_path / "data", args=["--no-auth", "--db", database.dsn],
                         env=clean_env({"CITYVISOR_TEMPORAL_MAX_INSTANCES": "100000"}))
    api = server.api
    try:
        assert call(f"{api}/entities", "POST", {
            "id": "urn:ngsi-ld:Counter:1", "type": "Counter",
            "n": {"type": "Property", "value": 0}})[0] == 201
        outcomes: dict[int, int] = {}  # value sent -> HTTP status
        created: dict[str, int] = {}
        problems: list[dict[str, object] | None] = []
        slowest = [0.0]
        stop = threading.Event()

        def load() -> None:
            value = 0
            while not stop.is_set() and value < 900:  # one page of 1,000 readings holds all
                value += 1
                status, problem, seconds = call(
                    f"{api}/entities/urn:ngsi-ld:Counter:1/attrs/n", "PATCH", {"value": value})
                outcomes[value] = status
                entity = f"urn:ngsi-ld:Reading:{value}"
                status2, problem2, seconds2 = call(f"{api}/entities", "POST", {
                    "id": entity, "type": "Reading", "v": {"type": "Property", "value": value}})
                created[entity] = status2
                problems.extend(p for p, s in ((problem, status), (problem2, status2))
                                if s >= 500)
                slowest[0] = max(slowest[0], seconds, seconds2)
                time.sleep(0.005)

        worker = threading.Thread(target=load)
        worker.start()
        time.sleep(1.5)
        database.stop()
        time.sleep(2.0)
        database.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # recovers by itself
            if list(outcomes.values())[-5:] == [204] * 5:
                break
            time.sleep(0.2)
        stop.set()
        worker.join(timeout=60)

        statuses = set(outcomes.values()) | set(created.values())
        assert statuses <= {201, 204, 503}, (statuses, server.log_text()[-8000:])  # never a 500
        assert 503 in statuses and list(outcomes.values())[-1] == 204
        assert all(p is not None and p["type"] == "https://cityvisor.org/problems/StoreUnavailable"
                   for p in problems)
        assert slowest[0] < 15  # no hang while the database is away
        acked = [v for v, s in outcomes.items() if s == 204]
        unknown = {v for v, s in outcomes.items() if s == 503}
        with urllib.request.urlopen(
                f"{api}/temporal/entities/urn:ngsi-ld:Counter:1?attrs=n&lastN=100000"
                "&options=temporalValues", timeout=30) as response:
            history = [pair[0] for pair in json.loads(response.read())["n"]["values"]]
        assert len(history) == len(set(history))  # none recorded twice
        assert set(acked) <= set(history) <= set(acked) | unknown | {0}
        with urllib.request.urlopen(f"{api}/entities?type=Reading&limit=1000&count=true"
                                    "&options=keyValues", timeout=30) as response:
            stored = {e["id"] for e in json.loads(response.read())}
        acknowledged = {e for e, s in created.items() if s == 201}
        assert acknowledged <= stored <= set(created)
    finally:
        server.stop()
