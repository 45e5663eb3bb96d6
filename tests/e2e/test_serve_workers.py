"""``cityvisor serve --workers 2 --db ...``: two worker processes on one port and one
PostgreSQL (``docs/postgresql.md``, "Several workers"): concurrent writes through both are all
stored, and every notification is delivered once (skipped without a server unless
``CITYVISOR_REQUIRE_PG=1``)."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.postgres import PG_DSN, drop_namespace, new_namespace, pg_ready
from support.receiver import Receiver
from support.server import clean_env, start_serve

from cityvisor.config import Settings
from cityvisor.services import Services

LAMP = "urn:ngsi-ld:Lamp:w{}"
COUNTER = "urn:ngsi-ld:Counter:1"


@pytest.fixture
def namespace() -> Iterator[str]:
    asyncio.run(pg_ready())
    from cityvisor.store.postgres_database import upgrade

    chosen = new_namespace()
    asyncio.run(upgrade(PG_DSN, namespace=chosen))
    try:
        yield chosen
    finally:
        asyncio.run(drop_namespace(chosen))


def _subscribe(namespace: str, uri: str) -> None:
    """Made before the workers start, so that both load it (without a change feed a worker
    learns of another's subscriptions only when it starts: docs/workers.md)."""

    async def run() -> None:
        settings = Settings(db=PG_DSN, db_namespace=namespace, auth=False,
                            allow_context_fetch=False, db_pool_min=1, db_pool_max=2)
        services = await Services.open(settings)
        try:
            await services.subscriptions.manager.create(None, None, {
                "type": "Subscription", "entities": [{"type": "Lamp"}],
                "notification": {"endpoint": {"uri": uri}}})
        finally:
            await services.close()

    asyncio.run(run())


def _request(port: int, method: str, path: str, body: object) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, "/ngsi-ld/v1" + path, json.dumps(body),
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _worker_processes(parent: int) -> list[int]:
    """The worker processes uvicorn spawned (``multiprocessing`` children of ``parent``)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines()
                          if ":\t" in line)
            command = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields.get("PPid", "0").strip()) == parent and b"spawn_main" in command:
            found.append(int(status.parent.name))
    return found


def test_two_workers_store_every_write_and_deliver_each_notification_once(
        namespace: str, tmp_path: Path) -> None:
    receiver = Receiver()
    _subscribe(namespace, receiver.url)
    server = start_serve(tmp_path / "data", args=["--no-auth", "--db", PG_DSN, "--workers", "2"],
                         env=clean_env({"CITYVISOR_DB_NAMESPACE": namespace}), timeout=60)
    try:
        port = server.port
        assert _request(port, "POST", "/entities", {"id": COUNTER, "type": "Counter"}) == 201
        n = 40
        with ThreadPoolExecutor(8) as pool:  # one connection per request: both workers take some
            appends = pool.map(lambda i: _request(
                port, "POST", f"/entities/{COUNTER}/attrs",
                {f"a{i}": {"type": "Property", "value": i}}), range(n))
            creations = pool.map(lambda i: _request(
                port, "POST", "/entities",
                {"id": LAMP.format(i), "type": "Lamp",
                 "level": {"type": "Property", "value": i}}), range(n))
            assert list(appends) == [204] * n and list(creations) == [201] * n
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", f"/ngsi-ld/v1/entities/{COUNTER}?options=keyValues")
        stored = json.loads(conn.getresponse().read())
        conn.close()
        assert set(stored) - {"id", "type"} == {f"a{i}" for i in range(n)}  # no update lost
        lamps = {LAMP.format(i) for i in range(n)}
        seen = receiver.wait_for_ids(lamps, 30)
        assert set(seen) == lamps and set(seen.values()) == {1}  # each once, by one worker
        assert len(_worker_processes(server.pid)) == 2
    finally:
        server.stop()
        receiver.close()


def test_several_workers_need_a_database(tmp_path: Path) -> None:
    import subprocess

    from support.server import cityvisor_script

    refused = subprocess.run([cityvisor_script(), "serve", "--no-auth", "--workers", "2",
                              "--data-dir", str(tmp_path)], capture_output=True, text=True,
                             timeout=60, check=False, env=clean_env())
    assert refused.returncode == 2
    assert "--workers 2 needs --db" in refused.stderr and "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_a_worker_killed_under_load_loses_no_acknowledged_write_or_notification(
        namespace: str, tmp_path: Path) -> None:
    """SIGKILL one of two workers while writes pour in: every acknowledged write is stored and
    notified (at least once: the dead worker's notifications go to the other when their lease
    ends), and the supervisor starts a new worker."""
    receiver = Receiver()
    _subscribe(namespace, receiver.url)
    env = clean_env({"CITYVISOR_DB_NAMESPACE": namespace, "CITYVISOR_DB_OUTBOX_LEASE_S": "2"})
    server = start_serve(tmp_path / "data", args=["--no-auth", "--db", PG_DSN, "--workers", "2"],
                         env=env, timeout=60)
    acknowledged: set[str] = set()
    lock = threading.Lock()

    def create(i: int) -> None:
        try:
            status = _request(server.port, "POST", "/entities", {
                "id": LAMP.format(i), "type": "Lamp", "level": {"type": "Property", "value": i}})
        except OSError:
            return  # the worker holding the connection died: the outcome is unknown
        if status == 201:
            with lock:
                acknowledged.add(LAMP.format(i))

    try:
        n = 300
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(create, i) for i in range(n)]
            while len(acknowledged) < 60:
                time.sleep(0.01)
            victim = _worker_processes(server.pid)[0]
            os.kill(victim, signal.SIGKILL)
            for future in futures:
                future.result()
        assert len(acknowledged) > 100
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", "/ngsi-ld/v1/entities?type=Lamp&limit=1000&options=keyValues")
        stored = {entity["id"] for entity in json.loads(conn.getresponse().read())}
        conn.close()
        assert acknowledged <= stored  # every acknowledged write is there
        seen = receiver.wait_for_ids(acknowledged, 60)
        assert acknowledged <= set(seen)  # and notified, by the survivor if need be
        deadline = time.monotonic() + 30
        while len(_worker_processes(server.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_worker_processes(server.pid)) == 2 and victim not in _worker_processes(
            server.pid)
    finally:
        server.stop()
        receiver.close()


def test_in_process_apps_are_refused_with_several_workers(tmp_path: Path) -> None:
    import subprocess

    from support.server import cityvisor_script

    refused = subprocess.run([cityvisor_script(), "serve", "--no-auth", "--workers", "2",
                              "--db", PG_DSN, "--apps", "flood", "--data-dir", str(tmp_path)],
                             capture_output=True, text=True, timeout=60, check=False,
                             env=clean_env())
    assert refused.returncode == 2 and "would run once per worker" in refused.stderr
    assert "Traceback" not in refused.stderr
