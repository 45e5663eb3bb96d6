"""The flood cycle's failures: every source reports one FloodUpdateFailed and the cycle goes on;
a bug is not swallowed by the cycle, and the run loop survives it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from cityvisor.apps.flood.app import FloodApp
from cityvisor.apps.flood.config import FloodConfig, parse_config
from cityvisor.apps.flood.coordinator import FloodCoordinator, FloodUpdateFailed
from cityvisor.apps.flood.sources import RadarFrame
from cityvisor.ngsild.errors import BadRequestData, ResourceNotFound
from cityvisor.ngsild.model import NULL

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 11, 27, 6, 2, tzinfo=UTC)
Entity = dict[str, Any]


def config() -> FloodConfig:
    return parse_config({
        "tenant": "t",
        "catchments": [{"id": "a", "name": "Bassin a", "area_km2": 10.0,
                        "gr4h": [200.0, 0.0, 50.0, 1.5], "rating": {"a": 2.0, "b": 1.6},
                        "course": [[4.34, 43.87], [4.34, 43.83]],
                        "rain_gauges": ["urn:ngsi-ld:WeatherObserved:t:1"],
                        "level_gauges": ["urn:ngsi-ld:FloodMonitoring:t:1"]}],
        "points": [{"slug": "a", "name": "Pont a", "catchment": "a", "lon": 4.34, "lat": 43.83,
                    "insee_code": "30189", "commune": "Nîmes", "postal_code": "30000",
                    "thresholds": {"yellow_m3s": 3.0, "orange_m3s": 6.0, "red_m3s": 10.0}}]})


class FakeClient:
    """A ContextClient without a broker: ``down`` makes every call fail as a lost connection;
    ``no_null_deletion`` refuses a merge that deletes with NGSI-LD null (as some brokers do)."""

    def __init__(self, *, down: bool = False, no_null_deletion: bool = False) -> None:
        self.down = down
        self.no_null_deletion = no_null_deletion
        self.merged: list[tuple[str, Entity]] = []
        self.created: list[Entity] = []

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("GET http://broker: ClientConnectorError")

    async def create_entity(self, entity: Entity) -> None:
        self._check()
        self.created.append(entity)

    async def get_entity(self, entity_id: str, *, options: str | None = None,
                         attrs: str | None = None) -> Entity:
        self._check()
        raise ResourceNotFound(f"{entity_id} does not exist")

    async def query_entities(self, **params: Any) -> list[Entity]:
        self._check()
        return []

    async def upsert_entities(self, entities: list[Entity]) -> dict[str, Any]:
        self._check()
        return {"success": [e["id"] for e in entities], "errors": []}

    async def merge_entity(self, entity_id: str, fragment: Entity) -> None:
        self._check()
        if self.no_null_deletion and NULL in fragment.values():
            raise BadRequestData("null is not a value")
        if not any(e == entity_id for e, _ in self.merged) and \
                not any(c["id"] == entity_id for c in self.created):
            raise ResourceNotFound(f"{entity_id} does not exist")
        self.merged.append((entity_id, fragment))

    async def merge_entities(self, entities: list[Entity]) -> dict[str, Any]:
        self._check()
        return {"success": [], "errors": []}

    async def update_attribute(self, entity_id: str, attribute: str, fragment: Any) -> None:
        self._check()

    async def delete_entity(self, entity_id: str) -> None:
        self._check()

    def with_context(self, context: str) -> FakeClient:
        return self

    async def close(self) -> None:
        return None


class BrokenRadar:
    def frames(self, until: datetime, count: int) -> list[RadarFrame]:
        raise OSError("radar feed unreachable")


async def test_a_broker_that_is_down_is_one_failure_per_source() -> None:
    client = FakeClient(down=True)
    coordinator = FloodCoordinator(client, config())
    with pytest.raises(FloodUpdateFailed, match="lecture des capteurs impossible") as caught:
        await coordinator.read_gauges(client, ["urn:ngsi-ld:WeatherObserved:t:1"], "precipitation")
    assert isinstance(caught.value.__cause__, ConnectionError)
    with pytest.raises(FloodUpdateFailed) as caught:
        await coordinator.upsert(client, {"id": "urn:ngsi-ld:Alert:x", "type": "Alert"})
    assert isinstance(caught.value.__cause__, ConnectionError)

    report = await coordinator.run_cycle(NOW)  # the cycle still runs, and says what failed
    assert any(e.startswith("lecture des capteurs impossible") for e in report.errors)
    assert any(e.startswith("écriture a :") for e in report.errors)
    point = report.points["a"]
    assert not point.written and point.confidence < 1
    assert any("absent" in issue for issue in point.issues)


async def test_a_failing_radar_lowers_confidence_and_the_cycle_writes() -> None:
    client = FakeClient()
    coordinator = FloodCoordinator(client, config(), BrokenRadar())
    report = await coordinator.run_cycle(NOW)
    assert report.errors == ["radar indisponible : radar feed unreachable"]
    point = report.points["a"]
    assert point.written and "radar indisponible : radar feed unreachable" in point.issues
    assert [c["id"] for c in client.created] == ["urn:ngsi-ld:FloodMonitoring:nimes:point:a"]


async def test_a_reopened_alert_without_null_deletion_is_written_without_validto() -> None:
    client = FakeClient(no_null_deletion=True)
    coordinator = FloodCoordinator(client, config())
    alert_id = "urn:ngsi-ld:Alert:flood:a"
    client.created.append({"id": alert_id, "type": "Alert"})  # a closed alert exists
    coordinator.state.alert_levels["a"] = "green"
    # a storm: 60 mm in the hour and a high water level
    stamp = (NOW - timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")

    async def storm(**params: Any) -> list[Entity]:
        if "precipitation" in (params.get("attrs") or ""):
            return [{"id": "urn:ngsi-ld:WeatherObserved:t:1", "type": "WeatherObserved",
                     "precipitation": {"type": "Property", "value": 60.0,
                                       "observedAt": stamp}}]
        return [{"id": "urn:ngsi-ld:FloodMonitoring:t:1", "type": "FloodMonitoring",
                 "currentLevel": {"type": "Property", "value": 2.5, "observedAt": stamp}}]

    client.query_entities = storm  # type: ignore[method-assign]
    report = await coordinator.run_cycle(NOW)
    assert report.errors == [] and report.points["a"].level != "green"
    alert_writes = [fragment for entity_id, fragment in client.merged if entity_id == alert_id]
    assert alert_writes[-1]["vigilanceLevel"]["value"] == report.points["a"].level
    assert "validTo" not in alert_writes[-1] and "validFrom" in alert_writes[-1]
    assert coordinator.state.alert_levels["a"] == report.points["a"].level


async def test_a_bug_is_not_a_source_failure_and_the_run_loop_survives_it(
        caplog: pytest.LogCaptureFixture) -> None:
    app = FloodApp(FakeClient(), config(), cycle_interval_s=0.01)
    cycles = 0

    def bug(*args: Any, **kwargs: Any) -> None:
        nonlocal cycles
        cycles += 1
        raise RuntimeError("a bug in the model code")

    app.state.forecasters["a"].step = bug  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="a bug in the model code"):
        await app.run_cycle(NOW)
    app.start()
    await asyncio.wait_for(app.cycle_done.wait(), timeout=10)
    app.cycle_done.clear()
    await asyncio.wait_for(app.cycle_done.wait(), timeout=10)  # and the next one runs
    await app.close()
    assert app.task is not None and app.task.done() and cycles >= 3
    assert "flood cycle failed" in caplog.text
