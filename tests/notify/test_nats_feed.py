"""The change feed on a real NATS JetStream server: two workers (each its own data directory:
the feed is under test here, not a shared store) hear each other's changes, and a NATS restart
neither fails a write nor loses a change.

The server is the one on 127.0.0.1:4222 (each test its own stream), and for the restart test a
private ``nats-server -js`` on a free port. Without them the tests are skipped, unless
``CITYVISOR_REQUIRE_NATS=1`` (CI), where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

nats = pytest.importorskip("nats", reason="the nats extra (nats-py) is not installed")

from cityvisor.broker.changes import (  # noqa: E402
    Change,
    ContextsChanged,
    EntitiesChanged,
    Resync,
    SubscriptionsChanged,
    TokensChanged,
)
from cityvisor.config import Settings  # noqa: E402
from cityvisor.console.events import EventHub  # noqa: E402
from cityvisor.notify.nats import NatsFeed  # noqa: E402
from cityvisor.services import Services  # noqa: E402

pytestmark = pytest.mark.anyio

NATS_HOST, NATS_PORT = "127.0.0.1", 4222
NATS_URL = f"nats://{NATS_HOST}:{NATS_PORT}"
REQUIRED = os.environ.get("CITYVISOR_REQUIRE_NATS") == "1"
#: the feed's promise: caches coherent across workers within this
COHERENT_S = 2.0


def _reachable(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _unavailable(why: str) -> None:
    if REQUIRED:
        pytest.fail(f"{why} (CITYVISOR_REQUIRE_NATS=1)")
    pytest.skip(why)


@pytest.fixture
def stream() -> Iterator[str]:
    """A stream of this test's own on the shared server, deleted afterwards."""
    if not _reachable(NATS_HOST, NATS_PORT):
        _unavailable(f"no NATS server on {NATS_URL}")
    name = f"CVTEST_{uuid.uuid4().hex[:12]}"
    yield name

    async def delete() -> None:
        client = await nats.connect(NATS_URL)
        with contextlib.suppress(Exception):
            await client.jetstream().delete_stream(name)
        await client.close()

    asyncio.run(delete())


class Heard:
    """The changes a worker's feed hands its handlers."""

    def __init__(self, feed: NatsFeed) -> None:
        self.changes: list[Change] = []
        self._arrived = asyncio.Event()
        feed.subscribe(self.record)

    async def record(self, change: Change) -> None:
        self.changes.append(change)
        self._arrived.set()

    async def wait_for(self, wanted: type[Change] | tuple[type[Change], ...],
                       timeout_s: float = COHERENT_S) -> Change:
        async with asyncio.timeout(timeout_s):
            while True:
                for change in self.changes:
                    if isinstance(change, wanted):
                        self.changes.remove(change)
                        return change
                self._arrived.clear()
                await self._arrived.wait()

    async def wait_for_entity(self, entity_id: str, timeout_s: float = COHERENT_S) -> None:
        """Until a batch changing ``entity_id`` is heard (others before it are passed)."""
        async with asyncio.timeout(timeout_s):
            while True:
                change = await self.wait_for(EntitiesChanged, timeout_s)
                assert isinstance(change, EntitiesChanged)
                if any((op.new or op.old or {}).get("id") == entity_id for op in change.ops):
                    return


@contextlib.asynccontextmanager
async def workers(tmp_path: Path, url: str, stream: str) -> AsyncIterator[
        tuple[Services, Services]]:
    pair = [Services.build(Settings(data_dir=tmp_path / name, auth=True, nats_url=url,
                                    nats_stream=stream, allow_context_fetch=False))
            for name in ("a", "b")]
    for services in pair:
        await services.start()
    try:
        yield pair[0], pair[1]
    finally:
        for services in pair:
            await services.close()


def feed_of(services: Services) -> NatsFeed:
    assert isinstance(services.feed, NatsFeed)
    return services.feed


async def test_a_write_on_one_worker_reaches_the_others_console(tmp_path: Path,
                                                                stream: str) -> None:
    async with workers(tmp_path, NATS_URL, stream) as (a, b):
        heard_a, heard_b = Heard(feed_of(a)), Heard(feed_of(b))
        hub = EventHub(b)
        listener = hub.subscribe("nimes")
        started = time.monotonic()
        await a.broker.create_entity("nimes", None, {"id": "urn:ngsi-ld:Thing:1",
                                                     "type": "Thing"})
        events = await asyncio.wait_for(listener.queue.get(), COHERENT_S)
        assert events == [{"id": "urn:ngsi-ld:Thing:1", "type": "Thing"}]
        assert time.monotonic() - started < COHERENT_S
        change = await heard_b.wait_for(EntitiesChanged)
        assert isinstance(change, EntitiesChanged) and change.tenant == "nimes"

        sub_id = await a.subscriptions.manager.create("nimes", None, {
            "type": "Subscription", "entities": [{"type": "Thing"}],
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}}})
        assert await heard_b.wait_for(SubscriptionsChanged) == SubscriptionsChanged("nimes")
        await a.subscriptions.manager.delete("nimes", sub_id)
        assert await heard_b.wait_for(SubscriptionsChanged) == SubscriptionsChanged("nimes")
        await a.contexts.host({"@context": {"level": "https://example.org/level"}},
                              "http://127.0.0.1:1026")
        assert await heard_b.wait_for(ContextsChanged) == ContextsChanged()
        assert a.tokens is not None
        _, info = await a.tokens.create("reader")
        await a.tokens.revoke(info.token_id)
        assert await heard_b.wait_for(TokensChanged) == TokensChanged()

        # the default tenant travels too, and B's writes reach A
        await b.broker.create_entity(None, None, {"id": "urn:ngsi-ld:Thing:2",
                                                  "type": "Thing"})
        change = await heard_a.wait_for(EntitiesChanged)
        assert isinstance(change, EntitiesChanged) and change.tenant is None
        # a worker never hears its own changes
        assert not any(isinstance(c, EntitiesChanged) and c.tenant == "nimes"
                       for c in heard_a.changes)
        hub.unsubscribe(listener)


def _free_port() -> int:
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port != 1026 and not 8085 <= port <= 8088:  # reserved on this machine
            return int(port)


class PrivateNats:
    """A ``nats-server -js`` of this test's own, stopped and started again at will."""

    def __init__(self, store_dir: Path) -> None:
        binary = shutil.which("nats-server") or (
            "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None)
        if binary is None:
            _unavailable("no nats-server binary to start a private server")
        self.binary = str(binary)
        self.store_dir = store_dir
        self.port = _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-js", "-a", "127.0.0.1", "-p", str(self.port),
             "-sd", str(self.store_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _reachable("127.0.0.1", self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the private nats-server did not start")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def private_nats(tmp_path: Path) -> Iterator[PrivateNats]:
    server = PrivateNats(tmp_path / "jetstream")
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_a_nats_restart_fails_no_write_and_loses_no_change(
        tmp_path: Path, private_nats: PrivateNats) -> None:
    async with workers(tmp_path, private_nats.url, "CITYVISOR") as (a, b):
        heard_b = Heard(feed_of(b))
        await a.broker.create_entity("nimes", None, {"id": "urn:ngsi-ld:Thing:0",
                                                     "type": "Thing"})
        await heard_b.wait_for(EntitiesChanged)

        private_nats.kill()
        started = time.monotonic()
        await a.broker.create_entity("nimes", None, {"id": "urn:ngsi-ld:Thing:1",
                                                     "type": "Thing"})
        assert time.monotonic() - started < 0.5  # the write never waits for NATS
        assert await a.broker.retrieve_entity("nimes", None, "urn:ngsi-ld:Thing:1")

        private_nats.start()  # the same storage: the stream and its messages are back
        # sent once NATS is back, as it was (and a resync first if the sending had failed)
        await heard_b.wait_for_entity("urn:ngsi-ld:Thing:1", timeout_s=15)
        heard_b.changes.clear()

        # more changes than the buffer holds while NATS is away: the others resync
        feed_of(a).buffer_messages = 3
        private_nats.kill()
        for i in range(2, 8):
            await a.broker.create_entity("nimes", None, {"id": f"urn:ngsi-ld:Thing:{i}",
                                                         "type": "Thing"})
        assert feed_of(a).dropped > 0
        private_nats.start()
        await heard_b.wait_for(Resync, timeout_s=15)
        # and the feed works on afterwards
        await a.broker.create_entity("nimes", None, {"id": "urn:ngsi-ld:Thing:9",
                                                     "type": "Thing"})
        await heard_b.wait_for_entity("urn:ngsi-ld:Thing:9", timeout_s=5)


async def test_a_worker_starts_while_nats_is_down_and_catches_up(
        tmp_path: Path, private_nats: PrivateNats) -> None:
    private_nats.kill()
    async with workers(tmp_path, private_nats.url, "CITYVISOR") as (a, b):
        await a.broker.create_entity("nimes", None, {"id": "urn:ngsi-ld:Thing:1",
                                                     "type": "Thing"})  # NATS down: fine
        heard_b = Heard(feed_of(b))
        private_nats.start()
        # b started without hearing anything: once connected, it reloads its caches
        await heard_b.wait_for(Resync, timeout_s=15)
