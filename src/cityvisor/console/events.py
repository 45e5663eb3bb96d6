"""Live updates for the console: server-sent events fed by the broker's committed changes.

The hub registers itself as an ``EntityBroker`` observer the first time a console connects
(before that, writes pay nothing); with nobody watching a tenant, it returns at once. The
broker tells it of every committed batch (this worker's once durable, before the write
returns; the other workers' from the change feed), so a console never shows a change that
was refused (and retried) or failed to commit. The hub patches the live layers at once and
publishes on the next loop turn. Each connection has a bounded queue (in writes and in changes):
a console that cannot keep up gets a ``resync`` event (reload the layers) instead of unbounded
memory.

One SSE message carries a JSON array of the changes of one or more writes::

    data: [{"id": ..., "type": "Streetlight", "kind": "streetlights", "state": "faulty",
            "value": 0, "lon": 4.36, "lat": 43.84}, {"id": ..., "type": "Alert",
            "alert": true, "critical": true}, ...]
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from cityvisor.broker.changes import EntitiesChanged, Resync
from cityvisor.broker.entities import WriteOp
from cityvisor.ngsild.errors import CityvisorProblem, NgsiLdError

from . import alarms, layers
from .layer_cache import LayerCache
from .session import ConsoleServices, Operator, authenticate, services_of

log = logging.getLogger("cityvisor.console.events")

QUEUE_LIMIT = 5_000
#: changes a console may have waiting (whatever the number of writes they came in): one bulk
#: write of the whole city fits; past it the console gets ``resync``. Batches are shared by
#: all listeners, so this bounds the memory held for slow consoles.
EVENT_LIMIT = 50_000
BATCH_LIMIT = 5_000
HEARTBEAT_S = 15.0
SHELVE_SWEEP_S = 10.0
ALERT_TYPE = "Alert"
#: live streams one server keeps at most (a supervision centre runs dozens of consoles; each
#: stream may buffer up to QUEUE_LIMIT batches, so the total is bounded)
MAX_STREAMS = 500


async def _always() -> bool:
    """A stream whose viewer is never signed out."""
    return True


class TooManyStreams(CityvisorProblem):
    """The server already serves MAX_STREAMS live streams (HTTP 503, retry later)."""

    type_name, status, title = "TooManyStreams", 503, "Too many live streams"


@dataclass(eq=False)
class Listener:
    tenant: str | None
    queue: asyncio.Queue[list[dict[str, Any]] | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    overflowed: bool = False
    pending: int = 0  # changes queued, not yet sent


class EventHub:
    """Fan-out of entity changes to the connected consoles of one ``Services``."""

    def __init__(self, services: ConsoleServices) -> None:
        self.services = services
        self.listeners: set[Listener] = set()
        self._installed = False
        self._sweeper: asyncio.Task[None] | None = None
        self.cache = LayerCache(services)
        #: failed shelving sweeps of one tenant (each logged with its traceback)
        self.sweep_errors = 0

    def subscribe(self, tenant: str | None) -> Listener:
        if not self._installed:
            self.services.broker.observers.append(self.on_committed)
            self._installed = True
        listener = Listener(tenant)
        self.listeners.add(listener)
        self.cache.watched.add(tenant)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.create_task(self._sweep_shelving())
        return listener

    def unsubscribe(self, listener: Listener) -> None:
        self.listeners.discard(listener)
        if listener.tenant in self.cache.watched and not any(
                other.tenant == listener.tenant for other in self.listeners):
            self.cache.watched.discard(listener.tenant)
            self.cache.drop(listener.tenant)
        if not self.listeners and self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    async def on_committed(self, change: EntitiesChanged | Resync) -> None:
        """The broker observer: a committed batch (whichever worker wrote it) patches the
        layers and reaches the consoles of its tenant; after a ``Resync`` (changes may have
        been lost) every console reloads its layers."""
        if isinstance(change, EntitiesChanged):
            await self.show(change.tenant, change.ops)
            return
        for tenant in list(self.cache.watched):
            self.cache.drop(tenant)
        for listener in list(self.listeners):
            listener.overflowed = True
            with contextlib.suppress(asyncio.QueueFull):
                listener.queue.put_nowait([])  # wakes a stream waiting for changes

    async def show(self, tenant: str | None, ops: Sequence[WriteOp]) -> None:
        """Patch the live layers with committed changes and publish them to the consoles."""
        if tenant not in self.cache.watched:  # the tenants of the listeners, kept in step
            return
        events = await self.describe(ops)
        if events:
            self.cache.apply(tenant, events)
            asyncio.get_running_loop().call_soon(self.publish, tenant, events)

    async def describe(self, ops: Sequence[WriteOp]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for op in ops:
            entity = op.new or op.old
            if entity is None:
                continue
            short = layers.short_type(entity)
            if short == ALERT_TYPE:
                events.append(await self._alert_event(op))
                continue
            kinds = layers.kinds_of_type(short)
            if op.new is None:
                events.append({"id": entity["id"], "type": short, "deleted": True,
                               "kinds": [k.name for k in kinds]})
                continue
            for kind in kinds:
                terms = await layers.term_map(self.services, kind)
                found = layers.feature(kind, op.new, terms)
                if found is not None:
                    events.append({"type": short, **found})
            if not kinds:
                events.append({"id": entity["id"], "type": short})
        return events

    async def _alert_event(self, op: WriteOp) -> dict[str, Any]:
        entity = op.new or op.old
        assert entity is not None
        event: dict[str, Any] = {"id": entity["id"], "type": ALERT_TYPE, "alert": True,
                                 "deleted": op.new is None}
        if op.new is None:
            return event
        terms = await self.services.contexts.term_map([alarms.ALERT_CONTEXT])
        new = layers.values_of(op.new, terms)
        old = layers.values_of(op.old, terms) if op.old is not None else None
        new_state = new("workflowState") or "new"
        critical = new("severity") == "critical" and new_state == "new"
        # signal a critical alert when it appears, becomes critical, or is raised to new again
        was = (old is not None and old("severity") == "critical"
               and (old("workflowState") or "new") == "new")
        event["critical"] = critical and not was
        event["severity"] = new("severity")
        event["workflowState"] = new_state
        return event

    def publish(self, tenant: str | None, events: list[dict[str, Any]]) -> None:
        for listener in list(self.listeners):
            if listener.tenant != tenant or listener.overflowed:
                continue
            if listener.pending + len(events) > EVENT_LIMIT:
                listener.overflowed = True
                continue
            try:
                listener.queue.put_nowait(events)
            except asyncio.QueueFull:
                listener.overflowed = True
                continue
            listener.pending += len(events)

    async def _sweep_shelving(self) -> None:
        """Expired shelving returns alerts to their previous state while consoles watch."""
        while True:
            await asyncio.sleep(SHELVE_SWEEP_S)
            for tenant in list(self.cache.watched):
                await self.sweep_tenant(tenant)

    async def sweep_tenant(self, tenant: str | None) -> None:
        """One tenant's shelving sweep; a failure (the broker closing, a bad alert) must not
        end the sweeps of the others or the next ones: it is logged and counted."""
        try:
            await alarms.expire_shelving(self.services, tenant)
        except Exception:
            self.sweep_errors += 1
            log.warning("console: shelving sweep of tenant %s failed (%d failures so far)",
                        tenant or "(default)", self.sweep_errors, exc_info=True)

    async def stream(self, listener: Listener, heartbeat_s: float = HEARTBEAT_S,
                     still_allowed: Callable[[], Awaitable[bool]] = _always
                     ) -> AsyncGenerator[bytes, None]:
        """The SSE byte stream of one connection; ends with ``event: signedout`` when
        ``still_allowed()`` turns false (token revoked), checked at least every ``heartbeat_s``
        (also while changes keep coming: a busy city must not keep a revoked console live)."""
        try:
            yield b"retry: 3000\nevent: hello\ndata: {}\n\n"
            checked = time.monotonic()
            while True:
                if time.monotonic() - checked >= heartbeat_s:
                    checked = time.monotonic()
                    if not await still_allowed():
                        yield b"event: signedout\ndata: {}\n\n"
                        return
                if listener.overflowed:
                    listener.overflowed = False
                    _drain(listener.queue)
                    listener.pending = 0
                    yield b"event: resync\ndata: {}\n\n"
                    continue
                try:
                    first = await asyncio.wait_for(listener.queue.get(), heartbeat_s)
                except TimeoutError:
                    checked = time.monotonic()
                    if not await still_allowed():
                        yield b"event: signedout\ndata: {}\n\n"
                        return
                    yield b": keep-alive\n\n"
                    continue
                if first is None:
                    return
                if listener.overflowed:
                    continue  # resync first (and drop what is queued)
                batch = list(first)
                while len(batch) < BATCH_LIMIT and not listener.queue.empty():
                    more = listener.queue.get_nowait()
                    if more is None:
                        break
                    batch.extend(more)
                listener.pending = max(0, listener.pending - len(batch))
                yield b"data: " + orjson.dumps(batch) + b"\n\n"
        finally:
            self.unsubscribe(listener)


class EventStreamResponse(StreamingResponse):
    """``text/event-stream`` of one console. The listener is registered when the response
    starts and always removed when it ends, however it ends: the client disconnects (noticed
    at once, whatever the ASGI server's spec version, not at the next write), the stream
    finishes, or the response is cancelled before its first byte."""

    def __init__(self, hub: EventHub, tenant: str | None,
                 still_allowed: Callable[[], Awaitable[bool]]) -> None:
        super().__init__(_empty(), media_type="text/event-stream",
                         headers={"cache-control": "no-store", "x-accel-buffering": "no"})
        self.hub = hub
        self.tenant = tenant
        self.still_allowed = still_allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        listener = self.hub.subscribe(self.tenant)
        stream = self.hub.stream(listener, still_allowed=self.still_allowed)
        self.body_iterator = stream
        try:
            async with anyio.create_task_group() as group:

                async def respond() -> None:
                    with contextlib.suppress(OSError):  # the client went away mid-write
                        await self.stream_response(send)
                    group.cancel_scope.cancel()

                group.start_soon(respond)
                await self.listen_for_disconnect(receive)
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await stream.aclose()
            self.hub.unsubscribe(listener)  # also when the stream never started


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover (an async generator that yields nothing)


def _drain(queue: asyncio.Queue[Any]) -> None:
    while not queue.empty():
        queue.get_nowait()


_hubs: dict[int, EventHub] = {}


def hub_of(services: ConsoleServices) -> EventHub:
    hub = _hubs.get(id(services))
    if hub is None:
        hub = _hubs[id(services)] = EventHub(services)
    return hub


async def layer(request: Request, operator: Operator) -> Response:
    """GET /console/api/layers/{kind}: from the live cache while consoles watch the tenant,
    else built from the store."""
    started = time.perf_counter()
    kind = layers.kind_named(request.path_params["kind"])
    services = services_of(request)
    hub = hub_of(services)
    if operator.tenant in hub.cache.watched:
        data = await hub.cache.get(operator.tenant, kind)
    else:
        data = await layers.build_layer(services, operator.tenant, kind)
    return layers.layer_response(request, data, (time.perf_counter() - started) * 1000)


async def events(request: Request, operator: Operator) -> Response:
    """GET /console/api/events: the live change stream (text/event-stream)."""
    hub = hub_of(services_of(request))
    if len(hub.listeners) >= MAX_STREAMS:
        raise TooManyStreams(f"This server already serves {MAX_STREAMS} live streams: "
                             "close a console or retry later")

    async def still_allowed() -> bool:
        try:
            await authenticate(request, "reader")
        except NgsiLdError:
            return False
        return True

    return EventStreamResponse(hub, operator.tenant, still_allowed)
