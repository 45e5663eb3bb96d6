"""The live-city runner: ticks on a clock, writes through a ContextClient, isolates failures."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from links import SDM, link
from starlette.testclient import TestClient

from cityvisor.api.app import create_app
from cityvisor.client import HttpContextClient, LocalContextClient
from cityvisor.config import Settings
from cityvisor.demo import (
    DEMO_TENANT,
    demo_simulators,
    initial_state,
    live_city,
    load_demo_city,
    overlay,
    split_after_start,
    with_live_city,
)
from cityvisor.services import Services
from cityvisor.sim.lighting import LightingSimulator
from cityvisor.sim.live import FakeClock, LiveCity, SimulatedClock, Simulator, describe_rates
from cityvisor.sim.nimes import DemoCounts, build_city
from cityvisor.sim.weather import OccitanieWeather
from cityvisor.web import create_web_app

pytestmark = pytest.mark.anyio

SMALL = DemoCounts(streetlights=300, cameras=3, rain_gauges=2, water_level_gauges=2,
                   weather_stations=1, seismometers=2, ev_stations=8, waste_containers=40,
                   traffic_counters=6)
LIGHTING = SDM.format("Streetlighting")
DUSK = datetime(2025, 11, 27, 15, 30, tzinfo=UTC)  # 16:30 local; sunset 17:08


@pytest.fixture
def services(tmp_path: Path) -> Services:
    """A temporary in-process broker (each test closes it in its own event loop)."""
    return Services.build(Settings(data_dir=tmp_path / "data", auth=False,
                                   allow_context_fetch=False))


async def loaded(services: Services, start: datetime = DUSK) -> tuple[list[Simulator], list]:
    city = build_city(SMALL, observed_at=start)
    sims = demo_simulators(city)
    initial = initial_state(sims, start)
    total, _ = await load_demo_city(services, city=city, initial=initial, now=start)
    assert total == sum(len(e) for _, e in city)
    return sims, city


def lighting_client(services: Services) -> LocalContextClient:
    return LocalContextClient(services.broker, tenant=DEMO_TENANT, context=[LIGHTING])


class Counting:
    """A test simulator that creates nothing and counts its ticks."""

    period_s = 5.0

    def __init__(self) -> None:
        self.calls = 0

    def initial(self, now: datetime) -> list:
        return []


class Failing(Counting):
    """A simulator whose ticks (and initial state) raise."""

    name = "failing"

    def initial(self, now: datetime) -> list:
        raise RuntimeError("no initial state")

    def tick(self, now: datetime) -> list:
        self.calls += 1
        raise RuntimeError(f"sensor network down at {now:%H:%M:%S}")


class Ghost:
    """A simulator writing to entities that do not exist (the broker refuses them)."""

    name = "ghost"
    period_s = 10.0

    def initial(self, now: datetime) -> list:
        return []

    def tick(self, now: datetime) -> list:
        at = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        return [([LIGHTING], [{"id": "urn:ngsi-ld:Streetlight:nowhere:1", "type": "Streetlight",
                               "powerState": {"type": "Property", "value": "on",
                                              "observedAt": at}}])]


class Malformed(Counting):
    """A simulator returning fragments without ids, then not even batches."""

    name = "malformed"

    def tick(self, now: datetime) -> list:
        self.calls += 1
        if self.calls % 2:
            return [([LIGHTING], [{"type": "Streetlight"}, "junk"])]
        return [None]


async def test_reports_are_merged_into_the_broker(services: Services) -> None:
    try:
        sims, _ = await loaded(services)
        clock = FakeClock(DUSK)
        live = live_city(services, sims, clock, since=DUSK)
        client = lighting_client(services)
        before = await client.get_entity("urn:ngsi-ld:Streetlight:nimes:1")
        assert before["powerState"]["value"] == "off"  # initial state: daylight
        end = DUSK + timedelta(hours=1)  # 17:30 local: after sunset
        t = DUSK
        while t < end:
            t += timedelta(seconds=5)
            await live.advance_to(t)
        lights = await client.query_entities(type="Streetlight", limit=1000)
        assert len(lights) == 300
        states = {e["powerState"]["value"] for e in lights if e["status"]["value"] == "ok"}
        assert states == {"on"}
        light = await client.get_entity("urn:ngsi-ld:Streetlight:nimes:1")
        # merged, not replaced: the static attributes and units survive
        assert light["lanternHeight"] == before["lanternHeight"]
        assert light["location"] == before["location"]
        assert light["powerConsumption"]["unitCode"] == "WTT"
        assert light["powerState"]["observedAt"] > "2025-11-27T16:00:00Z"
        stats = {s["name"]: s for s in live.rates()}
        assert stats["lighting"]["reports"] >= 300 and stats["lighting"]["errors"] == 0
        assert stats["traffic"]["reports"] == 10 * 6  # ten 6-minute periods in an hour
        assert stats["waste"]["reports"] >= 40 and stats["ev-charging"]["reports"] >= 8
        assert stats["seismometers"]["reports"] == 2 * 60
        assert all(s["rejected"] == 0 for s in stats.values())
        traffic = LocalContextClient(services.broker, tenant=DEMO_TENANT,
                                     context=[SDM.format("Transportation")])
        counter = await traffic.get_entity("urn:ngsi-ld:TrafficFlowObserved:nimes:1")
        assert counter["dateObservedTo"]["value"]["@value"] == "2025-11-27T16:30:00Z"
    finally:
        await services.close()


async def test_one_failing_simulator_never_stops_the_others(services: Services) -> None:
    try:
        sims, _ = await loaded(services)
        failing, ghost, malformed = Failing(), Ghost(), Malformed()
        clock = FakeClock(DUSK)
        live = live_city(services, [failing, ghost, malformed, *sims], clock)
        assert live.initial_batches(DUSK) is not None  # a failing initial() is isolated too
        t = DUSK
        for _ in range(60):
            t += timedelta(seconds=5)
            await live.advance_to(t)
        stats = {s["name"]: s for s in live.rates()}
        assert failing.calls == 60
        assert stats["failing"]["errors"] == 61  # 60 ticks + initial
        assert "sensor network down" in stats["failing"]["last_error"]
        assert stats["ghost"]["rejected"] == 30 and stats["ghost"]["reports"] == 0
        assert stats["malformed"]["rejected"] == 60 and stats["malformed"]["errors"] == 30
        assert malformed.calls == 60  # never retried in a loop, never blocking the others
        assert stats["lighting"]["reports"] > 0 and stats["lighting"]["errors"] == 0
        assert "failing 0.0/s (61 errors, 0 rejected)" in describe_rates(live.rates())
    finally:
        await services.close()


async def test_runs_on_its_clock_in_the_background(services: Services) -> None:
    try:
        sims, _ = await loaded(services)
        clock = FakeClock(DUSK)
        live = live_city(services, sims, clock, since=DUSK)
        live.start()
        assert live.ticks == 0
        clock.advance(5)
        await asyncio.wait_for(live.wait_for_ticks(1), 10)
        first = live.ticks
        clock.advance(55)  # a minute in all: 12 lighting ticks, 6 seismometer ticks...
        await asyncio.wait_for(live.wait_for_ticks(first + 1), 10)
        await live.stop()
        assert live.stats["lighting"].ticks >= 2
        assert not live._task
    finally:
        await services.close()


async def test_forecasts_are_written_once_serving_and_before_the_first_tick(
        services: Services) -> None:
    start = datetime(2025, 11, 27, 15, 55, tzinfo=UTC)  # the first tick issues new forecasts
    codes = ["30189", "30007", "30028", "34172", "31555"]
    weather = OccitanieWeather(seed=5, only=codes, forecast_days=2)
    first, later = split_after_start(initial_state([weather], start))
    assert {e["type"] for _, entities in first for e in entities} == {"WeatherObserved"}
    assert {e["type"] for _, entities in later for e in entities} == {"WeatherForecast"}
    assert sum(len(e) for _, e in later) == 10
    try:
        assert (await load_demo_city(services, city=[], initial=first, now=start))[0] == 5
        lines: list[str] = []
        clock = FakeClock(start)
        live = live_city(services, [weather], clock, since=start, pending=later,
                         report=lines.append)
        live.start()
        clock.advance(weather.period_s)
        await asyncio.wait_for(live.wait_for_ticks(1), 10)
        await live.stop()
        stats = live.rates()[0]
        assert stats["errors"] == 0 and stats["rejected"] == 0
        assert stats["reports"] == 5 + 10  # observations and the re-issued forecasts
        assert live.pending_written == 10
        assert lines[0].startswith("live: 10 of 10 pending entities written after start-up")
        client = LocalContextClient(services.broker, tenant=DEMO_TENANT,
                                    context=list(later[0][0]))
        stored = await client.query_entities(type="WeatherForecast", limit=100)
        assert len(stored) == 10
        assert {f["dateIssued"]["value"]["@value"] for f in stored} == {"2025-11-27T16:00:00Z"}
    finally:
        await services.close()


class Recorder:
    """A ContextClient stand-in recording merges (``batch``: with merge_entities)."""

    def __init__(self, batch: bool) -> None:
        self.merged: list[dict[str, Any]] = []
        if batch:
            self.merge_entities = self._merge_entities

    async def merge_entity(self, entity_id: str, fragment: dict[str, Any]) -> None:
        self.merged.append({"id": entity_id, **fragment})

    async def _merge_entities(self, entities: list[dict[str, Any]]) -> dict[str, Any]:
        self.merged.extend(entities)
        return {"success": [e["id"] for e in entities], "errors": []}


class SlowStore(Recorder):
    """A client whose batch merges wait for ``release`` (a commit in progress)."""

    def __init__(self) -> None:
        super().__init__(batch=True)
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.cancelled = 0
        self.calls = 0

    async def _merge_entities(self, entities: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return await super()._merge_entities(entities)

    async def close(self) -> None:
        pass


async def test_stop_lets_the_write_in_progress_finish_and_starts_no_other() -> None:
    start = datetime(2025, 11, 27, 11, 0, tzinfo=UTC)
    sim = LightingSimulator(build_city(SMALL))
    sim.initial(start)
    store = SlowStore()
    clock = FakeClock(start)
    live = LiveCity(lambda context: store, [sim], clock, since=start)  # type: ignore[arg-type, return-value]
    live.start()
    clock.advance(60)  # several ticks due: the runner is behind, writing one
    await asyncio.wait_for(store.started.wait(), 10)
    stopping = asyncio.create_task(live.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waiting for the write, not cancelling it
    store.release.set()
    await asyncio.wait_for(stopping, 10)
    assert store.cancelled == 0 and store.calls == 1  # finished, and no write after it
    assert live.stats["lighting"].reports == len(store.merged) > 0
    assert live._task is None


class BrokenClose(Recorder):
    """A client whose close raises (a connection already gone)."""

    def __init__(self) -> None:
        super().__init__(batch=True)
        self.close_calls = 0

    async def close(self) -> None:
        self.close_calls += 1
        raise ConnectionError("connection reset")


async def test_a_client_failing_to_close_is_logged_and_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    start = datetime(2025, 11, 27, 11, 0, tzinfo=UTC)
    sim = LightingSimulator(build_city(SMALL))
    sim.initial(start)
    clients: dict[tuple[str, ...], BrokenClose] = {}
    live = LiveCity(lambda context: clients.setdefault(context, BrokenClose()), [sim],  # type: ignore[arg-type, return-value]
                    FakeClock(start), since=start)
    await live.advance_to(start + timedelta(seconds=5))
    assert clients and live.runner_errors == 0
    with caplog.at_level("WARNING", logger="cityvisor.sim.live"):
        await live.stop()
    assert all(c.close_calls == 1 for c in clients.values())  # one failure stops no other close
    assert live.runner_errors == len(clients)
    failures = [r for r in caplog.records if "closing a client failed" in r.getMessage()]
    assert len(failures) == len(clients) and all(r.exc_info for r in failures)


class Idle(Counting):
    """A simulator that reports nothing."""

    name = "idle"

    def tick(self, now: datetime) -> list:
        self.calls += 1
        return []


async def test_a_failing_tick_loop_is_logged_counted_and_goes_on(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    start = datetime(2025, 11, 27, 11, 0, tzinfo=UTC)
    clock = FakeClock(start)
    live = LiveCity(lambda context: Recorder(True), [Idle()], clock, since=start)  # type: ignore[arg-type, return-value]
    went_on = asyncio.Event()
    calls = 0

    async def advance_to(now: datetime) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("bug in the scheduler")
        went_on.set()
        return 0

    monkeypatch.setattr(live, "advance_to", advance_to)
    with caplog.at_level("ERROR", logger="cityvisor.sim.live"):
        live.start()
        clock.advance(5)
        await asyncio.wait_for(went_on.wait(), 10)  # after a one-second pause
        await live.stop()
    assert live.runner_errors == 1
    assert any(r.exc_info and "tick failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("batch", [True, False])
async def test_rate_is_about_forty_streetlight_reports_per_simulated_second(batch: bool) -> None:
    city = build_city()
    sim = LightingSimulator(city)
    start = datetime(2025, 11, 27, 11, 0, tzinfo=UTC)
    sim.initial(start)
    recorder = Recorder(batch)
    live = LiveCity(lambda context: recorder, [sim], FakeClock(start), since=start)  # type: ignore[arg-type, return-value]
    for k in range(1, 121):  # ten minutes
        await live.advance_to(start + timedelta(seconds=5 * k))
    stats = live.rates()[0]
    assert stats["reports"] == len(recorder.merged)
    assert 37 <= stats["reports_per_sim_s"] <= 42
    assert stats["nominal_rate"] == pytest.approx(35000 / 900)


async def test_a_runner_behind_its_clock_coalesces_ticks() -> None:
    city = build_city(SMALL)
    sim = LightingSimulator(city)
    start = datetime(2025, 11, 27, 11, 0, tzinfo=UTC)
    sim.initial(start)
    recorder = Recorder(True)
    live = LiveCity(lambda context: recorder, [sim], FakeClock(start), since=start)  # type: ignore[arg-type, return-value]
    ran = await live.advance_to(start + timedelta(minutes=20))
    assert ran == 1 and live.stats["lighting"].skipped_ticks == 239
    assert {e["id"] for e in recorder.merged} >= set(sim.ids)  # everyone reported in the gap


def test_bad_configuration_is_refused() -> None:
    sim = Failing()
    with pytest.raises(ValueError, match="unique"):
        LiveCity(lambda c: None, [sim, sim])  # type: ignore[arg-type, return-value]
    sim.period_s = 0
    with pytest.raises(ValueError, match="period_s"):
        LiveCity(lambda c: None, [sim])  # type: ignore[arg-type, return-value]
    with pytest.raises(ValueError, match="speed"):
        SimulatedClock(0)


def test_overlay_replaces_and_adds() -> None:
    city = [(["a"], [{"id": "x", "type": "T", "n": 1}, {"id": "y", "type": "T", "n": 1}])]
    out = overlay(city, [(["a"], [{"id": "y", "type": "T", "n": 2}]),
                         (["b"], [{"id": "z", "type": "U"}])])
    assert out == [(["a"], [{"id": "x", "type": "T", "n": 1}, {"id": "y", "type": "T", "n": 2}]),
                   (["b"], [{"id": "z", "type": "U"}])]
    assert city[0][1][1]["n"] == 1  # the input is not modified


def test_the_served_demo_runs_the_live_city(tmp_path: Path) -> None:
    """The web app wrapped by ``with_live_city``: the city changes while it is served."""
    settings = Settings(data_dir=tmp_path / "data", auth=False, allow_context_fetch=False)
    start = datetime(2025, 11, 27, 15, 55, tzinfo=UTC)  # 16:55 local, minutes before sunset
    loader = Services.build(settings)
    city = build_city(SMALL, observed_at=start)
    sims = demo_simulators(city)

    async def load() -> None:
        await load_demo_city(loader, city=city, initial=initial_state(sims, start), now=start)
        await loader.close()

    asyncio.run(load())
    serving = Services.build(settings)
    live = live_city(serving, sims, SimulatedClock(1800, start=start), since=start)
    app = with_live_city(create_web_app(settings, serving), live)
    headers = {"NGSILD-Tenant": DEMO_TENANT, **link(LIGHTING)}
    url = "/ngsi-ld/v1/entities?type=Streetlight&limit=1000&options=keyValues"
    with TestClient(app, base_url="http://127.0.0.1:1026") as http:
        first = http.get(url, headers=headers).json()
        assert {e["powerState"] for e in first} == {"off"}
        deadline = datetime.now(UTC) + timedelta(seconds=30)
        while datetime.now(UTC) < deadline:  # simulated time runs 1800x: dusk in ~1 s
            lit = [e for e in http.get(url, headers=headers).json() if e["powerState"] == "on"]
            if len(lit) > 250:
                break
            time.sleep(0.05)
        assert len(lit) > 250
    assert live._task is None  # stopped with the server
    asyncio.run(serving.close())


async def test_the_runner_drives_a_broker_over_http(services: Services) -> None:
    """Same runner, HttpContextClient: what a simulator on another machine would use."""
    try:
        sims, _ = await loaded(services)
        lighting = [s for s in sims if s.name == "lighting"]
        app = create_app(services.settings, services)
        transport = httpx.ASGITransport(app=app)

        def client(context: tuple[str, ...]) -> HttpContextClient:
            return HttpContextClient("http://127.0.0.1:1026", tenant=DEMO_TENANT,
                                     context=context[0], transport=transport)

        live = LiveCity(client, lighting, FakeClock(DUSK), since=DUSK)
        t = DUSK
        while t < DUSK + timedelta(hours=1):
            t += timedelta(seconds=60)
            await live.advance_to(t)
        stats = live.rates()[0]
        assert stats["errors"] == 0 and stats["rejected"] == 0 and stats["reports"] >= 300
        lights = await lighting_client(services).query_entities(type="Streetlight", limit=1000)
        assert {e["powerState"]["value"] for e in lights if e["status"]["value"] == "ok"} \
            == {"on"}
        for c in live._clients.values():
            await c.close()
    finally:
        await services.close()
