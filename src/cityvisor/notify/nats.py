"""The change feed on NATS JetStream (``cityvisor serve --nats nats://host:4222``).

One stream (``CITYVISOR`` by default; subjects ``cityvisor.>``, file storage, messages kept
``max_age_s``, at most ``max_bytes``) holds the changes every worker publishes. Each worker
reads it with its own ephemeral consumer, from the stream's end when it starts, and skips the
messages it published itself (each carries its worker id).

Failures never reach a write:

- ``publish`` only queues the change (bounded: ``buffer_messages``); a background task sends
  it, waiting while NATS is away. A full queue is dropped and replaced by one ``Resync``, and
  so is any change whose sending failed: the other workers then reload their caches.
- the client reconnects by itself; the worker then creates a new consumer from the stream
  sequence after the last one it saw, so nothing the stream still holds is missed. A gap in
  the sequence (messages aged out, a stream created anew) is a ``Resync`` for this worker.
- NATS unreachable at start: the worker starts anyway, keeps trying to connect, and once
  connected reloads its caches (a ``Resync`` of its own: it may have missed changes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Coroutine
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    StorageType,
    StreamConfig,
    StreamInfo,
)
from nats.js.errors import NotFoundError

from cityvisor.broker.changes import Change, Resync
from cityvisor.notify.feed import ChangeFeed, FeedFormatError, Message, decode, encode

log = logging.getLogger("cityvisor.notify.nats")

DEFAULT_STREAM = "CITYVISOR"


class NatsFeed(ChangeFeed):
    """Changes shared by the workers through one JetStream stream."""

    remote = True

    def __init__(self, url: str, *, stream: str = DEFAULT_STREAM,
                 subject_prefix: str | None = None, max_age_s: float = 3600.0,
                 max_bytes: int = 1 << 30, buffer_messages: int = 10_000,
                 max_message_bytes: int = 512 * 1024, worker_id: str | None = None,
                 reconnect_wait_s: float = 1.0, publish_timeout_s: float = 2.0,
                 connect_wait_s: float = 2.0) -> None:
        super().__init__()
        self.url = url
        self.stream = stream
        self.prefix = subject_prefix or stream.lower()
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self.buffer_messages = buffer_messages
        self.max_message_bytes = max_message_bytes
        self.worker_id = worker_id or uuid.uuid4().hex
        self.reconnect_wait_s = reconnect_wait_s
        self.publish_timeout_s = publish_timeout_s
        self.connect_wait_s = connect_wait_s
        #: NATS was not there at start: this worker resyncs once it connects
        self._late = False
        #: messages waiting to be sent, with their JetStream message ids (deduplication of
        #: a resend whose first try reached the stream)
        self._pending: deque[tuple[Message, str]] = deque()
        self._sent = 0
        #: the other workers must resync before what is pending (changes were lost)
        self._resync_first = False
        self._failing = False
        self._wake = asyncio.Event()
        #: set while nothing waits to be sent
        self._drained = asyncio.Event()
        self._drained.set()
        self._connected = asyncio.Event()
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._sub: JetStreamContext.PushSubscription | None = None
        #: the stream sequence of the last message this worker read (0: none yet)
        self._last_seq = 0
        self._consuming = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        #: counters (changes dropped on overflow, resyncs heard or made, messages sent)
        self.dropped = 0
        self.resyncs = 0

    # ------------------------------------------------------------------ publishing

    def publish(self, change: Change) -> None:
        if self._closed:
            return
        messages = encode(change, self.worker_id, self.max_message_bytes)
        if len(self._pending) + len(messages) > self.buffer_messages:
            self.dropped += len(self._pending) + len(messages)
            if not self._resync_first:
                log.warning("change feed: %d changes waiting for NATS, dropped; the other "
                            "workers will resync", len(self._pending) + len(messages))
            self._pending.clear()
            self._resync_first = True
        else:
            for message in messages:
                self._sent += 1
                self._pending.append((message, f"{self.worker_id}-{self._sent}"))
        self._drained.clear()
        self._wake.set()

    async def _publisher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending or self._resync_first:
                await self._connected.wait()
                resync = self._resync_first
                if resync:
                    message = encode(Resync("changes were lost while NATS was away"),
                                     self.worker_id)[0]
                    msg_id = f"{self.worker_id}-resync-{uuid.uuid4().hex}"
                else:
                    message, msg_id = self._pending[0]
                if not await self._send(message, msg_id):
                    await asyncio.sleep(self.reconnect_wait_s)
                    continue
                if resync:
                    self._resync_first = False
                elif self._pending and self._pending[0][1] == msg_id:  # not dropped meanwhile
                    self._pending.popleft()
            self._drained.set()

    async def _send(self, message: Message, msg_id: str) -> bool:
        assert self._js is not None
        try:
            await self._js.publish(f"{self.prefix}.{message.subject}", message.body,
                                   timeout=self.publish_timeout_s, stream=self.stream,
                                   headers={"Nats-Msg-Id": msg_id})
        except (NatsError, TimeoutError, OSError) as error:
            if not self._failing:
                log.warning("change feed: cannot publish to NATS (%s); retrying, the other "
                            "workers will resync", error)
            self._failing = True
            # it may or may not have reached the stream: the others resync to be sure
            self._resync_first = True
            return False
        if self._failing:
            log.warning("change feed: publishing to NATS again")
            self._failing = False
        return True

    # ------------------------------------------------------------------ hearing

    async def _on_message(self, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        if seq <= self._last_seq:
            return  # read already (through an earlier consumer)
        lost = seq != self._last_seq + 1
        self._last_seq = seq
        if lost:
            await self._resync("the feed skipped messages (aged out or lost)")
        try:
            origin, change = decode(msg.data)
        except FeedFormatError as error:
            log.warning("change feed: message %d on %s ignored: %s", seq, msg.subject, error)
            return
        if origin != self.worker_id:
            if isinstance(change, Resync):
                self.resyncs += 1
            await self.deliver(change)

    async def _resync(self, reason: str) -> None:
        self.resyncs += 1
        log.warning("change feed: %s; reloading caches", reason)
        await self.deliver(Resync(reason))

    async def _stream_info(self) -> StreamInfo:
        assert self._js is not None
        try:
            return await self._js.stream_info(self.stream)
        except NotFoundError:
            return await self._js.add_stream(StreamConfig(
                name=self.stream, subjects=[f"{self.prefix}.>"], storage=StorageType.FILE,
                max_age=self.max_age_s, max_bytes=self.max_bytes, discard=DiscardPolicy.OLD,
                duplicate_window=120.0))

    async def _consume(self) -> None:
        """(Re)create this worker's consumer, from the message after the last one read."""
        assert self._js is not None
        info = await self._stream_info()
        last = info.state.last_seq
        if not self._consuming:
            self._last_seq = last  # from "new": what came before is in the database
        elif last < self._last_seq or info.state.first_seq > self._last_seq + 1:
            self._last_seq = last  # a stream made anew, or messages aged out
            await self._resync("the feed lost messages while this worker was away")
        await self._drop_subscription()
        self._sub = await self._js.subscribe(
            f"{self.prefix}.>", stream=self.stream, cb=self._on_message, manual_ack=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                                  opt_start_seq=self._last_seq + 1,
                                  ack_policy=AckPolicy.NONE, inactive_threshold=60.0,
                                  mem_storage=True))
        self._consuming = True

    async def _drop_subscription(self) -> None:
        sub, self._sub = self._sub, None
        if sub is None:
            return
        with contextlib.suppress(NatsError, TimeoutError, OSError):
            await sub.unsubscribe()
        if self._js is not None:
            with contextlib.suppress(NatsError, TimeoutError, OSError):
                await self._js.delete_consumer(self.stream, sub._consumer)

    # ------------------------------------------------------------------ connection

    async def start(self) -> None:
        """Connect, waiting at most ``connect_wait_s``; past it the worker starts anyway and
        the client keeps trying in the background."""
        self._spawn(self._publisher())
        connecting = asyncio.create_task(self._connect())
        self._tasks.add(connecting)
        connecting.add_done_callback(self._tasks.discard)
        await asyncio.wait({connecting}, timeout=self.connect_wait_s)
        if not connecting.done():
            self._late = True
            log.warning("change feed: NATS at %s unreachable; starting anyway, retrying",
                        self.url)

    async def _connect(self) -> None:
        nc = Client()
        try:
            # max_reconnect_attempts=-1: the first connection is retried forever too
            await nc.connect(
                self.url, name=f"cityvisor-{self.worker_id}", connect_timeout=2,
                allow_reconnect=True, max_reconnect_attempts=-1,
                reconnect_time_wait=self.reconnect_wait_s,  # type: ignore[arg-type]
                disconnected_cb=self._disconnected, reconnected_cb=self._reconnected,
                error_cb=self._error)
        except (NatsError, TimeoutError, OSError) as error:
            log.error("change feed: cannot connect to NATS at %s: %s; this worker neither "
                      "tells nor hears the others", self.url, error)
            return
        self._nc, self._js = nc, nc.jetstream()
        try:
            await self._consume()
        except (NatsError, TimeoutError, OSError) as error:
            log.warning("change feed: JetStream unavailable at %s (%s); retrying", self.url,
                        error)
            self._spawn(self._resume())
        self._connected.set()
        if self._late:
            log.warning("change feed: connected to NATS at %s", self.url)
            # this worker's caches were loaded before it heard anything: reload them
            await self._resync("connected to NATS after start")

    async def _disconnected(self) -> None:
        self._connected.clear()
        if not self._closed:
            log.warning("change feed: disconnected from NATS, reconnecting")

    async def _reconnected(self) -> None:
        log.warning("change feed: reconnected to NATS")
        self._connected.set()
        self._spawn(self._resume())

    async def _resume(self) -> None:
        """After a reconnection: a new consumer from where this worker stopped (retried
        until JetStream answers; the server may still be recovering its streams)."""
        while not self._closed:
            try:
                await self._consume()
                return
            except (NatsError, TimeoutError, OSError) as error:
                log.debug("change feed: resuming the consumer failed: %s", error)
                await asyncio.sleep(self.reconnect_wait_s)

    async def _error(self, error: Exception) -> None:
        log.debug("change feed: NATS client error: %s", error)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, drain_s: float = 2.0) -> None:
        """Send what is pending (for at most ``drain_s``), then disconnect."""
        self._closed = True
        if self._connected.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(drain_s):
                    await self._drained.wait()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._drop_subscription()
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
        self._connected.clear()


__all__ = ["DEFAULT_STREAM", "NatsFeed"]
