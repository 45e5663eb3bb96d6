"""The October 2014 storm scenario over Nîmes: labelled, time-shifted, and blind to its own
future."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cityvisor.apps.flood.app import FloodApp
from cityvisor.apps.flood.config import load_config
from cityvisor.apps.flood.const import SDM_ENVIRONMENT
from cityvisor.apps.flood.const import STORM_2014_LABEL as LABEL
from cityvisor.apps.flood.dataset import FutureDataError
from cityvisor.apps.flood.storm_2014 import STORM_START, ScenarioDataMissing, Storm2014Scenario
from cityvisor.client import LocalContextClient
from cityvisor.config import Settings
from cityvisor.services import Services
from cityvisor.sim.nimes import DemoCounts, build_city

pytestmark = pytest.mark.anyio
CANCE = Path(__file__).parents[3] / "shared" / "data" / "flood" / "cance"
needs_data = pytest.mark.skipif(not (CANCE / "prcp").is_dir(),
                                reason=f"Cance data set not at {CANCE}")
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
GAUGES = DemoCounts(streetlights=1, cameras=1, weather_stations=1, seismometers=1,
                    ev_stations=1, waste_containers=1, traffic_counters=1)


def test_missing_data_is_said_clearly(tmp_path: Path) -> None:
    with pytest.raises(ScenarioDataMissing, match="needs the Cance data set"):
        Storm2014Scenario(load_config(), data_dir=tmp_path)


@needs_data
def test_ticks_are_labelled_time_shifted_gauge_fragments() -> None:
    config = load_config()
    scenario = Storm2014Scenario(config, data_dir=CANCE, acceleration=60)
    assert scenario.initial(T0) == []
    # 36 min later at ×60 the scenario is 36 h in: midnight of 10–11 October, heavy rain
    now = T0 + timedelta(minutes=36)
    batches = scenario.tick(now)
    assert scenario.storm_time(scenario.scenario_time(now)) == STORM_START + timedelta(hours=36)
    ids = {e["id"] for _, batch in batches for e in batch}
    wanted = {g for c in config.catchments for g in [*c.rain_gauges, *c.level_gauges]}
    assert ids <= wanted and len(ids) > 40
    stamp = (T0 + timedelta(hours=36)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for _, batch in batches:
        for entity in batch:
            assert entity["dataProvider"]["value"] == LABEL == entity["source"]["value"]
            attr = entity.get("precipitation") or entity["currentLevel"]
            assert attr["observedAt"] == stamp and attr["value"] >= 0
    assert max(e["precipitation"]["value"] for _, b in batches for e in b
               if "precipitation" in e) > 1.0  # it rains over Nîmes


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    """A broker holding the demo tenant's gauges (what the scenario drives)."""
    built = Services.build(Settings(data_dir=tmp_path / "db", auth=False,
                                    allow_context_fetch=False))
    try:
        for context, entities in build_city(GAUGES):
            await built.broker.batch_upsert("nimes", context, entities)
        yield built
    finally:
        await built.close()


@needs_data
async def test_the_scenario_never_reads_after_its_scenario_time(
        tmp_path: Path, services: Services) -> None:
    config = load_config()
    scenario = Storm2014Scenario(config, data_dir=CANCE, acceleration=120)
    scenario.initial(T0)
    wall = [T0]
    client = LocalContextClient(services.broker, tenant="nimes")
    app = FloodApp(client, config, scenario.radar_source(), scenario.clock(lambda: wall[0]),
                   data_dir=tmp_path / "flood", data_provider=LABEL)
    levels: set[str] = set()
    for step in range(0, 60):
        wall[0] = T0 + timedelta(seconds=45 * step)  # 1.5 scenario hours per step
        for context, fragments in scenario.tick(wall[0]):
            result = await services.broker.batch_merge("nimes", context, fragments)
            assert not result.errors
        report = await app.run_cycle()
        assert report.errors == []
        levels |= {p.level for p in report.points.values()}
    source = scenario.radar_source()
    assert source.reads and all(hour <= bound for hour, bound in source.reads)
    with pytest.raises(FutureDataError):
        source.frame(scenario.scenario_time(wall[0]) + timedelta(hours=1))
    assert levels & {"orange", "red"}, levels  # the storm raises warnings over Nîmes
    point = await client.with_context(SDM_ENVIRONMENT).get_entity(
        "urn:ngsi-ld:FloodMonitoring:nimes:point:ales", options="keyValues")
    assert point["dataProvider"] == LABEL


@needs_data
async def test_services_run_the_app_on_the_scenario(services: Services) -> None:
    scenario = Storm2014Scenario(load_config(), data_dir=CANCE, acceleration=3600)
    scenario.initial(datetime.now(UTC))
    services.app_setups.append(("flood", scenario.app_setup))
    await services.start()
    (running,) = services.apps
    assert isinstance(running, FloodApp)
    assert running.cycle_interval_s == pytest.approx(300 / 3600)
    await asyncio.wait_for(running.cycle_done.wait(), timeout=30)
    await running.close()
    client = LocalContextClient(services.broker, tenant="nimes", context=SDM_ENVIRONMENT)
    point = await client.get_entity("urn:ngsi-ld:FloodMonitoring:nimes:point:vistre",
                                    options="keyValues")
    assert point["dataProvider"] == LABEL
    assert running.state_path is None  # a scenario run never resumes an older one
    assert not (services.settings.data_dir / "apps" / "flood").exists()
