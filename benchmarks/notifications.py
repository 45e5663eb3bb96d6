"""Notification benchmark: latency and losslessness of HTTP and MQTT notifications.

    .venv/bin/python benchmarks/notifications.py            # 1,000 updates/s for 20 s, 30 s outage
    .venv/bin/python benchmarks/notifications.py --quick    # 5 s and a 5 s outage
    .venv/bin/python benchmarks/notifications.py --db postgresql://postgres@127.0.0.1/bench --workers 2

A real server (``benchmarks/_server.py``) with two subscriptions on type Gauge: one to a local
HTTP receiver (a threaded ``http.server`` in this process), one to MQTT (Mosquitto at
127.0.0.1:1883, subscribed here with aiomqtt). Phase ``steady``: PATCH ``level`` of 100
entities with a unique value each, at ``--rate`` per second for ``--duration`` s; latency is
receive time minus the time the PATCH's 204 was read (same clock, same machine). Phase
``outage``: the HTTP receiver is down for ``--outage`` s while updates go on, then comes back:
delivered vs expected and the time to drain. Phase ``sigkill``: the server (every worker
process) is SIGKILLed halfway through the load and restarted on its data. ``--db DSN`` runs the
server on PostgreSQL (a fresh schema namespace, dropped at the end), ``--workers N`` with N
worker processes. Prints one JSON line (stdout), a summary (stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import httpx
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import BenchServer, free_port

ENTITIES = 100


# ----------------------------------------------------------------- receivers (own processes)
# The load generator, the HTTP receiver and the MQTT consumer each run in their own process, so
# that none of them steals the others' interpreter (on 2 cores a single-process harness could
# not even send 500 updates/s). CLOCK_MONOTONIC is system-wide: times compare across processes.


async def _http_receiver(port: int, seen: dict[int, float]) -> None:
    """A minimal HTTP/1.1 keep-alive server: records (value -> first receive time), 204."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                body = orjson.loads(await reader.readexactly(length))
                now = time.monotonic()
                for entity in body["data"]:
                    seen.setdefault(entity["level"]["value"], now)
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, reuse_address=True)
    async with server:
        await server.serve_forever()


async def _mqtt_consumer(topic: str, seen: dict[int, float], ready: Any) -> None:
    async with aiomqtt.Client("127.0.0.1", 1883) as mqtt:
        await mqtt.subscribe(topic, qos=1)
        ready.set()
        async for message in mqtt.messages:
            now = time.monotonic()
            for entity in orjson.loads(message.payload)["body"]["data"]:
                seen.setdefault(entity["level"]["value"], now)


def _serve_process(kind: str, arg: Any, pipe: Any, ready: Any) -> None:
    """Child process: run the receiver until asked (over ``pipe``) for what it saw."""
    seen: dict[int, float] = {}

    async def serve() -> None:
        if kind == "http":
            task = asyncio.create_task(_http_receiver(arg, seen))
            await asyncio.sleep(0.2)
            ready.set()
        else:
            task = asyncio.create_task(_mqtt_consumer(arg, seen, ready))
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)  # then report, stop
        pipe.send(seen)
        task.cancel()

    asyncio.run(serve())


class Watcher:
    """A receiver in its own process: ``start()``; ``stop()`` returns all it has seen."""

    def __init__(self, kind: str, arg: Any) -> None:
        self.kind, self.arg = kind, arg
        self.process: Any = None
        self.seen: dict[int, float] = {}

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.pipe, child = ctx.Pipe()
        ready = ctx.Event()
        self.process = ctx.Process(target=_serve_process, args=(self.kind, self.arg, child, ready),
                                   daemon=True)
        self.process.start()
        if not ready.wait(20):
            raise RuntimeError(f"the {self.kind} receiver did not start")

    def stop(self) -> dict[int, float]:
        if self.process is not None:
            self.pipe.send("stop")
            for value, at in self.pipe.recv().items():
                self.seen.setdefault(value, at)
            self.process.join(10)
            self.process = None
        return self.seen


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)


async def _patch_sender(port: int, queue: asyncio.Queue[int], acked: dict[int, float]) -> None:
    """One keep-alive connection: PATCH the values taken from ``queue`` (raw HTTP/1.1: an
    httpx request costs ~1 ms of this process's CPU, too much at 1,000/s on 2 cores)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:  # ends when the server goes away (the SIGKILL phase) or when cancelled
            value = await queue.get()
            body = b'{"value": %d}' % value
            writer.write(
                (f"PATCH /ngsi-ld/v1/entities/urn:ngsi-ld:Gauge:{value % ENTITIES}/attrs/level "
                 f"HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
            head = await reader.readuntil(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:" and int(line[15:]):
                    await reader.readexactly(int(line[15:]))
            if head[9:12] == b"204":
                acked[value] = time.monotonic()
            queue.task_done()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


async def load(port: int, rate: int, duration: float, first: int, acked: dict[int, float]) -> int:
    """PATCH unique values at ``rate``/s for ``duration`` s over 16 connections; returns the
    next value. Values are released every 10 ms; a backlog shows as an achieved rate < rate."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    senders = [asyncio.create_task(_patch_sender(port, queue, acked)) for _ in range(16)]
    value = first
    start = time.monotonic()
    tick = 0.01
    n = 0
    while time.monotonic() - start < duration and not all(t.done() for t in senders):
        n += 1
        for _ in range(round(n * tick * rate) - (value - first)):
            queue.put_nowait(value)
            value += 1
        delay = start + n * tick - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    joined = asyncio.create_task(queue.join())
    await asyncio.wait([joined, asyncio.gather(*senders, return_exceptions=True)],
                       return_when=asyncio.FIRST_COMPLETED)
    for task in [*senders, joined]:
        task.cancel()
    return value


def stats(acked: dict[int, float], seen: dict[int, float]) -> dict[str, Any]:
    latencies = [max(0.0, seen[v] - t) for v, t in acked.items() if v in seen]
    return {"expected": len(acked), "delivered": sum(1 for v in acked if v in seen),
            "lost": sum(1 for v in acked if v not in seen),
            "p50_ms": percentile(latencies, 0.50), "p99_ms": percentile(latencies, 0.99),
            "max_ms": percentile(latencies, 1.0),
            "over_1s": sum(1 for latency in latencies if latency > 1.0)}


async def run(args: argparse.Namespace, serve: dict[str, Any]) -> dict[str, Any]:
    """The three phases on a server started with ``BenchServer.start(**serve)``."""
    port = free_port()
    topic = f"cityvisor-bench/{uuid.uuid4().hex}"
    http_watch = Watcher("http", port)
    mqtt_watch = Watcher("mqtt", topic)
    http_watch.start()
    mqtt_watch.start()
    env = {"CITYVISOR_NOTIFICATION_RETRY_CAP_S": str(args.retry_cap), **serve.get("env", {})}
    extra = serve.get("args", [])
    result: dict[str, Any] = {"benchmark": "notifications", "cores": os.cpu_count(),
                              "rate": args.rate, "duration_s": args.duration,
                              "retry_cap_s": args.retry_cap,
                              "loadavg_1m_at_start": os.getloadavg()[0]}
    with BenchServer.start(env=env, args=extra) as server:
        async with httpx.AsyncClient(base_url=server.api, timeout=30) as http:
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
        next_value = await load(server.port, args.rate, args.duration, 0, acked)
        result["achieved_rate"] = round(len(acked) / (time.monotonic() - started))
        await asyncio.sleep(args.settle)
        http_watch.stop()
        # ---- outage: the HTTP receiver is down (stopped above) while updates go on
        outage_acked: dict[int, float] = {}
        await load(server.port, args.rate, args.outage, next_value, outage_acked)
        http_watch.start()
        back = time.monotonic()
        await asyncio.sleep(args.drain)
        # ---- SIGKILL of the server in the middle of the load, then a restart on its data
        kill_acked: dict[int, float] = {}
        kill_from = next_value + int(args.rate * (args.outage + 1))
        loading = asyncio.create_task(load(server.port, args.rate, args.kill_load, kill_from,
                                           kill_acked))
        await asyncio.sleep(args.kill_load / 2)
        for pid in server.tree_pids():  # the workers too: the whole server crashes
            os.kill(pid, signal.SIGKILL)
        server.process.wait()
        await loading
        with BenchServer.start(data_dir=server.data_dir.parent, env=env, args=extra):
            await asyncio.sleep(args.drain)
        http_seen = http_watch.stop()
        mqtt_seen = mqtt_watch.stop()
        for key, seen in (("sigkill_http", http_seen), ("sigkill_mqtt", mqtt_seen)):
            result[key] = {"acked_before_kill": len(kill_acked),
                           "delivered": sum(1 for v in kill_acked if v in seen),
                           "lost": sum(1 for v in kill_acked if v not in seen)}
        result["steady_http"] = stats(acked, http_seen)
        result["steady_mqtt"] = stats(acked, mqtt_seen)
        last = max((http_seen[v] for v in outage_acked if v in http_seen), default=back)
        delivered = sum(1 for v in outage_acked if v in http_seen)
        result["outage_http"] = {"outage_s": args.outage, "expected": len(outage_acked),
                                 "delivered": delivered, "lost": len(outage_acked) - delivered,
                                 "drain_s": round(max(0.0, last - back), 2)}
        result["outage_mqtt"] = stats(outage_acked, mqtt_seen)
        result["rss_mb"] = server.rss_mb()
    result["loadavg_1m_at_end"] = os.getloadavg()[0]
    steady = result["steady_http"], result["steady_mqtt"]
    result["pass"] = {
        # a latency at a lower rate than asked is not the target's
        "rate_achieved": result["achieved_rate"] >= 0.95 * args.rate,
        "p99_le_50ms": all(s["p99_ms"] is not None and s["p99_ms"] <= 50 for s in steady),
        "zero_lost": all(result[k]["lost"] == 0 for k in (
            "steady_http", "steady_mqtt", "outage_http", "outage_mqtt", "sigkill_http",
            "sigkill_mqtt"))}
    return result




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="updates per second")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--outage", type=float, default=30.0)
    parser.add_argument("--retry-cap", type=float, default=5.0,
                        help="notification_retry_cap_s of the server")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds for the last notifications to arrive after the load")
    parser.add_argument("--drain", type=float, default=20.0,
                        help="seconds the receiver gets, once back, to catch up")
    parser.add_argument("--kill-load", type=float, default=6.0,
                        help="seconds of load around the SIGKILL of the server (killed halfway)")
    parser.add_argument("--quick", action="store_true", help="5 s load, 5 s outage")
    parser.add_argument("--db", metavar="DSN", help="run the server on PostgreSQL")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes (--db)")
    parser.add_argument("--lease", type=float, default=5.0,
                        help="db_outbox_lease_s of the server (--db; under --drain)")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.outage = 5.0, 5.0
    if args.workers > 1 and not args.db:
        parser.error("--workers needs --db (PostgreSQL)")
    database = None
    serve: dict[str, Any] = {}
    if args.db:
        from _postgres import BenchDatabase

        database = BenchDatabase.create(args.db)
        # the lease of a SIGKILLed worker's notifications must end within the drain time
        serve = {"args": database.serve_args(args.workers),
                 "env": {**database.env(), "CITYVISOR_DB_OUTBOX_LEASE_S": str(args.lease)}}
    try:
        result = asyncio.run(run(args, serve))
        if database is not None:
            result.update(backend="postgresql", postgresql=database.version(),
                          postgresql_settings=database.settings(), workers=args.workers,
                          outbox_lease_s=args.lease)
    finally:
        if database is not None:
            database.drop()
    print(json.dumps(result))
    for key in ("steady_http", "steady_mqtt", "outage_http", "outage_mqtt", "sigkill_http",
                "sigkill_mqtt"):
        print(f"{key:12} {result[key]}", file=sys.stderr)
    print(f"achieved {result['achieved_rate']} updates/s; pass {result['pass']}", file=sys.stderr)


if __name__ == "__main__":
    main()
