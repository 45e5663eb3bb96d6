"""The rows the broker and the delivery workers hand to a store, and the rows it hands back.

They belong to no backend: a backend persists each record type in its own way. Side records
are staged with the entity changes they derive from (``Store.stage``), so that a history row
or a notification exists if and only if the change that caused it was committed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NamedTuple

# ---------------------------------------------------------------------------- temporal history


class InstanceRecord(NamedTuple):
    """One attribute instance to append to the history. ``observed_at`` is the instance's
    ``observedAt``, or its ``modifiedAt`` when it has none; times are normalised
    ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (text order is time order); ``num`` is the value when it is
    a number (for aggregations); ``value`` is the stored instance as JSON text, without its
    ``createdAt``/``modifiedAt`` (kept in their own columns). A named tuple: one is created for
    every change on the hot path."""

    entity: str
    entity_type: str
    attr: str
    dataset_id: str
    observed_at: str
    created_at: str
    modified_at: str
    deleted_at: str | None
    num: float | None
    value: str


@dataclass(frozen=True, slots=True)
class EntityRecord:
    """Create or update (``deleted_at`` None) or mark deleted a temporal entity."""

    entity: str
    types: tuple[str, ...]
    created_at: str
    modified_at: str
    deleted_at: str | None = None


@dataclass(frozen=True, slots=True)
class EntityTouched:
    """The temporal entity changed at ``modified_at`` (instances were added to it)."""

    entity: str
    modified_at: str


@dataclass(frozen=True, slots=True)
class HistoryDeleted:
    """Delete the whole temporal representation of an entity."""

    entity: str


@dataclass(frozen=True, slots=True)
class AttributeHistoryDeleted:
    """Delete the history of one attribute: of one ``dataset_id`` ('' = the default
    instance), or of all of them (``dataset_id`` None)."""

    entity: str
    attr: str
    dataset_id: str | None


@dataclass(frozen=True, slots=True)
class InstanceModified:
    """New members of one recorded instance (clause 5.6.14)."""

    instance_id: int
    observed_at: str
    modified_at: str
    num: float | None
    value: str


@dataclass(frozen=True, slots=True)
class InstanceDeleted:
    instance_id: int


class HistoryRow(NamedTuple):
    """One recorded instance as read back (see ``InstanceRecord`` for the columns)."""

    instance_id: int
    attr: str
    dataset_id: str
    observed_at: str
    created_at: str
    modified_at: str
    deleted_at: str | None
    value: str


@dataclass(frozen=True)
class TemporalEntity:
    """An entity that has a history (also after it was deleted from the current state)."""

    id: str
    types: tuple[str, ...]
    created_at: str
    modified_at: str
    deleted_at: str | None = None


@dataclass(frozen=True)
class AttributeAggregate:
    """The aggregation of one attribute's history (see ``Store.aggregate_histories``).

    ``origin``: the start of the first period (normalised time); ``last_time``: the time of
    the last instance aggregated (only when asked); ``rows``: (dataset_id, period number,
    one value per method) in dataset and period order; ``kind``: the attribute's type."""

    kind: str
    origin: str
    rows: list[tuple[Any, ...]]  # (dataset_id: str, period: int, value per method...)
    last_time: str | None = None


# ---------------------------------------------------------------------------- subscriptions


@dataclass(frozen=True)
class SubscriptionPut:
    """Create a subscription (``old`` None) or replace its document (``old``: the document it
    replaces, JSON text as the store returned it); the status columns are kept.

    A store shared by several processes refuses, with ``StaleWrite`` (``store.base``), the
    creation of an id that exists and the replacement of a document that is no longer ``old``
    (another process changed or deleted the subscription since it was read). A backend used
    by one process only applies it as given (the manager serialises its writes)."""

    id: str
    doc: str
    context: str
    old: str | None = None


@dataclass(frozen=True)
class SubscriptionDelete:
    """Delete a subscription and its pending notifications."""

    id: str


def later(first: str | None, second: str | None) -> str | None:
    """The later of two times (ISO 8601 text of one format, ``broker.subscriptions.iso``:
    their text order is their time order); None is no time."""
    if first is None or second is None:
        return first if second is None else second
    return max(first, second)


def delivery_of(last_success: str | None, last_failure: str | None) -> str | None:
    """The notification status (clause 5.2.14): that of the later outcome ("ok" on a tie)."""
    if last_failure is None:
        return None if last_success is None else "ok"
    return "ok" if last_success is not None and last_success >= last_failure else "failed"


@dataclass(frozen=True)
class SubscriptionStatus:
    """Delivery figures to add to a subscription's status (clause 5.2.14): ``sent`` and
    ``failed`` notifications to add to timesSent and timesFailed, and the times of the last
    notification, success and failure, each kept where it is later than the stored one (None:
    no such event). The stored status ("ok" / "failed") follows the later of lastSuccess and
    lastFailure. Records are increments: those of several processes add up, in any order."""

    id: str
    sent: int = 0
    failed: int = 0
    last_notification: str | None = None
    last_success: str | None = None
    last_failure: str | None = None

    def plus(self, other: SubscriptionStatus) -> SubscriptionStatus:
        """This record and ``other`` (of the same subscription) as one."""
        return SubscriptionStatus(
            self.id, self.sent + other.sent, self.failed + other.failed,
            later(self.last_notification, other.last_notification),
            later(self.last_success, other.last_success),
            later(self.last_failure, other.last_failure))


@dataclass(frozen=True)
class StoredSubscription:
    """A subscription as stored: its document and creator's @context (JSON text) and status."""

    id: str
    doc: str
    context: str
    times_sent: int = 0
    last_notification: str | None = None
    last_success: str | None = None
    last_failure: str | None = None
    delivery: str | None = None
    times_failed: int = 0

    def counted(self, change: SubscriptionStatus) -> StoredSubscription:
        """The status with ``change`` added (what a backend stores for it)."""
        success = later(self.last_success, change.last_success)
        failure = later(self.last_failure, change.last_failure)
        outcome = change.last_success is not None or change.last_failure is not None
        return replace(self, times_sent=self.times_sent + change.sent,
                       times_failed=self.times_failed + change.failed,
                       last_notification=later(self.last_notification,
                                               change.last_notification),
                       last_success=success, last_failure=failure,
                       delivery=delivery_of(success, failure) if outcome else self.delivery)


@dataclass(frozen=True)
class OutboxRecord:
    """A notification to deliver: the subscription, the endpoint URI (the unit of isolation
    of the delivery workers), the delivery target (JSON text) and the ready payload."""

    subscription: str
    endpoint: str
    target: str
    payload: bytes
    created_at: float


@dataclass(frozen=True)
class OutboxDone:
    """A delivered notification: its row goes."""

    id: int


@dataclass(frozen=True)
class OutboxRetry:
    """A notification to try again later (``attempts`` counts the failed attempts)."""

    id: int
    attempts: int
    next_attempt_at: float


@dataclass(frozen=True)
class OutboxRow:
    """A committed notification as read back; ids grow and are never reused."""

    id: int
    subscription: str
    endpoint: str
    target: str
    payload: bytes
    created_at: float
    attempts: int


# ---------------------------------------------------------------------------- entity maps


@dataclass(frozen=True)
class StoredEntityMap:
    """An EntityMap of one tenant (clause 5.2.39): its id, its ``expiresAt`` (normalised
    ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, so text order is time order) and the ids of the Entities
    it fixes, in the order of the request that made it."""

    id: str
    expires_at: str
    entity_ids: tuple[str, ...]
    created_at: str


@dataclass(frozen=True)
class EntityMapPut:
    """Create or replace an entity map."""

    entity_map: StoredEntityMap


@dataclass(frozen=True)
class EntityMapDelete:
    """Delete an entity map (nothing if there is none)."""

    id: str


@dataclass(frozen=True)
class EntityMapsExpired:
    """Delete every entity map whose ``expires_at`` is at or before ``until``."""

    until: str


# ---------------------------------------------------------------------------- system


@dataclass(frozen=True)
class StoredContext:
    """A hosted or cached JSON-LD context document (``document`` is JSON bytes)."""

    local_id: str
    url: str
    kind: str  # Hosted | Cached
    document: bytes
    created_at: str


@dataclass(frozen=True)
class StoredToken:
    """A bearer token as stored: never its secret, only the secret's SHA-256."""

    token_id: str
    secret_sha256: str
    role: str
    tenant: str
    name: str
    created_at: str
    revoked_at: str | None = None


#: every record type ``Store.stage`` accepts
SIDE_RECORDS = (InstanceRecord, EntityRecord, EntityTouched, HistoryDeleted,
                AttributeHistoryDeleted, InstanceModified, InstanceDeleted, SubscriptionPut,
                SubscriptionDelete, SubscriptionStatus, OutboxRecord, OutboxDone, OutboxRetry,
                EntityMapPut, EntityMapDelete, EntityMapsExpired)
