"""Notification benchmark: latency and losslessness of HTTP and MQTT notifications.

    .venv/bin/python benchmarks/notifications.py            # 1,000 updates/s for 20 s, 30 s outage
    .venv/bin/python benchmarks/notifications.py --quick    # 5 s and a 5 s outage

A real server (``benchmarks/_server.py``) with two subscriptions on type Gauge: one to a local
HTTP receiver (a threaded ``http.server`` in this process), one to MQTT (Mosquitto at
127.0.0.1:1883, subscribed here with aiomqtt). Phase ``steady``: PATCH ``level`` of 100
entities with a unique value each, at ``--rate`` per second for ``--duration`` s; latency is
receive time minus the time the PATCH's 204 was read (same clock, same machine). Phase
``outage``: the HTTP receiver is down for ``--outage`` s while updates go on, then comes back:
delivered vs expected and the time to drain. Prints one JSON line (stdout), a summary (stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import BenchServer, free_port

ENTITIES = 100


class Receiver:
    """HTTP receiver recording (value -> first receive time)."""

    def __init__(self, port: int, seen: dict[int, float]) -> None:
        self.seen = seen
        self.port = port
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
                now = time.monotonic()
                for entity in body["data"]:
                    seen.setdefault(entity["level"]["value"], now)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


async def load(http: httpx.AsyncClient, rate: int, duration: float, first: int,
               acked: dict[int, float]) -> int:
    """PATCH unique values at ``rate``/s for ``duration`` s; returns the next value."""
    value = first
    start = time.monotonic()
    tick = 0.01
    per_tick = max(1, round(rate * tick))
    pending: set[asyncio.Task[None]] = set()

    async def patch(v: int) -> None:
        response = await http.patch(
            f"/entities/urn:ngsi-ld:Gauge:{v % ENTITIES}/attrs/level", json={"value": v})
        if response.status_code == 204:
            acked[v] = time.monotonic()

    n = 0
    while time.monotonic() - start < duration:
        for _ in range(per_tick):
            task = asyncio.create_task(patch(value))
            pending.add(task)
            task.add_done_callback(pending.discard)
            value += 1
        n += 1
        delay = start + n * tick - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)
    return value


async def wait_all(seen: dict[int, float], expected: set[int], limit_s: float) -> float:
    start = time.monotonic()
    for _ in range(int(limit_s / 0.05)):
        if expected <= seen.keys():
            break
        await asyncio.sleep(0.05)
    return time.monotonic() - start


def stats(acked: dict[int, float], seen: dict[int, float]) -> dict[str, Any]:
    latencies = [max(0.0, seen[v] - t) for v, t in acked.items() if v in seen]
    return {"expected": len(acked), "delivered": sum(1 for v in acked if v in seen),
            "lost": sum(1 for v in acked if v not in seen),
            "p50_ms": percentile(latencies, 0.50), "p99_ms": percentile(latencies, 0.99),
            "max_ms": percentile(latencies, 1.0)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    http_seen: dict[int, float] = {}
    mqtt_seen: dict[int, float] = {}
    receiver = Receiver(port, http_seen)
    receiver.start()
    topic = f"cityvisor-bench/{uuid.uuid4().hex}"
    env = {"CITYVISOR_NOTIFICATION_RETRY_CAP_S": str(args.retry_cap)}
    result: dict[str, Any] = {"benchmark": "notifications", "cores": os.cpu_count(),
                              "rate": args.rate, "duration_s": args.duration,
                              "retry_cap_s": args.retry_cap}
    with BenchServer.start(env=env) as server:
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        async with httpx.AsyncClient(base_url=server.api, limits=limits, timeout=30) as http, \
                aiomqtt.Client("127.0.0.1", 1883) as mqtt:
            await mqtt.subscribe(topic, qos=1)

            async def consume() -> None:
                async for message in mqtt.messages:
                    now = time.monotonic()
                    body = orjson.loads(message.payload)["body"]
                    for entity in body["data"]:
                        mqtt_seen.setdefault(entity["level"]["value"], now)

            consumer = asyncio.create_task(consume())
            for n in range(ENTITIES):
                await http.post("/entities", json={"id": f"urn:ngsi-ld:Gauge:{n}",
                                                   "type": "Gauge", "level": {"value": -1 - n}})
            for uri in (f"http://127.0.0.1:{port}/notify", f"mqtt://127.0.0.1:1883/{topic}"):
                info = [{"key": "MQTT-QoS", "value": "1"}] if uri.startswith("mqtt") else []
                response = await http.post("/subscriptions", json={
                    "type": "Subscription", "entities": [{"type": "Gauge"}],
                    "watchedAttributes": ["level"], "notification": {
                        "attributes": ["level"],
                        "endpoint": {"uri": uri, "notifierInfo": info} if info else
                        {"uri": uri}}})
                assert response.status_code == 201, response.text
            # ---- steady state
            acked: dict[int, float] = {}
            started = time.monotonic()
            next_value = await load(http, args.rate, args.duration, 0, acked)
            result["achieved_rate"] = round(len(acked) / (time.monotonic() - started))
            await wait_all(http_seen, set(acked), 30)
            await wait_all(mqtt_seen, set(acked), 30)
            result["steady_http"] = stats(acked, http_seen)
            result["steady_mqtt"] = stats(acked, mqtt_seen)
            # ---- outage of the HTTP receiver
            receiver.stop()
            outage_acked: dict[int, float] = {}
            await load(http, args.rate, args.outage, next_value, outage_acked)
            receiver.start()
            back = time.monotonic()
            drain = await wait_all(http_seen, set(outage_acked), 120)
            delivered = sum(1 for v in outage_acked if v in http_seen)
            result["outage_http"] = {"outage_s": args.outage, "expected": len(outage_acked),
                                     "delivered": delivered,
                                     "lost": len(outage_acked) - delivered,
                                     "drain_s": round(drain, 2),
                                     "since_back_s": round(time.monotonic() - back, 2)}
            await wait_all(mqtt_seen, set(outage_acked), 30)
            result["outage_mqtt"] = stats(outage_acked, mqtt_seen)
            consumer.cancel()
        result["rss_mb"] = server.rss_mb()
    receiver.stop()
    steady = result["steady_http"], result["steady_mqtt"]
    result["pass"] = {
        "p99_le_50ms": all(s["p99_ms"] is not None and s["p99_ms"] <= 50 for s in steady),
        "zero_lost": all(s["lost"] == 0 for s in steady) and result["outage_http"]["lost"] == 0
        and result["outage_mqtt"]["lost"] == 0}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="updates per second")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--outage", type=float, default=30.0)
    parser.add_argument("--retry-cap", type=float, default=5.0,
                        help="notification_retry_cap_s of the server")
    parser.add_argument("--quick", action="store_true", help="5 s load, 5 s outage")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.outage = 5.0, 5.0
    result = asyncio.run(run(args))
    print(json.dumps(result))
    for key in ("steady_http", "steady_mqtt", "outage_http", "outage_mqtt"):
        print(f"{key:12} {result[key]}", file=sys.stderr)
    print(f"achieved {result['achieved_rate']} updates/s; pass {result['pass']}", file=sys.stderr)


if __name__ == "__main__":
    main()
