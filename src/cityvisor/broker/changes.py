"""The changes one worker tells the others about (the change feed between workers).

Several ``cityvisor serve`` processes may share one database. Each keeps caches of what that
database holds (subscriptions, compiled @context term maps, token verifications, the console's
live layers); a change another worker committed must reach them. The brokers hand a
``Change`` to their ``on_commit`` sink once the change is durable; the feed
(``cityvisor.notify.feed``) carries it to the other workers, which apply it to their caches.

The vocabulary lives here, beside the brokers that produce it, so that the layers above (the
feed, the console) share it without importing one another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cityvisor.store.base import WriteOp


@dataclass(frozen=True)
class EntitiesChanged:
    """A committed batch of entity changes of one tenant (``None``: the default tenant)."""

    tenant: str | None
    ops: tuple[WriteOp, ...]


@dataclass(frozen=True)
class SubscriptionsChanged:
    """A subscription of ``tenant`` was created, updated or deleted (clause 5.8)."""

    tenant: str | None


@dataclass(frozen=True)
class ContextsChanged:
    """An @context was hosted, cached, reloaded or deleted (clause 5.13)."""


@dataclass(frozen=True)
class TokensChanged:
    """A bearer token was revoked."""


@dataclass(frozen=True)
class Resync:
    """Changes may have been lost (the feed was down, a buffer overflowed): drop every cache
    and reload from the database."""

    reason: str = ""


Change = EntitiesChanged | SubscriptionsChanged | ContextsChanged | TokensChanged | Resync
#: where a broker hands its committed changes; must return at once (never blocks a write)
ChangeSink = Callable[[Change], None]

__all__ = ["Change", "ChangeSink", "ContextsChanged", "EntitiesChanged", "Resync",
           "SubscriptionsChanged", "TokensChanged"]
