"""``cityvisor demo``: the Nîmes Métropole demo city, loaded in-process into tenant ``nimes``."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from cityvisor.services import Services
from cityvisor.sim.nimes import DemoCounts, build_city

DEMO_TENANT = "nimes"
BATCH = 2000


async def load_demo_city(services: Services, *, seed: int = 1988,
                         progress: Callable[[int, int], None] | None = None) -> tuple[int, float]:
    """Upsert the demo city into the ``nimes`` tenant; returns (entities, seconds)."""
    started = time.perf_counter()
    batches = build_city(DemoCounts(), seed=seed, observed_at=datetime.now(UTC))
    total = sum(len(entities) for _, entities in batches)
    done = 0
    for context, entities in batches:
        for start in range(0, len(entities), BATCH):
            chunk = entities[start : start + BATCH]
            result = await services.broker.batch_upsert(DEMO_TENANT, context, chunk)
            if result.errors:
                raise RuntimeError(f"demo data rejected: {result.errors[:3]}")
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return total, time.perf_counter() - started
