"""The watchdog app through the app contract: started by Services (setting ``apps``) or by its
``setup(AppContext)``, against the in-process broker."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cityvisor.apps.contract import Manifest
from cityvisor.apps.watchdog import setup
from cityvisor.apps.watchdog.config import WatchdogConfigError, parse_config
from cityvisor.apps.watchdog.coordinator import Watchdog, WatchdogUpdateFailed
from cityvisor.apps.watchdog.entities import last_report
from cityvisor.client import LocalContextClient
from cityvisor.config import Settings
from cityvisor.ngsild.context import sdm_context
from cityvisor.services import Services

pytestmark = pytest.mark.anyio
DEVICE = sdm_context("Device")
ALERT = sdm_context("Alert")


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def device(n: int, reported: datetime | None) -> dict[str, Any]:
    entity: dict[str, Any] = {
        "id": f"urn:ngsi-ld:Device:test:{n}", "type": "Device",
        "name": {"type": "Property", "value": f"Capteur {n}"},
        "location": {"type": "GeoProperty", "value": {"type": "Point",
                                                      "coordinates": [4.36, 43.84]}}}
    if reported is not None:
        entity["dateLastValueReported"] = {"type": "Property", "value": {
            "@type": "DateTime", "@value": stamp(reported)}}
    return entity


async def alerts(services: Services, tenant: str | None) -> dict[str, dict[str, Any]]:
    client = LocalContextClient(services.broker, tenant=tenant, context=ALERT)
    found = await client.query_entities(type="Alert", options="keyValues")
    return {a["alertSource"]: a for a in found}


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    built = Services.build(Settings(data_dir=tmp_path / "db", auth=False,
                                    allow_context_fetch=False, apps=["watchdog"]))
    yield built
    await built.close()


async def test_services_start_it_and_it_alerts_on_silent_devices(services: Services) -> None:
    now = datetime.now(UTC)
    await LocalContextClient(services.broker, context=DEVICE).upsert_entities([
        device(1, now - timedelta(hours=3)),  # silent for 3 h (default limit: 60 min)
        device(2, now - timedelta(minutes=5)),
        device(3, None),  # never says when it reported: not judged
    ])
    await services.start()
    (watchdog,) = services.apps
    assert isinstance(watchdog, Watchdog)
    await asyncio.wait_for(watchdog.checked.wait(), timeout=10)
    found = await alerts(services, None)
    assert set(found) == {"urn:ngsi-ld:Device:test:1"}
    alert = found["urn:ngsi-ld:Device:test:1"]
    assert alert["id"] == "urn:ngsi-ld:Alert:watchdog:Device:test:1"
    assert alert["category"] == "technical" and alert["subCategory"] == "deviceNotResponding"
    assert alert["severity"] == "medium" and alert["workflowState"] == "new"
    assert "validTo" not in alert and "Capteur 1" in alert["description"]
    assert alert["location"]["coordinates"] == [4.36, 43.84]


async def test_an_alert_closes_when_the_device_reports_and_a_restart_remembers_it(
        services: Services, tmp_path: Path) -> None:
    config = tmp_path / "watchdog.toml"
    config.write_text('tenant = "t"\nmax_silence_minutes = 30\ninterval_seconds = 3600\n'
                      '[[watch]]\ntype = "Device"\n', "utf-8")
    base = services.app_context("watchdog")
    context = dataclasses.replace(base, settings={**base.settings, "watchdog_config": config})
    devices = LocalContextClient(services.broker, tenant="t", context=DEVICE)
    now = datetime.now(UTC)
    await devices.upsert_entities([device(1, now - timedelta(minutes=45))])

    watchdog = await setup(context)
    await asyncio.wait_for(watchdog.checked.wait(), timeout=10)
    assert set(await alerts(services, "t")) == {"urn:ngsi-ld:Device:test:1"}
    restarted = await setup(context)  # its open alerts are read back: not raised twice
    await asyncio.wait_for(restarted.checked.wait(), timeout=10)
    assert restarted.open == {"urn:ngsi-ld:Device:test:1"}

    await devices.upsert_entities([device(1, datetime.now(UTC))])
    report = await restarted.check()
    assert report.cleared == ["urn:ngsi-ld:Device:test:1"] and report.raised == []
    closed = (await alerts(services, "t"))["urn:ngsi-ld:Device:test:1"]
    assert closed["severity"] == "informational" and "validTo" in closed

    later = datetime.now(UTC) + timedelta(hours=1)  # silent again: a new episode
    report = await restarted.check(later)
    assert report.raised == ["urn:ngsi-ld:Device:test:1"]
    reopened = (await alerts(services, "t"))["urn:ngsi-ld:Device:test:1"]
    assert "validTo" not in reopened and reopened["severity"] == "medium"
    await watchdog.close()
    await restarted.close()


async def test_a_broker_failure_is_one_error_type(services: Services) -> None:
    class Down(LocalContextClient):
        async def query_entities(self, **params: Any) -> list[dict[str, Any]]:
            raise ConnectionError("broker unreachable")

        def with_context(self, context: str) -> Down:
            return self

    watchdog = Watchdog(Down(services.broker), parse_config({}))
    with pytest.raises(WatchdogUpdateFailed, match="broker unreachable"):
        await watchdog.check()


def test_a_bad_configuration_lists_every_problem() -> None:
    with pytest.raises(WatchdogConfigError) as caught:
        parse_config({"max_silence_minutes": 0, "watch": [{"type": "no spaces"}], "extra": 1})
    message = str(caught.value)
    assert "max_silence_minutes" in message and "watch.0.type" in message
    assert "extra" in message


def test_the_last_report_is_the_latest_time_the_entity_gives() -> None:
    entity = device(1, datetime(2026, 11, 27, 6, tzinfo=UTC))
    entity["batteryLevel"] = {"type": "Property", "value": 0.8,
                              "observedAt": "2026-11-27T07:30:00Z"}
    assert last_report(entity) == datetime(2026, 11, 27, 7, 30, tzinfo=UTC)
    assert last_report(device(2, None)) is None


def test_the_manifest() -> None:
    manifest = Manifest.load("cityvisor.apps.watchdog")
    assert manifest.name == "watchdog" and manifest.writes == ("Alert",)
