"""Map layers kept up to date in memory while consoles watch a tenant.

Building the streetlight layer reads 35,000 entities (about a second). A supervision centre
opens dozens of consoles at once, and the living city changes dozens of lamps a second, so the
hub (:mod:`cityvisor.console.events`) keeps each layer it has built and patches it with every
change it already describes for the live events. Concurrent requests for a layer being built
share that one build; the changes seen while it is built are replayed on it (in order, so the
latest state wins even if the snapshot already held a change). A tenant's layers are dropped
when its last console disconnects (no memory, no per-write work when nobody watches) and
rebuilt after ``max_age_s`` so that any drift heals.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from . import layers
from .session import ConsoleServices

MAX_AGE_S = 600.0
Key = tuple[str | None, str]


@dataclass
class CachedLayer:
    """One layer as columns, with an index to patch it in O(1) (deletes swap with the last)."""

    kind: str
    entity_type: str
    context: str
    built_ms: float
    built_at: float
    ids: list[str] = field(default_factory=list)
    lon: list[float] = field(default_factory=list)
    lat: list[float] = field(default_factory=list)
    state: list[str] = field(default_factory=list)
    value: list[Any] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> CachedLayer:
        layer = cls(data["kind"], data["type"], data["context"], data["builtMs"], time.monotonic(),
                    list(data["ids"]), list(data["lon"]), list(data["lat"]), list(data["state"]),
                    list(data["value"]))
        layer.index = {entity_id: i for i, entity_id in enumerate(layer.ids)}
        return layer

    def apply(self, event: dict[str, Any]) -> None:
        entity_id = event["id"]
        i = self.index.get(entity_id)
        if event.get("deleted"):
            if i is None:
                return
            last = len(self.ids) - 1
            for cells in self._columns():
                cells[i] = cells[last]
                cells.pop()
            if i != last:
                self.index[self.ids[i]] = i
            del self.index[entity_id]
            return
        row = (entity_id, round(event["lon"], 6), round(event["lat"], 6), event["state"],
               event["value"])
        if i is None:
            self.index[entity_id] = len(self.ids)
            for cells, item in zip(self._columns(), row, strict=True):
                cells.append(item)
        else:
            self.ids[i], self.lon[i], self.lat[i], self.state[i], self.value[i] = row

    def _columns(self) -> tuple[list[Any], ...]:
        return self.ids, self.lon, self.lat, self.state, self.value

    def data(self) -> dict[str, Any]:
        return {"kind": self.kind, "type": self.entity_type, "context": self.context,
                "count": len(self.ids), "ids": self.ids, "lon": self.lon, "lat": self.lat,
                "state": self.state, "value": self.value, "builtMs": self.built_ms,
                "cachedForS": round(time.monotonic() - self.built_at, 1)}


class LayerCache:
    def __init__(self, services: ConsoleServices, max_age_s: float = MAX_AGE_S) -> None:
        self.services = services
        self.max_age_s = max_age_s
        self.layers: dict[Key, CachedLayer] = {}
        self.building: dict[Key, tuple[asyncio.Future[CachedLayer], list[dict[str, Any]]]] = {}
        #: tenants with a connected console (kept by the hub); only their layers are kept
        self.watched: set[str | None] = set()
        #: bumped when a tenant's layers are dropped: a build that spans a drop is not kept
        self.epochs: dict[str | None, int] = {}

    async def get(self, tenant: str | None, kind: layers.Kind) -> dict[str, Any]:
        key = (tenant, kind.name)
        layer = self.layers.get(key)
        if layer is not None and time.monotonic() - layer.built_at < self.max_age_s:
            return layer.data()
        pending = self.building.get(key)
        if pending is not None:
            return (await asyncio.shield(pending[0])).data()
        epoch = self.epochs.get(tenant, 0)
        future: asyncio.Future[CachedLayer] = asyncio.get_running_loop().create_future()
        replay: list[dict[str, Any]] = []
        self.building[key] = (future, replay)
        try:
            layer = CachedLayer.from_data(await layers.build_layer(self.services, tenant, kind))
            for event in replay:
                layer.apply(event)
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            self.building.pop(key, None)
        future.set_result(layer)
        if tenant in self.watched and self.epochs.get(tenant, 0) == epoch:
            self.layers[key] = layer
        return layer.data()

    def apply(self, tenant: str | None, events: list[dict[str, Any]]) -> None:
        """Patch the cached and in-construction layers of ``tenant`` with live events."""
        if not self.layers and not self.building:
            return
        for event in events:
            kinds = event.get("kinds", ()) if event.get("deleted") else (event.get("kind"),)
            for kind in kinds:
                if kind is None:
                    continue
                layer = self.layers.get((tenant, kind))
                if layer is not None:
                    layer.apply(event)
                pending = self.building.get((tenant, kind))
                if pending is not None:
                    pending[1].append(event)

    def drop(self, tenant: str | None) -> None:
        self.epochs[tenant] = self.epochs.get(tenant, 0) + 1
        for key in [key for key in self.layers if key[0] == tenant]:
            del self.layers[key]
