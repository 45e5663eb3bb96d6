"""The change feed without NATS: the message format, the local feed, and the wiring that keeps
one worker's caches in step with the changes another commits (two workers joined in memory)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from cityvisor.broker.changes import (
    Change,
    ContextsChanged,
    EntitiesChanged,
    Resync,
    SubscriptionsChanged,
    TokensChanged,
)
from cityvisor.config import Settings
from cityvisor.console.events import EventHub
from cityvisor.notify.feed import ChangeFeed, FeedFormatError, LocalFeed, decode, encode
from cityvisor.services import Services
from cityvisor.store.base import WriteOp
from cityvisor.store.records import SubscriptionPut

pytestmark = pytest.mark.anyio

THING = {"id": "urn:ngsi-ld:Thing:1", "type": ["https://example.org/Thing"], "attrs": {
    "https://example.org/level": [{"type": "Property", "value": 2.5}]},
    "createdAt": "2026-01-01T00:00:00.000000Z", "modifiedAt": "2026-01-01T00:00:00.000000Z"}


def test_every_kind_round_trips_with_its_origin() -> None:
    changes: list[Change] = [
        EntitiesChanged("nimes", (WriteOp(None, THING), WriteOp(THING, None))),
        EntitiesChanged(None, (WriteOp(THING, THING),)),
        SubscriptionsChanged("nimes"), SubscriptionsChanged(None),
        ContextsChanged(), TokensChanged(), Resync("lost"),
    ]
    for change in changes:
        (message,) = encode(change, "worker-a")
        assert decode(message.body) == ("worker-a", change)


def test_subjects_name_the_kind_and_the_tenant() -> None:
    subjects = [encode(change, "w")[0].subject for change in (
        EntitiesChanged("nimes", (WriteOp(None, THING),)), EntitiesChanged(None, (WriteOp(THING, None),)),
        SubscriptionsChanged("ales"), SubscriptionsChanged(None), ContextsChanged(),
        TokensChanged(), Resync())]
    # "~" is no tenant name (letters, digits, '_', '-'): the default tenant cannot collide
    assert subjects == ["entities.nimes", "entities.~", "subscriptions.ales",
                        "subscriptions.~", "contexts", "tokens", "resync"]


def test_a_large_batch_is_split_under_the_message_bound() -> None:
    ops = tuple(WriteOp(None, {**THING, "id": f"urn:ngsi-ld:Thing:{i}"}) for i in range(200))
    messages = encode(EntitiesChanged("nimes", ops), "w", max_bytes=4096)
    assert len(messages) > 1
    assert all(len(m.body) <= 4096 for m in messages)
    decoded = [decode(m.body)[1] for m in messages]
    assert all(isinstance(c, EntitiesChanged) and c.tenant == "nimes" for c in decoded)
    assert [op for c in decoded for op in c.ops] == list(ops)  # type: ignore[union-attr]


def test_one_change_over_the_bound_becomes_a_resync() -> None:
    huge = {**THING, "attrs": {"https://example.org/blob": [
        {"type": "Property", "value": "x" * 10_000}]}}
    messages = encode(EntitiesChanged("nimes", (WriteOp(None, THING), WriteOp(None, huge))),
                      "w", max_bytes=4096)
    kinds = [type(decode(m.body)[1]) for m in messages]
    assert kinds == [Resync]


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"v": 99}',
                                  b'{"v": 1, "origin": "w", "kind": "weather"}',
                                  b'{"v": 1, "kind": "tokens"}',
                                  b'{"v": 1, "origin": "w", "kind": "entities", "ops": 3}'])
def test_a_malformed_message_is_a_format_error(body: bytes) -> None:
    with pytest.raises(FeedFormatError):
        decode(body)


async def test_one_worker_alone_pays_nothing(tmp_path: Path) -> None:
    services = Services.build(Settings(data_dir=tmp_path, auth=True, allow_context_fetch=False))
    assert isinstance(services.feed, LocalFeed) and not services.feed.remote
    # no post-commit hook at all: a write is exactly what it was without the feed
    assert services.broker.on_commit is None
    assert services.subscriptions.manager.on_commit is None
    assert services.contexts.on_commit is None
    assert services.tokens is not None and services.tokens.on_revoke is None
    await services.start()
    try:
        await services.broker.create_entity(None, None, {"id": "urn:ngsi-ld:Thing:1",
                                                         "type": "Thing"})
    finally:
        await services.close()


class MemoryFeed(ChangeFeed):
    """Feeds joined in one process: what one publishes, its peers hear (through the wire
    format, as on NATS)."""

    remote = True

    def __init__(self, name: str, peers: list[MemoryFeed]) -> None:
        super().__init__()
        self.name = name
        self.peers = peers
        self.published: list[Change] = []
        peers.append(self)

    def publish(self, change: Change) -> None:
        self.published.append(change)
        for message in encode(change, self.name):
            for peer in self.peers:
                if peer is not self:
                    asyncio.get_running_loop().create_task(peer.deliver(decode(message.body)[1]))


def worker(tmp_path: Path, name: str, peers: list[MemoryFeed]) -> Services:
    """One worker of a pair: its own data directory (the feed is under test, not the store)."""
    from cityvisor.notify.coherence import Coherence

    services = Services.build(Settings(data_dir=tmp_path / name, auth=True,
                                       allow_context_fetch=False))
    services.feed = MemoryFeed(name, peers)
    Coherence(services.feed, services.broker, services.subscriptions.manager,
              services.contexts, services.tokens)
    return services


async def test_committed_changes_are_published_after_their_commit(tmp_path: Path) -> None:
    peers: list[MemoryFeed] = []
    a = worker(tmp_path, "a", peers)
    await a.start()
    try:
        feed = a.feed
        assert isinstance(feed, MemoryFeed)
        await a.broker.create_entity("nimes", None, {"id": "urn:ngsi-ld:Thing:1",
                                                     "type": "Thing"})
        (change,) = feed.published
        assert isinstance(change, EntitiesChanged) and change.tenant == "nimes"
        assert change.ops[0].old is None and change.ops[0].new is not None
        assert change.ops[0].new["id"] == "urn:ngsi-ld:Thing:1"
        # a failed write (the entity exists) publishes nothing
        with pytest.raises(Exception, match="already exists"):
            await a.broker.create_entity("nimes", None, {"id": "urn:ngsi-ld:Thing:1",
                                                         "type": "Thing"})
        assert len(feed.published) == 1
        sub_id = await a.subscriptions.manager.create("nimes", None, {
            "type": "Subscription", "entities": [{"type": "Thing"}],
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}}})
        await a.subscriptions.manager.delete("nimes", sub_id)
        assert feed.published[1:] == [SubscriptionsChanged("nimes")] * 2
        await a.contexts.host({"@context": {"level": "https://example.org/level"}},
                              "http://127.0.0.1:1026")
        assert feed.published[-1] == ContextsChanged()
        assert a.tokens is not None
        _, info = await a.tokens.create("reader")
        await a.tokens.revoke(info.token_id)
        assert feed.published[-1] == TokensChanged()
    finally:
        await a.close()


async def test_the_other_worker_shows_changes_and_reloads_its_caches(tmp_path: Path) -> None:
    peers: list[MemoryFeed] = []
    a, b = worker(tmp_path, "a", peers), worker(tmp_path, "b", peers)
    await a.start()
    await b.start()
    try:
        hub = EventHub(b)
        listener = hub.subscribe("nimes")
        await a.broker.create_entity("nimes", None, {"id": "urn:ngsi-ld:Thing:1",
                                                     "type": "Thing"})
        events = await asyncio.wait_for(listener.queue.get(), 2)
        assert events == [{"id": "urn:ngsi-ld:Thing:1", "type": "Thing"}]

        # a subscription another worker stored: B reloads the tenant from the store
        manager = b.subscriptions.manager
        await b.broker.create_entity("nimes", None, {"id": "urn:ngsi-ld:Thing:2",
                                                     "type": "Thing"})
        doc = {"id": "urn:ngsi-ld:Subscription:x", "type": "Subscription",
               "entities": [{"type": "Thing"}],
               "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}}}
        await (await b.store.stage("nimes", [], [SubscriptionPut(
            doc["id"], orjson.dumps(doc).decode(), "null")]))
        assert (await manager.query("nimes", 10, 0))[1] == 0  # cached: not seen yet
        await b.feed.deliver(SubscriptionsChanged("nimes"))
        assert (await manager.query("nimes", 10, 0))[1] == 1

        # a resync: every console reloads its layers
        await b.feed.deliver(Resync("test"))
        hub_stream = hub.stream(listener, heartbeat_s=5)
        assert await anext(hub_stream) == b"retry: 3000\nevent: hello\ndata: {}\n\n"
        assert await asyncio.wait_for(anext(hub_stream), 2) == b"event: resync\ndata: {}\n\n"
        await hub_stream.aclose()
    finally:
        await a.close()
        await b.close()


async def test_a_revocation_elsewhere_is_refused_at_once(tmp_path: Path) -> None:
    peers: list[MemoryFeed] = []
    a = worker(tmp_path, "a", peers)
    assert a.tokens is not None
    token, info = await a.tokens.create("reader")
    assert await a.tokens.verify(token) is not None  # cached for cache_s
    # another worker revoked it in the shared system store: here, the store row changes...
    await a.system.revoke_token(info.token_id, "2026-01-01T00:00:00Z")
    assert await a.tokens.verify(token) is not None  # ...but the cache still says yes
    await a.feed.deliver(TokensChanged())
    assert await a.tokens.verify(token) is None
    await a.close()
