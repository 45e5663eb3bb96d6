"""``cityvisor demo``: the Nîmes Métropole demo city, loaded in-process into tenant ``nimes``,
kept alive by the simulators of :mod:`cityvisor.sim` while it is served.

The load writes the static city (:func:`cityvisor.sim.nimes.build_city`) with, for every
simulated population, the state its simulator computes for the start time (lights lit after
dusk, waste filled since the last round...), in one pass. The :class:`~cityvisor.sim.live.LiveCity`
then ticks in the server's event loop and writes through a ``LocalContextClient``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cityvisor.client import LocalContextClient
from cityvisor.config import Settings
from cityvisor.services import Services
from cityvisor.sim.lighting import LightingSimulator
from cityvisor.sim.live import Clock, LiveCity, SimulatedClock, Simulator, initial_entities
from cityvisor.sim.mobility import ChargingSimulator
from cityvisor.sim.nimes import Batch, DemoCounts, build_city
from cityvisor.sim.seismometers import SeismometerSimulator
from cityvisor.sim.traffic import TrafficSimulator
from cityvisor.sim.waste import WasteSimulator

DEMO_TENANT = "nimes"
BATCH = 2000
#: Entity types written once the server is up (the live city's first job, before its first
#: tick) rather than in the start-up load: nobody needs them in the first seconds, and the
#: Occitanie forecasts (13,455 entities) are a quarter of the demo's load.
AFTER_START_TYPES = frozenset({"WeatherForecast"})


def demo_simulators(city: Sequence[Batch], seed: int = 1988,
                    extra: Sequence[Simulator] = ()) -> list[Simulator]:
    """The simulators that keep the demo city alive, then ``extra`` ones (the Occitanie
    weather, a flood replay scenario...: any object following the ``Simulator`` protocol)."""
    return [LightingSimulator(city, seed=seed), TrafficSimulator(city, seed=seed),
            ChargingSimulator(city, seed=seed), WasteSimulator(city, seed=seed),
            SeismometerSimulator(city, seed=seed), *extra]


def overlay(city: list[Batch], initial: Sequence[Batch]) -> list[Batch]:
    """The city with the simulators' initial entities: an entity of the city is replaced by the
    simulator's one (same id); new entities are added, batched by @context."""
    where: dict[str, tuple[int, int]] = {}
    for b, (_, entities) in enumerate(city):
        for k, entity in enumerate(entities):
            where[entity["id"]] = (b, k)
    out = [(context, list(entities)) for context, entities in city]
    extra: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for context, entities in initial:
        for entity in entities:
            place = where.get(entity["id"])
            if place is None:
                extra.setdefault(tuple(context), []).append(entity)
            else:
                out[place[0]][1][place[1]] = entity
    return out + [(list(context), entities) for context, entities in extra.items()]


async def load_demo_city(services: Services, *, seed: int = 1988,
                         progress: Callable[[int, int], None] | None = None,
                         initial: Sequence[Batch] = (), now: datetime | None = None,
                         city: list[Batch] | None = None) -> tuple[int, float]:
    """Upsert the demo city (``city``, else built for ``now``) into the ``nimes`` tenant with
    the simulators' ``initial`` entities in the same pass; returns (entities, seconds)."""
    started = time.perf_counter()
    now = now or datetime.now(UTC)
    batches = city if city is not None else build_city(DemoCounts(), seed=seed, observed_at=now)
    if initial:
        batches = overlay(batches, initial)
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


def split_after_start(batches: Sequence[Batch],
                      types: frozenset[str] = AFTER_START_TYPES) -> tuple[list[Batch], list[Batch]]:
    """(entities to load before serving, entities of ``types`` to write once serving)."""
    now: list[Batch] = []
    later: list[Batch] = []
    for context, entities in batches:
        first = [e for e in entities if e.get("type") not in types]
        rest = [e for e in entities if e.get("type") in types]
        if first:
            now.append((context, first))
        if rest:
            later.append((context, rest))
    return now, later


def live_city(services: Services, simulators: Sequence[Simulator], clock: Clock, *,
              since: datetime | None = None, report: Callable[[str], None] | None = None,
              report_every_s: float = 60.0, pending: Sequence[Batch] = ()) -> LiveCity:
    """A ``LiveCity`` writing to the demo tenant of ``services`` in-process; ``since``: the
    time of the simulators' current state (the load's); ``pending``: whole entities it
    creates when it starts, before its first tick."""
    def client(context: tuple[str, ...]) -> LocalContextClient:
        return LocalContextClient(services.broker, tenant=DEMO_TENANT, context=list(context))

    return LiveCity(client, simulators, clock, report=report, report_every_s=report_every_s,
                    since=since, pending=pending)


def initial_state(simulators: Sequence[Simulator], now: datetime,
                  warn: Callable[[str], None] = lambda line: None) -> list[Batch]:
    """Every simulator's initial entities at ``now``; one that fails is reported and left
    static (the others go on)."""
    return initial_entities(simulators, now, lambda sim, error: warn(
        f"simulator {sim.name}: initial state failed: {type(error).__name__}: {error}"))


def describe(simulators: Sequence[Simulator], speed: float) -> list[str]:
    """Banner lines: what is live and at which nominal rate (reports per simulated second)."""
    lines = [f"Live city (simulated time ×{speed:g}):"]
    for sim in simulators:
        count = len(getattr(sim, "ids", ()))
        rate = getattr(sim, "nominal_rate", None)
        what = [f"{count} entities"] if count else []
        if rate:
            what.append(f"~{rate:.1f} reports/s" + (f" (~{rate * speed:.0f}/s real)"
                                                    if speed != 1 else ""))
        what.append(f"tick every {sim.period_s:g} s")
        lines.append(f"  {sim.name:<17} {', '.join(what)}")
    return lines


def with_live_city(app: ASGIApp, live: LiveCity) -> ASGIApp:
    """Wrap ``app`` so that ``live`` runs while the server runs: started once the app's own
    start-up is complete, stopped before its shutdown."""

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def send_started(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                live.start()
            await send(message)

        async def receive_stopping() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await live.stop()
            return message

        await app(scope, receive_stopping, send_started)

    return wrapped


def serve_demo(settings: Settings, services: Services, live: LiveCity | None) -> None:
    """Serve the web app (API, console, portal) with the live city running alongside."""
    from cityvisor.web import create_web_app, serve

    asgi = create_web_app(settings, services)
    serve(settings, asgi if live is None else with_live_city(asgi, live))


def print_report(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


__all__ = ["AFTER_START_TYPES", "DEMO_TENANT", "SimulatedClock", "demo_simulators", "describe",
           "initial_state", "live_city", "load_demo_city", "overlay", "print_report",
           "serve_demo", "split_after_start", "with_live_city"]
