"""``cityvisor db upgrade|check`` and ``cityvisor serve --db`` as commands, on the test PostgreSQL
(a namespace of schemas of its own, dropped afterwards; skipped without a server unless
``CITYVISOR_REQUIRE_PG=1``)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.postgres import PG_DSN, drop_namespace, new_namespace, pg_ready
from support.server import cityvisor_script, clean_env, start_serve


@pytest.fixture
def namespace() -> Iterator[str]:
    asyncio.run(pg_ready())
    chosen = new_namespace()
    try:
        yield chosen
    finally:
        asyncio.run(drop_namespace(chosen))


def cli(namespace: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([cityvisor_script(), *args], capture_output=True, text=True,
                          timeout=60, check=False,
                          env=clean_env({"CITYVISOR_DB_NAMESPACE": namespace}))


def request(url: str, method: str = "GET", body: object = None,
            token: str | None = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_a_database_behind_is_refused_until_upgraded(namespace: str, tmp_path: Path) -> None:
    checked = cli(namespace, "db", "check", "--db", PG_DSN)
    assert checked.returncode == 2 and "cityvisor db upgrade" in checked.stderr
    refused = cli(namespace, "serve", "--no-auth", "--port", "9", "--db", PG_DSN)
    assert refused.returncode == 2 and "cityvisor db upgrade" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert cli(namespace, "db", "upgrade", "--db", PG_DSN).returncode == 0
    assert cli(namespace, "db", "upgrade", "--db", PG_DSN).returncode == 0  # safe to rerun
    assert cli(namespace, "db", "check", "--db", PG_DSN).returncode == 0


def test_an_unreachable_database_is_one_line(namespace: str) -> None:
    gone = cli(namespace, "db", "check", "--db", "postgresql://nobody:secret@127.0.0.1:9/none")
    assert gone.returncode == 2 and "cannot reach the database" in gone.stderr
    assert "secret" not in gone.stderr and "Traceback" not in gone.stderr


def test_serve_on_postgresql_keeps_acknowledged_writes_across_kill_9(
        namespace: str, tmp_path: Path) -> None:
    assert cli(namespace, "db", "upgrade", "--db", PG_DSN).returncode == 0
    made = cli(namespace, "token", "create", "--role", "writer", "--tenant", "*",
               "--db", PG_DSN)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    env = clean_env({"CITYVISOR_DB_NAMESPACE": namespace})
    server = start_serve(tmp_path / "data", args=["--db", PG_DSN], env=env)
    try:
        entity = {"id": "urn:ngsi-ld:Streetlight:pg:1", "type": "Streetlight",
                  "powerState": {"type": "Property", "value": "on"},
                  "location": {"type": "GeoProperty",
                               "value": {"type": "Point", "coordinates": [4.36, 43.84]}}}
        assert request(f"{server.api}/entities", "POST", entity)[0] == 401
        assert request(f"{server.api}/entities", "POST", entity, token)[0] == 201
        assert request(f"{server.api}/entities/urn:ngsi-ld:Streetlight:pg:1/attrs/powerState",
                       "PATCH", {"value": "off"}, token)[0] == 204
        server.kill()  # SIGKILL right after the acknowledgements
        assert not (tmp_path / "data" / "tenants").exists()  # nothing went to SQLite
        server = start_serve(tmp_path / "data", args=["--db", PG_DSN], env=env)
        status, body = request(
            f"{server.api}/entities?type=Streetlight&georel=near;maxDistance==100"
            "&geometry=Point&coordinates=[4.3601,43.8401]&options=keyValues", token=token)
        assert status == 200
        assert json.loads(body) == [{"id": "urn:ngsi-ld:Streetlight:pg:1",
                                     "type": "Streetlight", "powerState": "off",
                                     "location": {"type": "Point",
                                                  "coordinates": [4.36, 43.84]}}]
    finally:
        server.stop()
