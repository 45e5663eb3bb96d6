"""A notification endpoint for tests: a threaded HTTP server on a free loopback port that
records what it is sent (and can fail the first attempts, or answer slowly)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

__all__ = ["Receiver"]


class Receiver:
    """A threaded HTTP server recording notifications; answers 500 ``fail`` times first, and
    each request ``delay_s`` seconds after recording it (a slow endpoint)."""

    def __init__(self, fail: int = 0, delay_s: float = 0.0) -> None:
        self.fail = fail
        self.delay_s = delay_s
        self.received: list[tuple[dict[str, str], dict[str, Any], float]] = []
        self.attempts: list[float] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.changed:
                    receiver.attempts.append(time.monotonic())
                    failing = receiver.fail > 0
                    if failing:
                        receiver.fail -= 1
                    else:
                        receiver.received.append((dict(self.headers), orjson.loads(body),
                                                  time.monotonic()))
                    receiver.changed.notify_all()
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                self.send_response(500 if failing else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def entities(self) -> list[dict[str, Any]]:
        """Every notified entity, in arrival order (a notification may carry several)."""
        return [entity for _, body, _ in self.received for entity in body["data"]]

    async def wait_for(self, count: int, limit_s: float = 10.0) -> None:
        """Wait until ``count`` entities were notified."""
        def wait() -> bool:
            with self.changed:
                return self.changed.wait_for(lambda: len(self.entities()) >= count, limit_s)

        assert await asyncio.to_thread(wait), f"{len(self.entities())} of {count} received"

    def wait_for_ids(self, ids: set[str], timeout: float) -> Counter[str]:
        """How many times each entity id was notified, once all of ``ids`` were (or
        ``timeout`` passed), half a second later: time for a duplicate to come."""
        deadline = time.monotonic() + timeout
        with self.changed:
            self.changed.wait_for(
                lambda: ids <= {e["id"] for e in self.entities()},
                max(0.0, deadline - time.monotonic()))
        time.sleep(0.5)
        with self.changed:
            return Counter(entity["id"] for entity in self.entities())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
