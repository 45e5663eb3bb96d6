"""The flood app inside the server (its ``setup`` through ``Services``) and as its own command."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cityvisor.apps.contract import Manifest
from cityvisor.apps.flood.app import FloodApp
from cityvisor.apps.flood.cli import app as flood_cli
from cityvisor.apps.flood.const import SDM_ENVIRONMENT
from cityvisor.client import LocalContextClient
from cityvisor.config import Settings
from cityvisor.services import Services

pytestmark = pytest.mark.anyio


async def test_services_start_the_flood_app_and_stop_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, auth=False, allow_context_fetch=False,
                        apps=["flood"])
    services = Services.build(settings)
    await services.start()
    try:
        (running,) = services.apps
        assert isinstance(running, FloodApp)
        await asyncio.wait_for(running.cycle_done.wait(), timeout=60)
        report = running.last_report
        assert report is not None and len(report.points) == 11
        # no demo gauges in this tenant: every point says so, none is silenced
        assert all(p.written and p.confidence < 1 for p in report.points.values())
        client = LocalContextClient(services.broker, tenant="nimes", context=SDM_ENVIRONMENT)
        point = await client.get_entity("urn:ngsi-ld:FloodMonitoring:nimes:point:ales",
                                        options="keyValues")
        assert point["vigilanceLevel"] == "green" and point["confidenceIssues"]
    finally:
        await services.close()
    assert services.apps == [] and running.task is not None and running.task.done()
    assert (tmp_path / "apps" / "flood" / "flood-state.json").exists()


def test_flood_run_refuses_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("catchments = []\npoints = []\n", "utf-8")
    result = CliRunner().invoke(flood_cli, ["run", "--broker", "http://127.0.0.1:9",
                                            "--config", str(bad), "--once"])
    assert result.exit_code == 2
    assert "invalid flood configuration" in result.output


async def test_the_app_runs_over_http_like_against_any_broker(tmp_path: Path) -> None:
    import httpx

    from cityvisor.api.app import create_app
    from cityvisor.apps.flood.config import load_config
    from cityvisor.client import HttpContextClient
    from cityvisor.sim.nimes import DemoCounts, build_city

    settings = Settings(data_dir=tmp_path / "db", auth=False, allow_context_fetch=False)
    services = Services.build(settings)
    try:
        counts = DemoCounts(streetlights=1, cameras=1, weather_stations=1, seismometers=1,
                            ev_stations=1, waste_containers=1, traffic_counters=1)
        for context, entities in build_city(counts):
            await services.broker.batch_upsert("nimes", context, entities)
        transport = httpx.ASGITransport(app=create_app(settings, services))
        client = HttpContextClient("http://127.0.0.1:1026", tenant="nimes", transport=transport)
        app = FloodApp(client, load_config(), data_dir=tmp_path / "flood")
        from cityvisor.sim.nimes import OBSERVED_AT

        report = await app.run_cycle(OBSERVED_AT)  # the demo's observation time: fresh data
        await client.close()
        assert report.errors == [] and all(p.written for p in report.points.values())
        assert all(p.confidence == 1.0 and p.issues == [] for p in report.points.values())
        local = LocalContextClient(services.broker, tenant="nimes", context=SDM_ENVIRONMENT)
        points = await local.query_entities(type="FloodMonitoring", q="vigilanceLevel==\"green\"",
                                            options="keyValues")
        assert len(points) == 11
    finally:
        await services.close()


def test_an_unknown_app_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot start app 'nosuchapp'"):
        Services.build(Settings(data_dir=tmp_path, auth=False, apps=["nosuchapp"]))


def test_the_manifest_names_the_app_and_its_types() -> None:
    manifest = Manifest.load("cityvisor.apps.flood")
    assert manifest.name == "flood"
    assert set(manifest.reads) == {"WeatherObserved", "FloodMonitoring"}
    assert set(manifest.writes) == {"FloodMonitoring", "Alert"}
