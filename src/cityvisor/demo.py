"""``cityvisor demo``: the Nîmes Métropole demo city, loaded in-process into tenant ``nimes``,
kept alive by the simulators of :mod:`cityvisor.sim` while it is served.

The load writes the static city (:func:`cityvisor.sim.nimes.build_city`) with, for every
simulated population, the state its simulator computes for the start time (lights lit after
dusk, waste filled since the last round...), in one pass. The :class:`~cityvisor.sim.live.LiveCity`
then ticks in the server's event loop and writes through a ``LocalContextClient``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cityvisor.client import LocalContextClient
from cityvisor.config import Settings
from cityvisor.extras import MissingExtra, require_extra, requires_extra
from cityvisor.ngsild.context import CONTEXT_REL, sdm_context
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
#: the values of ``--scenario``: the October 2014 storm replayed over Nîmes, or none
SCENARIOS = ("flood-2014", "none")
#: where the storm scenario's data (the Cance data set) is, relative to the working directory
REPLAY_DATA = Path("../shared/data/flood/cance")


@dataclass(frozen=True)
class DemoOptions:
    """What ``cityvisor demo`` was asked for (its options; see ``cityvisor demo --help``)."""

    port: int = 1026
    data_dir: Path = Path("var/demo")
    load_only: bool = False
    live: bool = True
    speed: float = 1.0  # simulated seconds per real second
    start: datetime | None = None  # simulated start time; None: now
    report_every_s: float = 60.0
    scenario: str = "flood-2014"  # one of SCENARIOS
    replay_data: Path = REPLAY_DATA
    weather: bool = True


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


def demo_extras(options: DemoOptions,
                warn: Callable[[str], None]) -> tuple[list[Simulator], Any]:
    """The demo's optional simulators (the Occitanie weather, the storm scenario) and the
    storm scenario (None if not asked for, or if its data or its extra are missing: ``warn``
    says so and the demo runs without it)."""
    if not options.live:
        return [], None
    extra: list[Simulator] = []
    if options.weather:
        from cityvisor.sim.weather import OccitanieWeather

        extra.append(OccitanieWeather(forecast_days=3))
    scenario = None
    if options.scenario == "flood-2014":
        feature = "the storm scenario of the demo (--scenario flood-2014)"
        try:
            with requires_extra(feature):
                require_extra("flood", feature)
                from cityvisor.apps.flood.config import load_config
                from cityvisor.apps.flood.storm_2014 import ScenarioDataMissing, Storm2014Scenario
        except MissingExtra as error:
            warn(f"No flood replay: {error}")
            return extra, None
        try:
            scenario = Storm2014Scenario(load_config(None), data_dir=options.replay_data)
        except ScenarioDataMissing as error:
            warn(f"No flood replay: {error}")
        else:
            extra.append(scenario)
    return extra, scenario


def banner(options: DemoOptions, simulators: Sequence[Simulator], now: datetime,
           after_start: Sequence[Batch]) -> list[str]:
    """What the demo prints once loaded: its addresses, curl examples, what is live."""
    port = options.port
    base = f"http://127.0.0.1:{port}/ngsi-ld/v1"

    def link(domain: str) -> str:
        return f"-H 'Link: <{sdm_context(domain)}>; rel=\"{CONTEXT_REL}\"'"

    tenant = f"-H 'NGSILD-Tenant: {DEMO_TENANT}'"
    lines = [
        "",
        f"Operator console: http://127.0.0.1:{port}/console/  (demo: type your name)",
        f"Public portal:    http://127.0.0.1:{port}/",
        f"NGSI-LD API: {base}  (tenant header  NGSILD-Tenant: {DEMO_TENANT})",
        "Try:",
        f"  curl -s '{base}/types' {tenant}",
        f"  curl -s '{base}/entities?type=FloodMonitoring&limit=3&options=keyValues' "
        f"{tenant} {link('Environment')}",
        f"  curl -sg -i '{base}/entities?type=Streetlight&georel=near;maxDistance==200"
        f"&geometry=Point&coordinates=[4.3597,43.8349]&count=true&limit=0' {tenant} "
        f"{link('Streetlighting')}",
        f"  curl -s '{base}/entities?type=Streetlight&q=powerState==%22low%22&count=true&limit=0'"
        f" -i {tenant} {link('Streetlighting')}",
        "Stop with Ctrl-C. The demo runs without authentication, on loopback only.",
        "",
    ]
    if simulators:
        later = sum(len(entities) for _, entities in after_start)
        every = options.report_every_s
        lines[-2:-2] = describe(simulators, options.speed) + [
            f"  simulated start {now:%Y-%m-%d %H:%M:%S} UTC"
            + (f"; rates printed every {every:g} s" if every else ""),
            *([f"  {later} more entities (weather forecasts) are written in the first seconds"]
              if later else [])]
    else:
        lines[-2:-2] = ["Static city (--no-live): nothing changes unless you write."]
    return lines


def run_demo(settings: Settings, options: DemoOptions) -> None:
    """``cityvisor demo``: build and load the demo city into ``settings.data_dir``, then (unless
    ``options.load_only``) serve it with its simulators until interrupted.

    ``settings``: the server's (loopback, no authentication); a live demo keeps one day of
    temporal history unless ``temporal_retention_days`` is set."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    err = Console(stderr=True)

    def warn(line: str) -> None:
        err.print(line, style="yellow", markup=False, highlight=False, soft_wrap=True)

    if settings.temporal_retention_days is None and options.live:
        # ~2 GB of temporal history a day at real speed: keep one day unless configured.
        settings = settings.model_copy(update={"temporal_retention_days": 1})
    start = options.start
    now = start if start is not None else datetime.now(UTC)
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    # Without --start the simulated clock runs from now, load included (at --speed 1 it is the
    # wall clock); with --start it starts when the server does, at the time asked for.
    clock = SimulatedClock(options.speed, start=now) if start is None else None
    city = build_city(DemoCounts(), observed_at=now)
    extra, scenario = demo_extras(options, warn)
    simulators = demo_simulators(city, extra=extra) if options.live else []
    initial = initial_state(simulators, now, warn)
    # Forecasts are written by the live city once the server is up (shorter start-up); with
    # --load-only there is no server: everything is loaded.
    initial, after_start = (initial, []) if options.load_only else split_after_start(initial)
    services = Services.build(settings)
    with Progress(TextColumn("Loading Nîmes Métropole"), BarColumn(), TextColumn(
            "{task.completed}/{task.total} entities"), TimeElapsedColumn(), console=err) as bar:
        task = bar.add_task("load", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        total, seconds = asyncio.run(load_demo_city(services, progress=progress, city=city,
                                                    initial=initial, now=now))
    asyncio.run(services.store.close())
    err.print(f"[green]Loaded {total} entities into tenant '{DEMO_TENANT}' in {seconds:.1f} s[/]")
    if options.load_only:
        return
    # Plain text (not rich): long commands must stay on one line to be copied.
    print("\n".join(banner(options, simulators, now, after_start)), file=sys.stderr, flush=True)
    serving = Services.build(settings)
    if scenario is not None:
        # the flood app runs in the server on the scenario's clock and moved radar
        serving.app_setups.append(("flood", scenario.app_setup))
    live = None
    if simulators:
        live = live_city(serving, simulators, clock or SimulatedClock(options.speed, start=now),
                         since=now, report=print_report, report_every_s=options.report_every_s,
                         pending=after_start)
    serve_demo(settings, serving, live)


__all__ = ["AFTER_START_TYPES", "DEMO_TENANT", "REPLAY_DATA", "SCENARIOS", "DemoOptions",
           "SimulatedClock", "banner", "demo_extras", "demo_simulators", "describe",
           "initial_state", "live_city", "load_demo_city", "overlay", "print_report", "run_demo",
           "serve_demo", "split_after_start", "with_live_city"]
