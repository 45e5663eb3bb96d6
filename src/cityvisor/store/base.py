"""The store ports: what the broker needs from a persistence backend.

``Store`` persists, per tenant, the entities in the stored form (``docs/internal-model.md``),
their temporal history, the subscriptions, the notification outbox and the entity maps;
``SystemStore`` the few rows shared by all tenants (hosted/cached @contexts, bearer tokens). A
store owns no NGSI-LD semantics: the broker decides *what* to write (and reads the old entity
first); the store writes a list of ``WriteOp`` and side records (``store.records``) atomically and
answers queries, pushing into its engine every filter it can. Backends: ``sqlite`` (embedded
default), ``postgres`` (PostgreSQL/PostGIS, ``docs/postgresql.md``) and ``memory`` (tests,
throw-away brokers); every backend passes the contract suite
``tests/store/test_contract.py``.

Several processes may share one backend (PostgreSQL: ``cityvisor serve --workers N``, or
servers on several hosts). The broker's write locks then serialise the writers of one process
only (per entity on such a backend: ``refuses_stale_writes``), so such a backend also guards the
writes of the others (``docs/postgresql.md``, "Several workers"):

- **Optimistic concurrency.** ``stage`` refuses, with ``StaleWrite``, a batch holding an op whose
  ``old`` is not what is stored now (an insert of an entity that exists; an update or delete of
  an entity whose stored document differs from ``old``, or is gone), and then writes nothing of
  the batch (side records included; other callers sharing the commit are not affected). The
  broker re-reads and retries the whole operation. A backend used by one process only (SQLite,
  memory) never raises it: the lock already serialises every read-modify-write. Subscription
  documents are guarded the same way (``records.SubscriptionPut.old``).
- **Outbox claims.** Each process delivers notifications with a reader of its own. A shared
  backend's ``OutboxReader`` returns only rows it claimed, for a lease: two readers never get
  the same row while its lease runs; a row another reader claimed (a worker that died) comes
  back from ``due`` once its lease expires; ``OutboxRetry`` ends the claim and ``OutboxDone``
  deletes the row. A reader gets its own claimed rows again (above ``after_id`` from
  ``fresh``); ``fresh`` also returns free rows at or below ``after_id`` (transactions of
  several processes commit out of id order). The delivery service renews
  (``OutboxReader.renew``) the claims of the rows it is still working on, so that a slow
  delivery keeps its row. Delivery stays at-least-once: a row delivered but not recorded done
  before its lease ends (its process died or stalled) may go twice.
- **Leaders.** ``Store.leader(job)`` says whether this process runs a background job now (the
  retention purge, periodic notifications): one process at a time among those that share
  the backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cityvisor.ngsild.errors import AlreadyExists, CityvisorProblem
from cityvisor.ngsild.geo import GeoQuery
from cityvisor.ngsild.ordering import Ordering
from cityvisor.ngsild.query import QNode
from cityvisor.ngsild.scopequery import ScopeNode
from cityvisor.ngsild.typequery import TypeNode
from cityvisor.store.records import (
    AttributeAggregate,
    HistoryRow,
    OutboxRow,
    StoredContext,
    StoredEntityMap,
    StoredSubscription,
    StoredToken,
    TemporalEntity,
)

Entity = dict[str, Any]


class StaleWrite(CityvisorProblem, AlreadyExists):
    """A staged op's ``old`` is not what the store holds now: another process changed the
    entity since it was read (for an insert: the entity exists, hence an ``AlreadyExists``).
    Nothing of the batch was written; the broker retries the operation on fresh data, and
    answers 409 only when the entity keeps changing under it."""

    type_name, status, title = "Conflict", 409, "Concurrent update"


@dataclass(frozen=True)
class WriteOp:
    """One entity change: insert (``old`` is None), update, or delete (``new`` is None)."""

    old: Entity | None
    new: Entity | None


@dataclass(frozen=True)
class EntitySelector:
    """One entity selector (clause 5.2.33): all of its members must match."""

    ids: tuple[str, ...] | None = None
    id_pattern: str | None = None
    types: TypeNode | None = None


@dataclass(frozen=True)
class EntityQuery:
    """Filters of a Query Entities request, already parsed and expanded (clause 5.7.2).

    An entity matches if it matches ANY of ``selectors`` (none: every entity) and all the
    other filters. Results come in insertion order, or sorted by ``order`` (clause 4.23,
    ``ngsild.ordering.page``).
    """

    selectors: tuple[EntitySelector, ...] = ()
    q: QNode | None = None
    geo: GeoQuery | None = None
    attrs: frozenset[str] | None = None  # the entity must have at least one of them
    scope: ScopeNode | None = None  # clause 4.19
    order: Ordering | None = None
    limit: int = 20
    offset: int = 0
    count: bool = False


@dataclass
class QueryResult:
    entities: list[Entity] = field(default_factory=list)
    count: int | None = None


@dataclass(frozen=True)
class AttributeStat:
    """How many entities of ``entity_type`` have attribute ``attribute`` of kind ``kind``.

    ``attribute == ""`` rows count the entities of the type.
    """

    entity_type: str
    attribute: str
    kind: str
    count: int


#: time property of a temporal query -> the name of its column in the history
TIME_PROPERTIES = ("observedAt", "createdAt", "modifiedAt", "deletedAt")


@dataclass(frozen=True)
class TimeFilter:
    """The time bounds of a temporal query, normalised (clause 4.11): on ``timeproperty``,
    ``after < t``, ``from_ <= t``, ``t < before``; ``last_n``: the most recent instances."""

    timeproperty: str = "observedAt"
    after: str | None = None
    from_: str | None = None
    before: str | None = None
    last_n: int | None = None

    def admits(self, time: str | None) -> bool:
        """Whether a time is in the bounds; no time (an instance never deleted, on the
        ``deletedAt`` axis) never is."""
        return time is not None and ((self.after is None or time > self.after)
                and (self.from_ is None or time >= self.from_)
                and (self.before is None or time < self.before))


@dataclass(frozen=True)
class Buckets:
    """How an aggregation groups a history: ``period_ms`` fixed periods, or ``months``
    calendar months, from the origin; neither: one period (the whole range)."""

    period_ms: int | None = None
    months: int | None = None


class OutboxReader(ABC):
    """Reads COMMITTED outbox rows of one tenant (never rows staged but not yet committed).

    On a backend shared by several processes the reads claim rows (module docstring:
    "Outbox claims")."""

    #: seconds a claim lasts unless renewed (a shared backend's readers); None: no claims
    lease_s: float | None = None

    @abstractmethod
    async def fresh(self, after_id: int, limit: int) -> list[OutboxRow]:
        """Rows never tried, newer than ``after_id``, oldest first (shared backend: the free
        ones whatever their id, and this reader's newer than ``after_id``)."""

    @abstractmethod
    async def due(self, now: float, limit: int) -> list[OutboxRow]:
        """Rows to try again whose time (epoch seconds) has come, soonest first (shared
        backend: free or this reader's, and any whose claim expired)."""

    async def renew(self, ids: Sequence[int]) -> None:
        """Extend, by a whole lease from now, this reader's claims on the rows ``ids`` (read
        and still being worked on: queued, in delivery, or their outcome being recorded);
        rows no longer claimed by this reader are left alone. Call it more often than
        ``lease_s``. A backend without claims: nothing to do."""
        return None

    @abstractmethod
    async def max_id(self) -> int: ...

    @abstractmethod
    async def pending(self) -> int:
        """How many rows wait (never tried or to retry)."""

    @abstractmethod
    async def close(self) -> None: ...


class Store(ABC):
    """Async persistence port. ``tenant`` None is the default tenant."""

    #: whether ``stage`` refuses stale writes (``StaleWrite``, module docstring): the broker
    #: then lets writers of different entities of a tenant run at the same time
    refuses_stale_writes: bool = False

    @abstractmethod
    async def get(self, tenant: str | None, entity_id: str) -> Entity | None: ...

    @abstractmethod
    async def get_many(self, tenant: str | None, entity_ids: list[str]) -> dict[str, Entity]: ...

    @abstractmethod
    async def stage(self, tenant: str | None, ops: list[WriteOp],
                    records: Sequence[object] = ()) -> Awaitable[None]:
        """Apply all ops atomically (all or none) and return an awaitable that completes when
        they are durable. ``get``, ``get_many``, ``attribute_stats``, ``subscriptions`` and
        the ``staged=True`` reads see staged ops at once; ``query`` and the other reads may
        see them only once committed. A backend may commit
        several callers' staged ops together (group commit). If the commit fails, the
        awaitable raises and the ops are lost: the caller must not acknowledge them.

        ``records`` are side rows written in the same transaction: any of
        ``store.records.SIDE_RECORDS`` (attribute instances of the temporal history,
        subscriptions, notifications of the outbox...).

        A backend shared by several processes raises ``StaleWrite`` (and writes nothing)
        when an op's ``old`` is not what is stored now; ``old`` must be the entity as read
        from this store, unmodified (see the module docstring)."""

    async def write(self, tenant: str | None, ops: list[WriteOp],
                    records: Sequence[object] = ()) -> None:
        """Apply all ops atomically; durable when this returns."""
        await (await self.stage(tenant, ops, records))

    @abstractmethod
    async def query(self, tenant: str | None, query: EntityQuery) -> QueryResult: ...

    @abstractmethod
    async def next_expiry(self, tenant: str | None) -> str | None:
        """The earliest ``expiresAt`` held by an entity of the tenant (its own, an attribute
        instance's or a sub-attribute's, as ``ngsild.model.entity_expiry`` finds it), staged
        changes included; None if no entity is transient (clause 4.22)."""

    @abstractmethod
    async def expiring(self, tenant: str | None, until: str) -> list[Entity]:
        """The entities whose earliest ``expiresAt`` is at or before ``until``, staged changes
        included (an indexed look-up, never a scan of every entity)."""

    @abstractmethod
    async def attribute_stats(self, tenant: str | None) -> list[AttributeStat]: ...

    @abstractmethod
    async def has_tenant(self, tenant: str | None) -> bool: ...

    @abstractmethod
    async def tenants(self) -> list[str]:
        """The named tenants that hold data (the default tenant is not listed)."""

    @abstractmethod
    async def close(self) -> None: ...

    async def leader(self, job: str) -> bool:
        """Whether this process runs the background ``job`` (a name, e.g. ``retention``) now:
        of the processes sharing the backend, one at a time is the job's leader, until it
        stops (then the next one to ask takes over). Ask before each run. A backend used by
        one process only: always."""
        return True

    # ------------------------------------------------------------ temporal history
    # Reads with ``staged=True`` see the changes staged but not yet committed (callers hold
    # the tenant's write lock); the others see committed data.

    @abstractmethod
    async def temporal_entities(self, tenant: str | None, ids: Sequence[str], *,
                                staged: bool = False) -> dict[str, TemporalEntity]:
        """The temporal entities among ``ids``, by id."""

    @abstractmethod
    async def select_temporal_entities(self, tenant: str | None, query: EntityQuery
                                       ) -> tuple[list[TemporalEntity], int | None]:
        """Temporal entities matching the selectors (id, idPattern, type) and ``attrs`` (an
        attribute with a history) of ``query``, in creation order, paginated by its
        limit/offset; and their count when ``query.count``. ``q`` and ``geo`` are ignored
        (the broker selects on the current state for those)."""

    @abstractmethod
    async def has_history(self, tenant: str | None, entity: str, attr: str,
                          dataset_id: str | None, *, staged: bool = False) -> bool:
        """Whether the attribute has recorded instances (of ``dataset_id``; None: any)."""

    @abstractmethod
    async def history_instance(self, tenant: str | None, entity: str, attr: str,
                               instance_id: int, *, staged: bool = False) -> HistoryRow | None:
        """One recorded instance of an entity's attribute."""

    @abstractmethod
    async def histories(self, tenant: str | None, ids: Sequence[str],
                        attrs: frozenset[str] | None, time: TimeFilter, limit: int
                        ) -> dict[str, dict[str, list[HistoryRow]]]:
        """entity -> attribute -> up to ``limit`` instances in the time filter, in ascending
        time order (then instance id); with ``time.last_n``, the ``min(limit, last_n)`` most
        recent ones (still returned in ascending order). Instance ids grow: a new instance's
        id is above every existing one. Only ``attrs`` when given; attributes without an
        instance in range are left out; every id of ``ids`` that has a history is a key."""

    @abstractmethod
    async def aggregate_histories(self, tenant: str | None, ids: Sequence[str],
                                  attrs: frozenset[str] | None, time: TimeFilter,
                                  methods: Sequence[str], buckets: Buckets,
                                  origin: str | None, with_last_time: bool
                                  ) -> dict[str, dict[str, AttributeAggregate]]:
        """entity -> attribute -> aggregation of the instances in the time filter (deletions
        excluded) with ``methods`` (``totalCount``, ``distinctCount``, ``sum``, ``avg``,
        ``min``, ``max``, ``stddev`` (sample), ``sumsq``; numeric methods over numbers only),
        grouped per dataset and period. Periods count from ``origin`` (None: the attribute's
        first instance in range), which is never after an instance in range (the time filter's
        lower bound or the first instance); ``with_last_time``: also give the last instance's
        time."""

    @abstractmethod
    async def retention(self, tenant: str | None) -> dict[str, int]:
        """Days of history kept, per attribute IRI ('' = the tenant's default)."""

    @abstractmethod
    async def set_retention(self, tenant: str | None, attr: str, days: int | None) -> None:
        """Keep ``days`` of history of ``attr`` ('' = the tenant's default); None: forget."""

    @abstractmethod
    async def purge_history(self, tenant: str | None, cutoffs: dict[str, str],
                            default_cutoff: str | None) -> int:
        """Delete the instances observed before their cutoff: ``cutoffs`` per attribute IRI,
        ``default_cutoff`` for the others (None: keep them). Returns how many went. A
        backend may work in several transactions; nothing else is deleted."""

    # ------------------------------------------------------------ subscriptions

    @abstractmethod
    async def subscriptions(self, tenant: str | None) -> list[StoredSubscription]:
        """Every subscription of the tenant, in creation order (none if it has no data).

        The status members are the sum of every ``SubscriptionStatus`` staged for it, by any
        process (``records.StoredSubscription.counted``)."""

    async def subscription(self, tenant: str | None, sub_id: str) -> StoredSubscription | None:
        """The subscription with this id, staged changes included (None: there is none)."""
        return next((s for s in await self.subscriptions(tenant) if s.id == sub_id), None)

    @abstractmethod
    async def outbox_reader(self, tenant: str | None) -> OutboxReader:
        """A reader of the tenant's committed outbox (creates the tenant's storage)."""

    # ------------------------------------------------------------ entity maps
    # Written as side records (``EntityMapPut``, ``EntityMapDelete``, ``EntityMapsExpired``).

    @abstractmethod
    async def entity_map(self, tenant: str | None, map_id: str) -> StoredEntityMap | None:
        """The entity map with this id, staged changes included, expired or not (the broker
        judges expiry); None if there is none (or the tenant has no data)."""


class SystemStore(ABC):
    """Rows shared by all tenants: @contexts hosted or cached here, bearer tokens.

    A handful of small rows, read rarely (their users cache them)."""

    @abstractmethod
    async def context(self, *, local_id: str | None = None, url: str | None = None
                ) -> StoredContext | None: ...

    @abstractmethod
    async def put_context(self, context: StoredContext) -> None:
        """Add a context, or replace the document and kind of the one with the same URL."""

    @abstractmethod
    async def contexts(self) -> list[StoredContext]:
        """Every context, oldest first."""

    @abstractmethod
    async def delete_context(self, local_id: str) -> bool: ...

    @abstractmethod
    async def add_token(self, token: StoredToken) -> None: ...

    @abstractmethod
    async def token(self, token_id: str) -> StoredToken | None: ...

    @abstractmethod
    async def revoke_token(self, token_id: str, at: str) -> bool:
        """Mark an unrevoked token revoked; False if there is none."""

    @abstractmethod
    async def tokens(self) -> list[StoredToken]:
        """Every token, oldest first."""

    @abstractmethod
    async def close(self) -> None: ...
