"""Caches kept coherent across workers: the brokers' committed changes go out on the change
feed, and the changes of the other workers come in and reach this worker's caches.

Going out: the entity broker, the subscription manager, the @context registry and the token
store hand each committed change to ``feed.publish``, after the commit (only when the feed is
remote: one worker alone pays nothing). Coming in:

- a batch of entity changes goes to ``EntityBroker.observe``: its observers (the console's
  live layers and streams) hear it as they hear this worker's own committed batches, and the
  broker notes transient entities;
- a subscription change reloads that tenant's subscriptions from the store;
- an @context change drops the memoised term maps; a token change the cached verifications;
- a ``Resync`` does all of that for every tenant, and every console reloads its layers.
"""

from __future__ import annotations

from cityvisor.broker.changes import (
    Change,
    ContextsChanged,
    EntitiesChanged,
    Resync,
    SubscriptionsChanged,
    TokensChanged,
)
from cityvisor.broker.contexts import ContextRegistry
from cityvisor.broker.entities import EntityBroker
from cityvisor.broker.subscriptions import SubscriptionManager
from cityvisor.notify.feed import ChangeFeed
from cityvisor.security.tokens import TokenStore


class Coherence:
    """Wires one worker's brokers and caches to a change feed."""

    def __init__(self, feed: ChangeFeed, broker: EntityBroker,
                 subscriptions: SubscriptionManager, contexts: ContextRegistry,
                 tokens: TokenStore | None) -> None:
        self.broker = broker
        self.subscriptions = subscriptions
        self.contexts = contexts
        self.tokens = tokens
        if feed.remote:
            broker.on_commit = subscriptions.on_commit = contexts.on_commit = feed.publish
            if tokens is not None:
                tokens.on_revoke = lambda: feed.publish(TokensChanged())
        feed.subscribe(self.apply)

    async def apply(self, change: Change) -> None:
        """Bring this worker's caches in step with a change another worker committed."""
        if isinstance(change, EntitiesChanged):
            await self.broker.observe(change)
        elif isinstance(change, SubscriptionsChanged):
            await self.subscriptions.reload(change.tenant)
        elif isinstance(change, ContextsChanged):
            self.contexts.forget()
        elif isinstance(change, TokensChanged):
            self._forget_tokens()
        elif isinstance(change, Resync):
            self.contexts.forget()
            self._forget_tokens()
            await self.subscriptions.reload_all()
            await self.broker.observe(change)

    def _forget_tokens(self) -> None:
        if self.tokens is not None:
            self.tokens.forget()


__all__ = ["Coherence"]
