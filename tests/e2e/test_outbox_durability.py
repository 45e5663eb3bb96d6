"""Transactional outbox across SIGKILL: every acknowledged change is notified (at-least-once).

The receiver is down while the changes are acknowledged; the server is killed (no shutdown
handler runs); the receiver comes up and the server restarts on the same data directory:
every acknowledged value arrives (duplicates allowed)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson


class Receiver:
    def __init__(self, port: int) -> None:
        self.values: list[Any] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.changed:
                    receiver.values.extend(e["level"]["value"] for e in body["data"])
                    receiver.changed.notify_all()
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_distinct(self, count: int, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: len(set(self.values)) >= count, timeout)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_notifications_survive_sigkill(e2e: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = e2e.free_port()
    server = e2e.start_server(data)
    with httpx.Client(base_url=server.api, timeout=10) as http:
        created = http.post("/subscriptions", json={
            "type": "Subscription", "entities": [{"type": "Gauge"}],
            "notification": {"endpoint": {"uri": f"http://127.0.0.1:{port}/n"}}})
        assert created.status_code == 201, created.text
        assert http.post("/entities", json={"id": "urn:ngsi-ld:Gauge:1", "type": "Gauge",
                                            "level": {"value": 0}}).status_code == 201
        acknowledged = [0]
        for value in range(1, 101):
            response = http.patch("/entities/urn:ngsi-ld:Gauge:1/attrs/level",
                                  json={"value": value})
            assert response.status_code == 204
            acknowledged.append(value)
    server.kill()
    receiver = Receiver(port)
    try:
        started = time.monotonic()
        e2e.start_server(data)
        assert receiver.wait_distinct(len(acknowledged), timeout=60), (
            f"{len(set(receiver.values))} of {len(acknowledged)} after "
            f"{time.monotonic() - started:.1f} s")
        assert set(receiver.values) == set(acknowledged)
    finally:
        receiver.close()
