"""Acknowledged writes survive ``kill -9`` (ADR 0002: WAL, synchronous=NORMAL).

Eight clients create entities and update one attribute of each with increasing values on a
real ``cityvisor serve`` process; the server is killed with SIGKILL in the middle of the load,
restarted on the same data directory, and every write that was acknowledged (201/204 received)
must be there: each acknowledged entity exists, each attribute is >= its last acknowledged value.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

WORKERS = 8
ENTITIES_PER_WORKER = 40


def _load(server: Any, worker: int, stop: threading.Event,
          created: set[str], acked: dict[str, int], lock: threading.Lock) -> None:
    """Create entities round-robin and PATCH their `counter` with increasing values."""
    api = server.api
    counters: dict[str, int] = {}
    n = 0
    with httpx.Client(timeout=5.0) as client:
        while not stop.is_set():
            entity_id = f"urn:ngsi-ld:Counter:w{worker}:{n % ENTITIES_PER_WORKER}"
            try:
                if entity_id not in counters:
                    response = client.post(f"{api}/entities", json={
                        "id": entity_id, "type": "Counter",
                        "counter": {"type": "Property", "value": 0},
                        "worker": {"type": "Property", "value": worker}})
                    if response.status_code in (201, 409):
                        counters[entity_id] = 0
                    if response.status_code == 201:
                        with lock:
                            created.add(entity_id)
                            acked[entity_id] = 0
                else:
                    value = counters[entity_id] + 1
                    response = client.patch(f"{api}/entities/{entity_id}/attrs/counter",
                                            json={"value": value})
                    counters[entity_id] = value
                    if response.status_code == 204:
                        with lock:
                            acked[entity_id] = max(acked.get(entity_id, 0), value)
            except httpx.HTTPError:
                if stop.is_set():
                    return
                time.sleep(0.01)  # the server is gone or busy: not acknowledged
            n += 1


def test_acknowledged_writes_survive_sigkill(tmp_path: Path, e2e: Any) -> None:
    data_dir = tmp_path / "data"
    server = e2e.start_server(data_dir)

    created: set[str] = set()
    acked: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()
    threads = [threading.Thread(target=_load, args=(server, w, stop, created, acked, lock),
                                daemon=True) for w in range(WORKERS)]
    for thread in threads:
        thread.start()

    # Kill mid-load: once a good number of updates have been acknowledged.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with lock:
            progress = sum(acked.values())
        if progress >= 2000 and len(created) >= WORKERS * ENTITIES_PER_WORKER:
            break
        time.sleep(0.02)
    server.kill()
    with lock:  # snapshot taken after the kill: nothing can be acknowledged any more
        snapshot_created = set(created)
        snapshot_acked = dict(acked)
    stop.set()
    for thread in threads:
        thread.join(timeout=15)
    assert not any(t.is_alive() for t in threads)
    assert snapshot_created, "no write was acknowledged before the kill"
    assert sum(snapshot_acked.values()) > 0, "no update was acknowledged before the kill"

    restarted = e2e.start_server(data_dir)
    lost_entities: list[str] = []
    regressions: list[tuple[str, int, object]] = []
    with httpx.Client(timeout=10.0) as client:
        for entity_id, value in sorted(snapshot_acked.items()):
            response = client.get(f"{restarted.api}/entities/{entity_id}",
                                  params={"options": "keyValues"})
            if response.status_code == 404:
                lost_entities.append(entity_id)
                continue
            assert response.status_code == 200, response.text
            stored = response.json()["counter"]
            if not isinstance(stored, int) or stored < value:
                regressions.append((entity_id, value, stored))
        info = client.get(f"{restarted.api}/types/Counter")
        assert info.status_code == 200, info.text
        assert info.json()["entityCount"] >= len(snapshot_created)
    assert not lost_entities, f"acknowledged creates lost: {lost_entities[:10]}"
    assert not regressions, f"acknowledged updates lost (id, acked, stored): {regressions[:10]}"

    # the restarted server takes writes again
    with httpx.Client(timeout=10.0) as client:
        some_id = min(snapshot_created)
        response = client.patch(f"{restarted.api}/entities/{some_id}/attrs/counter",
                                json={"value": 10**6})
        assert response.status_code == 204, response.text
