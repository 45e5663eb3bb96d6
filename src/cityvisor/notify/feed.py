"""The change feed between workers: what one ``cityvisor serve`` commits, the others hear.

A ``ChangeFeed`` carries the ``Change`` values of ``cityvisor.broker.changes``: ``publish``
hands it one that is durable in the database (it returns at once: a write never waits for the
feed, and never fails because of it); ``subscribe`` registers a handler for the changes of
OTHER workers. ``LocalFeed``, the default, is one worker alone: nobody to tell, nothing to
hear. ``cityvisor.notify.nats.NatsFeed`` carries changes on NATS JetStream.

On the wire a change is one JSON message (several for a large batch of entities), under a
subject that names its kind and its tenant (docs/workers.md lists them)::

    {"v": 1, "origin": "<worker id>", "kind": "entities", "tenant": "nimes",
     "ops": [{"old": {...stored entity...} | null, "new": {...} | null}, ...]}
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from cityvisor.broker.changes import (
    Change,
    ContextsChanged,
    EntitiesChanged,
    Resync,
    SubscriptionsChanged,
    TokensChanged,
)
from cityvisor.store.base import WriteOp

log = logging.getLogger("cityvisor.notify.feed")

#: ``await handler(change)``: a change another worker committed
ChangeHandler = Callable[[Change], Awaitable[None]]

VERSION = 1
#: the subject token of the default tenant: no tenant name can be it (names are letters,
#: digits, '_' and '-', clause 4.14 and ``ngsild.tenants``)
DEFAULT_TENANT_TOKEN = "~"
KINDS: dict[type[Change], str] = {
    EntitiesChanged: "entities", SubscriptionsChanged: "subscriptions",
    ContextsChanged: "contexts", TokensChanged: "tokens", Resync: "resync",
}


class FeedFormatError(ValueError):
    """A message on the feed that is no change this version can read."""


@dataclass(frozen=True)
class Message:
    """One message of the feed: its subject (after the prefix) and its body."""

    subject: str
    body: bytes


def tenant_token(tenant: str | None) -> str:
    """The subject token of a tenant (tenant names are already subject-safe)."""
    return DEFAULT_TENANT_TOKEN if tenant is None else tenant


def encode(change: Change, origin: str, max_bytes: int = 512 * 1024) -> list[Message]:
    """The messages of ``change`` from worker ``origin``: one, or for a batch of entities as
    many as keep each body under ``max_bytes`` (NATS bounds a message: 1 MiB by default).
    A batch holding one entity change that alone exceeds the bound becomes a ``Resync``: the
    other workers reload rather than miss it."""
    kind = KINDS[type(change)]
    head: dict[str, Any] = {"v": VERSION, "origin": origin, "kind": kind}
    if isinstance(change, Resync):
        head["reason"] = change.reason
    if not isinstance(change, (EntitiesChanged, SubscriptionsChanged)):
        return [Message(kind, orjson.dumps(head))]
    head["tenant"] = change.tenant
    subject = f"{kind}.{tenant_token(change.tenant)}"
    if isinstance(change, SubscriptionsChanged):
        return [Message(subject, orjson.dumps(head))]
    prefix = orjson.dumps(head)[:-1] + b',"ops":['  # the head object, still open
    messages: list[Message] = []
    chunk: list[bytes] = []
    size = len(prefix) + 2
    for op in change.ops:
        item = orjson.dumps({"old": op.old, "new": op.new})
        if len(prefix) + len(item) + 2 > max_bytes:
            log.warning("change feed: one change of %s is %d bytes, over the message bound "
                        "%d: the other workers resync", _entity_id(op), len(item), max_bytes)
            return encode(Resync("an entity change too large for the feed"), origin)
        if chunk and size + len(item) + 1 > max_bytes:
            messages.append(Message(subject, prefix + b",".join(chunk) + b"]}"))
            chunk, size = [], len(prefix) + 2
        chunk.append(item)
        size += len(item) + 1
    if chunk:
        messages.append(Message(subject, prefix + b",".join(chunk) + b"]}"))
    return messages


def decode(body: bytes) -> tuple[str, Change]:
    """The origin worker and the change of one message (``FeedFormatError`` otherwise)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise FeedFormatError(f"not JSON: {error}") from None
    if not isinstance(doc, dict) or doc.get("v") != VERSION:
        raise FeedFormatError(f"not a version {VERSION} change")
    origin, kind, tenant = doc.get("origin"), doc.get("kind"), doc.get("tenant")
    if not isinstance(origin, str) or not (tenant is None or isinstance(tenant, str)):
        raise FeedFormatError("origin or tenant is missing or not a string")
    change: Change
    if kind == "entities":
        ops = doc.get("ops")
        if not isinstance(ops, list) or not all(isinstance(op, dict) for op in ops):
            raise FeedFormatError("ops must be a list of objects")
        change = EntitiesChanged(tenant, tuple(WriteOp(op.get("old"), op.get("new"))
                                               for op in ops))
    elif kind == "subscriptions":
        change = SubscriptionsChanged(tenant)
    elif kind == "contexts":
        change = ContextsChanged()
    elif kind == "tokens":
        change = TokensChanged()
    elif kind == "resync":
        change = Resync(str(doc.get("reason", "")))
    else:
        raise FeedFormatError(f"unknown kind {kind!r}")
    return origin, change


def _entity_id(op: WriteOp) -> str:
    entity = op.new or op.old or {}
    return str(entity.get("id", "an entity"))


class ChangeFeed:
    """The feed interface. ``publish`` must return at once and never raise for a feed that
    is down (the change is durable in the database whatever happens to the feed)."""

    #: whether other workers may be listening (False: publishing is skipped altogether)
    remote = False

    def __init__(self) -> None:
        self.handlers: list[ChangeHandler] = []

    def publish(self, change: Change) -> None:
        """Tell the other workers of a committed change."""

    def subscribe(self, handler: ChangeHandler) -> None:
        """Call ``handler`` with each change another worker publishes."""
        self.handlers.append(handler)

    async def deliver(self, change: Change) -> None:
        """Hand a change heard from another worker to the handlers; one that fails is
        logged, the others still run (a cache left stale is bounded by the next change)."""
        for handler in list(self.handlers):
            try:
                await handler(change)
            except Exception:
                log.exception("change feed: handling %s failed", type(change).__name__)

    async def start(self) -> None:
        """Connect (a feed that cannot connect yet keeps trying in the background)."""

    async def close(self) -> None:
        """Stop publishing and hearing."""


class LocalFeed(ChangeFeed):
    """One worker alone: no other worker to tell, none to hear (the default)."""


__all__ = ["DEFAULT_TENANT_TOKEN", "ChangeFeed", "ChangeHandler", "FeedFormatError",
           "LocalFeed", "Message", "decode", "encode", "tenant_token"]
