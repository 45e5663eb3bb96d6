"""Delivery of the notification outbox: at-least-once, with retries and per-endpoint isolation.

One ``TenantDispatcher`` per tenant reads COMMITTED outbox rows through its own read-only
connection (``OutboxReader``): rows never tried (``id`` above the last one seen) and rows
whose retry time has come. It wakes up when told (after the commit of a change that staged
notifications) and every ``poll_s`` anyway. Rows go to one ``EndpointWorker`` per endpoint
URI: at most ``concurrency`` deliveries in flight per endpoint and ``max_queue`` rows queued,
so an endpoint that is slow or down never slows the others, nor the writes (which only insert
rows). A failure blocks the endpoint for ``min(cap, base * 2**failures)`` plus jitter: the
failed row and every row of that endpoint read meanwhile are rescheduled after it (a row is
only *attempted* once the endpoint is unblocked). On success the row is deleted.

Row deletions, reschedules and the subscriptions' delivery status are staged through the
store (``Store.stage``) in one batch per event-loop turn; a row stays "in flight" (never
re-read) until its change is committed. After a crash the rows are still there: a row
delivered but not yet deleted is delivered again (at-least-once). The delivery status goes as
increments (``SubscriptionStatus``: one sending more, the time of the last success...), summed
per subscription until the batch is staged, so that the workers sharing a store add up their
deliveries instead of overwriting each other's.

A reader of a store shared by several workers claims the rows it returns for a lease
(``OutboxReader.lease_s``); the dispatcher renews the claims of the rows it still holds (queued,
in delivery, or their outcome being committed) every third of a lease, so another worker never
takes a row from a delivery that is merely slow: only a worker that died (or stalled for a
whole lease) loses its rows.

Under load, rows of one subscription that are already queued for the same endpoint are sent
as ONE notification whose ``data`` holds all their entities, in order (at most ``batch_max``
rows; NGSI-LD notifications carry an array of entities). Nothing waits for a batch to fill: a
lone row goes alone at once, so batching only appears when deliveries fall behind, and it is
what keeps 1,000 changes/s deliverable on 2 cores (one POST costs ~30x the merge).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from cityvisor.ngsild.errors import StoreUnavailable
from cityvisor.store.base import OutboxReader, StaleWrite, Store
from cityvisor.store.records import OutboxDone, OutboxRetry, OutboxRow, SubscriptionStatus

LOG = logging.getLogger("cityvisor.notify")
Sender = Callable[[dict[str, Any], bytes, str | None], Awaitable[None]]
#: (subscription id, event, when) -> the status increment to store, for the events "sent",
#: "ok", "failed" and "held" (``broker.subscriptions.delivery_status``)
StatusSink = Callable[[str, str, float], SubscriptionStatus]
#: stagings of outcomes tried before giving up (a deadlock with another worker: StaleWrite)
COMMIT_ATTEMPTS = 3
#: claims are renewed this many times per lease (two renewals may fail or come late)
RENEWALS_PER_LEASE = 3


@dataclass
class RetryPolicy:
    base_s: float = 0.5
    cap_s: float = 30.0
    jitter: float = 0.2  # up to +20 %

    def delay(self, failures: int) -> float:
        delay = min(self.cap_s, self.base_s * 2 ** min(failures, 40))
        return delay + random.uniform(0, delay * self.jitter)


class EndpointWorker:
    """Deliveries to one endpoint URI."""

    def __init__(self, dispatcher: TenantDispatcher, uri: str) -> None:
        self.dispatcher = dispatcher
        self.uri = uri
        self.queue: deque[OutboxRow] = deque()
        self.tasks: set[asyncio.Task[None]] = set()
        self.failures = 0
        self.blocked_until = 0.0

    def submit(self, row: OutboxRow) -> None:
        d = self.dispatcher
        if d.clock() < self.blocked_until or len(self.queue) >= d.max_queue:
            if self.failures:
                d.not_sent(row)  # the endpoint is failing: this notification cannot go now
            d.reschedule(row, row.attempts, max(self.blocked_until, d.clock() + 0.2))
            return
        self.queue.append(row)
        while self.queue and len(self.tasks) < d.concurrency:
            task = asyncio.create_task(self._run())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _take(self) -> list[OutboxRow]:
        """The next row and the queued rows of the same subscription right behind it."""
        rows = [self.queue.popleft()]
        limit = self.dispatcher.batch_max
        while (self.queue and len(rows) < limit
               and self.queue[0].subscription == rows[0].subscription
               and self.queue[0].target == rows[0].target):
            rows.append(self.queue.popleft())
        rows.sort(key=lambda row: row.id)  # retried rows come back in jittered order
        return rows

    async def _run(self) -> None:
        d = self.dispatcher
        while self.queue:
            rows = self._take()
            if d.clock() < self.blocked_until:
                d.not_sent(rows[0])
                for row in rows:
                    d.reschedule(row, row.attempts, self.blocked_until)
                continue
            row = rows[0]
            try:
                target = orjson.loads(row.target)
                sender = d.senders[target["uri"].split(":", 1)[0].rstrip("s")]
                d.sending(row)
                await sender(target, merge_payloads([r.payload for r in rows]), d.tenant)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                now = d.clock()
                self.failures += 1
                delay = d.policy.delay(self.failures - 1)
                self.blocked_until = max(self.blocked_until, now + delay)
                LOG.info("notification to %s failed (%s); retry in %.1f s", self.uri, error,
                         delay)
                d.failed(rows, now + delay)
            else:
                self.failures = 0
                self.blocked_until = 0.0
                d.succeeded(rows)


def merge_payloads(payloads: list[bytes]) -> bytes:
    """One notification carrying the entities of several (same subscription, in order); the
    first one's id, the last one's ``notifiedAt``."""
    if len(payloads) == 1:
        return payloads[0]
    bodies = [orjson.loads(payload) for payload in payloads]
    merged = bodies[0]
    merged["data"] = [entity for body in bodies for entity in body["data"]]
    merged["notifiedAt"] = bodies[-1]["notifiedAt"]
    return orjson.dumps(merged)


class TenantDispatcher:
    def __init__(self, service: Outbox, tenant: str | None) -> None:
        self.service = service
        self.tenant = tenant
        self.clock = service.clock
        self.policy = service.policy
        self.senders = service.senders
        self.concurrency = service.concurrency
        self.max_queue = service.max_queue
        self.batch_max = service.batch_max
        self.event = asyncio.Event()
        self.reader: OutboxReader | None = None
        self.last_id = 0
        self.inflight: set[int] = set()
        self.workers: dict[str, EndpointWorker] = {}
        self._writes: list[object] = []
        self._statuses: dict[str, SubscriptionStatus] = {}
        self._flush_scheduled = False
        self._flushes: set[asyncio.Task[None]] = set()
        self.task: asyncio.Task[None] | None = None
        self.renewals: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        self.reader = await self.service.store.outbox_reader(self.tenant)
        if self.reader.lease_s is not None:
            self.renewals = asyncio.create_task(self._renew(self.reader, self.reader.lease_s))
        next_due = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event.wait(), self.service.poll_s)
            self.event.clear()
            try:
                rows = await self.reader.fresh(self.last_id, 1000)
                if rows:
                    self.last_id = rows[-1].id
                    if len(rows) == 1000:
                        self.event.set()
                now = self.clock()
                if now >= next_due:
                    next_due = now + self.service.poll_s
                    rows.extend(await self.reader.due(now, 1000))
            except StoreUnavailable as error:  # the database is away: next round
                LOG.warning("reading the outbox of tenant %s: %s", self.tenant or "(default)",
                            error.detail)
                continue
            except Exception:  # pragma: no cover - e.g. database busy: next round
                LOG.exception("reading the outbox failed")
                continue
            for row in rows:
                if row.id in self.inflight:
                    continue
                self.inflight.add(row.id)
                worker = self.workers.get(row.endpoint)
                if worker is None:
                    worker = self.workers[row.endpoint] = EndpointWorker(self, row.endpoint)
                worker.submit(row)

    async def _renew(self, reader: OutboxReader, lease_s: float) -> None:
        """Keep the claims of the rows in work, every ``lease_s / RENEWALS_PER_LEASE``."""
        while True:
            await asyncio.sleep(lease_s / RENEWALS_PER_LEASE)
            if not self.inflight:
                continue
            try:
                await reader.renew(sorted(self.inflight))
            except StoreUnavailable as error:  # the database is away: next round
                LOG.warning("renewing the outbox claims of tenant %s: %s",
                            self.tenant or "(default)", error.detail)
            except Exception:  # pragma: no cover - next round
                LOG.exception("renewing the outbox claims failed")

    # ------------------------------------------------------------ outcomes

    def succeeded(self, rows: list[OutboxRow]) -> None:
        self._status(rows[0], "ok")  # one notification sent
        for row in rows:
            self._write(OutboxDone(row.id), row.id)

    def failed(self, rows: list[OutboxRow], next_at: float) -> None:
        self._status(rows[0], "failed")
        for row in rows:
            self._write(OutboxRetry(row.id, row.attempts + 1, next_at), row.id)

    def reschedule(self, row: OutboxRow, attempts: int, at: float) -> None:
        """Not attempted (endpoint blocked or queue full): try at ``at`` (plus jitter)."""
        self._write(OutboxRetry(row.id, attempts, at + random.uniform(0, 0.05)), row.id)

    def sending(self, row: OutboxRow) -> None:
        """A notification goes out now: counted before its outcome is known."""
        self._status(row, "sent")

    def not_sent(self, row: OutboxRow) -> None:
        """Not attempted because its endpoint is failing: the subscription's notification
        status is "failed" (clause 5.2.14), without counting a sending."""
        self._status(row, "held")

    def _status(self, row: OutboxRow, event: str) -> None:
        record = self.service.status(row.subscription, event, self.clock())
        held = self._statuses.get(record.id)
        self._statuses[record.id] = record if held is None else held.plus(record)

    def _write(self, record: object, row_id: int) -> None:
        self._writes.append((record, row_id))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        writes, self._writes = self._writes, []
        statuses, self._statuses = list(self._statuses.values()), {}
        if not writes and not statuses:
            return
        task = asyncio.create_task(self._commit(writes, statuses))
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def settled(self) -> None:
        """Stage the delivery status noted so far and wait for its commit (and for the
        outcomes being recorded): a read of the store then counts them."""
        if self._statuses:
            self._flush()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    async def _commit(self, writes: list[Any], statuses: list[SubscriptionStatus]) -> None:
        ids = [row_id for _, row_id in writes]
        records = [record for record, _ in writes] + statuses
        try:
            for attempt in range(1, COMMIT_ATTEMPTS + 1):
                try:
                    durable = await self.service.store.stage(self.tenant, [], records)
                except StaleWrite:  # crossed another worker's transaction: nothing written
                    if attempt == COMMIT_ATTEMPTS:
                        raise
                    await asyncio.sleep(random.uniform(0, 0.01 * attempt))
                    continue
                await durable
                break
        except Exception:  # pragma: no cover - the rows stay: delivered again later
            LOG.exception("recording notification outcomes failed")
        finally:
            self.inflight.difference_update(ids)

    async def close(self) -> None:
        for task in (self.task, self.renewals):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for worker in self.workers.values():
            for task in list(worker.tasks):
                task.cancel()
            for task in list(worker.tasks):
                try:
                    await task
                except asyncio.CancelledError:
                    pass
                except Exception:  # the row stays in the outbox: delivered after a restart
                    LOG.exception("a notification delivery failed while stopping")
        if self._flush_scheduled or self._statuses:
            self._flush()
        for task in list(self._flushes):
            await task  # _commit logs its own failures
        if self.reader is not None:
            await self.reader.close()


class Outbox:
    """The delivery service: one dispatcher per tenant with notifications."""

    def __init__(self, store: Store, senders: dict[str, Sender], status: StatusSink, *,
                 clock: Callable[[], float] = time.time, policy: RetryPolicy | None = None,
                 concurrency: int = 8, max_queue: int = 2000, poll_s: float = 0.1,
                 batch_max: int = 100) -> None:
        self.store = store
        self.senders = senders
        self.status = status
        self.clock = clock
        self.policy = policy or RetryPolicy()
        self.concurrency = concurrency
        self.max_queue = max_queue
        self.poll_s = poll_s
        self.batch_max = batch_max
        self.dispatchers: dict[str | None, TenantDispatcher] = {}
        self.running = False

    async def start(self, tenants: list[str | None]) -> None:
        self.running = True
        for tenant in tenants:
            self._dispatcher(tenant)

    def _dispatcher(self, tenant: str | None) -> TenantDispatcher | None:
        if not self.running:
            return None
        dispatcher = self.dispatchers.get(tenant)
        if dispatcher is None:
            dispatcher = self.dispatchers[tenant] = TenantDispatcher(self, tenant)
            dispatcher.start()
        return dispatcher

    def wake(self, tenant: str | None) -> None:
        """Called when notifications were staged: read them once committed. The store
        commits on a later turn of the loop (``call_soon`` queued at the transaction's
        start); two hops put the wake-up after it."""
        dispatcher = self._dispatcher(tenant)
        if dispatcher is not None:
            loop = asyncio.get_running_loop()
            loop.call_soon(loop.call_soon, dispatcher.event.set)

    async def settled(self, tenant: str | None) -> None:
        """Once the delivery status noted so far for ``tenant`` is stored
        (``TenantDispatcher.settled``)."""
        dispatcher = self.dispatchers.get(tenant)
        if dispatcher is not None:
            await dispatcher.settled()

    async def close(self) -> None:
        self.running = False
        for dispatcher in self.dispatchers.values():
            await dispatcher.close()
        self.dispatchers.clear()
