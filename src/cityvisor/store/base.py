"""The store port: what the broker needs from a persistence backend.

A store persists entities in the stored form (``docs/internal-model.md``) per tenant and
filters them. It owns no NGSI-LD semantics: the broker decides *what* to write (and reads the
old entity first); the store writes a list of ``WriteOp`` atomically and answers queries,
pushing into its engine every filter it can. Backends: ``sqlite`` (embedded default);
PostgreSQL implements the same interface next.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cityvisor.ngsild.geo import GeoQuery
from cityvisor.ngsild.query import QNode
from cityvisor.ngsild.typequery import TypeNode

Entity = dict[str, Any]


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
    other filters.
    """

    selectors: tuple[EntitySelector, ...] = ()
    q: QNode | None = None
    geo: GeoQuery | None = None
    attrs: frozenset[str] | None = None  # the entity must have at least one of them
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


class Store(ABC):
    """Async persistence port. ``tenant`` None is the default tenant."""

    @abstractmethod
    async def get(self, tenant: str | None, entity_id: str) -> Entity | None: ...

    @abstractmethod
    async def get_many(self, tenant: str | None, entity_ids: list[str]) -> dict[str, Entity]: ...

    @abstractmethod
    async def stage(self, tenant: str | None, ops: list[WriteOp],
                    records: Sequence[object] = ()) -> Awaitable[None]:
        """Apply all ops atomically (all or none) and return an awaitable that completes when
        they are durable. Later reads through this store see staged ops; a backend may commit
        several callers' staged ops together (group commit). If the commit fails, the
        awaitable raises and the ops are lost: the caller must not acknowledge them.

        ``records`` are side rows written in the same transaction (attribute instances of
        the temporal history, notifications of the outbox...): each record type is persisted
        by the writer registered for it with ``register_records``."""

    async def write(self, tenant: str | None, ops: list[WriteOp],
                    records: Sequence[object] = ()) -> None:
        """Apply all ops atomically; durable when this returns."""
        await (await self.stage(tenant, ops, records))

    @abstractmethod
    async def query(self, tenant: str | None, query: EntityQuery) -> QueryResult: ...

    @abstractmethod
    async def attribute_stats(self, tenant: str | None) -> list[AttributeStat]: ...

    @abstractmethod
    async def has_tenant(self, tenant: str | None) -> bool: ...

    @abstractmethod
    async def tenants(self) -> list[str]: ...

    @abstractmethod
    async def close(self) -> None: ...
