"""The operator console in Chromium, on the whole demo city (loaded once for this module)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "console"))
from console_seed import ALERTS, ENVIRONMENT, LIGHTS, alert, warning_point

from cityvisor.config import Settings
from cityvisor.demo import load_demo_city

OPERATOR = "Camille Durand"
LAMP = "urn:ngsi-ld:Streetlight:nimes:1"


@pytest.fixture(scope="module")
def city(web: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("console") / "data", auth=False,
                        allow_context_fetch=False)
    with web.live_server(settings) as server:
        server.call(load_demo_city, timeout=180)

        async def seed(services: Any) -> None:
            broker = services.broker
            for level, watts in ((0.5, 50.0), (0.8, 80.0), (1.0, 100.0)):
                await broker.update_attributes("nimes", [LIGHTS], LAMP, {
                    "illuminanceLevel": {"type": "Property", "value": level, "unitCode": "C62"},
                    "powerConsumption": {"type": "Property", "value": watts, "unitCode": "WTT"}})
            await broker.batch_upsert("nimes", [ALERTS], [
                alert("digue", "high", "2026-11-27T08:00:00Z"),
                alert("cadereau", "critical", "2026-11-27T09:00:00Z"),
            ])
            await broker.batch_upsert("nimes", [ENVIRONMENT], [
                warning_point("vistre", "orange", "2026-11-27T13:00:00Z", 30),
                warning_point("uzes", "red", "2026-11-27T12:00:00Z", 40),
                warning_point("valdegour", "yellow", "2026-11-27T11:00:00Z", 5),
            ])

        server.call(seed)
        yield server


def signed_in(page: Any, city: Any) -> Any:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(city.url + "/console/")
    page.wait_for_selector("#signin:not([hidden])")
    assert page.locator("#signin-open-note").is_visible()  # demo mode says so
    assert not page.locator("#signin-token-row").is_visible()
    page.fill("#signin-name", OPERATOR)
    page.click("#signin-form button[type=submit]")
    page.wait_for_function("() => window.cityvisorConsole.firstPaintMs !== null", timeout=90_000)
    page.errors = errors
    return page


def test_sign_in_and_all_streetlights_on_the_map(city: Any, browser_page: Any, web: Any) -> None:
    page = signed_in(browser_page, city)
    assert page.locator("#operator-name").inner_text().startswith(OPERATOR)
    assert page.locator("#mode-badge").is_visible()
    count = page.evaluate("window.cityvisorConsole.map.layers.streetlights.features.length")
    assert count == 35_000
    rendered = page.evaluate("window.cityvisorConsole.map.map.queryRenderedFeatures("
                             "{layers: ['layer-streetlights']}).length")
    assert rendered > 10_000  # drawn, not only loaded
    legend = page.locator("#legend-list").inner_text()
    assert "Éclairage public (35\u202f000)" in legend  # fr-FR number format
    assert "session" in page.evaluate("Object.keys(sessionStorage).join(',')")
    web.screenshot(page, "console-map")
    page.click("#lang-switch")
    assert page.locator("#tabs button[data-tab=alarms]").inner_text() == "Alarms"
    page.click("#lang-switch")
    assert page.errors == []


def test_toggle_layers_from_the_legend(city: Any, browser_page: Any, web: Any) -> None:
    page = signed_in(browser_page, city)
    visibility = "window.cityvisorConsole.map.map.getLayoutProperty('layer-{}', 'visibility')"
    page.uncheck("[data-testid=toggle-streetlights]")
    assert page.evaluate(visibility.format("streetlights")) == "none"
    page.uncheck("[data-testid=toggle-wasteContainers]")
    assert page.evaluate(visibility.format("wasteContainers")) == "none"
    web.screenshot(page, "console-layers-toggled")
    page.check("[data-testid=toggle-streetlights]")
    assert page.evaluate(visibility.format("streetlights")) == "visible"


def test_click_a_streetlight_and_see_its_chart(city: Any, browser_page: Any, web: Any) -> None:
    page = signed_in(browser_page, city)
    for kind in ("cameras", "wasteContainers", "trafficCounters", "evChargers"):
        page.uncheck(f"[data-testid=toggle-{kind}]")
    page.evaluate(f"""() => new Promise((resolve) => {{
        const m = window.cityvisorConsole.map;
        const f = m.layers.streetlights.features[m.layers.streetlights.index.get('{LAMP}')];
        m.map.jumpTo({{center: f.geometry.coordinates, zoom: 18}});
        m.map.once('idle', resolve);
    }})""")
    point = page.evaluate(f"window.cityvisorConsole.map.screenPoint('streetlights', '{LAMP}')")
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + point["x"], box["y"] + point["y"])
    page.wait_for_selector(f"[data-testid=panel] .entity[data-id='{LAMP}']")
    page.wait_for_selector("[data-testid=charts] .chart[data-attr=powerConsumption] canvas")
    attributes = page.locator("[data-testid=attributes]").inner_text()
    assert "Alimentation" in attributes and "Consommation" in attributes and "W" in attributes
    web.screenshot(page, "console-streetlight-chart")


def test_acknowledge_then_resolve_an_alert(city: Any, browser_page: Any, web: Any) -> None:
    page = signed_in(browser_page, city)
    items = page.locator("#alarm-list li")
    assert items.first.get_attribute("data-id").endswith("cadereau")  # critical first
    page.click("#alarm-list li[data-id$='digue']")
    page.click("[data-testid=alarm-actions] button[data-action=acknowledge]")
    page.wait_for_selector("#alarm-list li[data-id$='digue'].state-acknowledged", state="attached")
    trail = page.locator("[data-testid=audit-trail]")
    trail.locator(f"text=Acquitter par {OPERATOR}").wait_for()
    page.fill("[data-testid=action-comment]", "Digue inspectée, rien à signaler")
    page.click("[data-testid=alarm-actions] button[data-action=resolve]")
    trail.locator(f"text=Résoudre par {OPERATOR}").wait_for()
    assert "Digue inspectée" in trail.inner_text()
    assert page.locator("#alarm-list li[data-id$='digue'] [data-testid=workflow-state]").text_content() == "Résolue"
    web.screenshot(page, "console-alarm-resolved")


def test_live_updates_arrive_without_reload(city: Any, browser_page: Any, web: Any) -> None:
    page = signed_in(browser_page, city)
    page.wait_for_function("() => window.cityvisorConsole.live === true")
    page.evaluate("window.cityvisorConsole.loadedAt = performance.timeOrigin")
    lamp = "urn:ngsi-ld:Streetlight:nimes:2"
    state = (f"(() => {{ const l = window.cityvisorConsole.map.layers.streetlights; "
             f"return l.features[l.index.get('{lamp}')].properties.s; }})()")
    assert page.evaluate(state) != "faulty"

    async def break_lamp(services: Any) -> None:
        await services.broker.update_attribute("nimes", [LIGHTS], lamp, "status",
                                               {"type": "Property", "value": "defectiveLamp"})
        await services.broker.batch_upsert("nimes", [ALERTS], [
            alert("seisme", "critical", "2026-11-27T10:00:00Z", domain="seismic")])

    city.call(break_lamp)
    page.wait_for_function(f"() => {state} === 'faulty'", timeout=10_000)
    page.wait_for_selector("#critical-banner:not([hidden])", timeout=10_000)
    page.wait_for_selector("#alarm-list li[data-id$='seisme']", state="attached", timeout=10_000)
    assert page.evaluate("window.cityvisorConsole.beeps") >= 1
    assert page.evaluate("window.cityvisorConsole.loadedAt === performance.timeOrigin")  # no reload
    web.screenshot(page, "console-live-critical")


def test_flood_crisis_view_orders_points_by_urgency(city: Any, browser_page: Any, web: Any) -> None:
    page = signed_in(browser_page, city)
    page.click("#tabs button[data-tab=crisis]")
    rows = page.locator("#crisis-table tbody tr")
    rows.first.wait_for()
    ids = [rows.nth(i).get_attribute("data-id").rsplit(":", 1)[-1] for i in range(rows.count())]
    assert ids == ["uzes", "vistre", "valdegour"]
    assert "Rouge" in rows.first.inner_text() and "en hausse" in rows.first.inner_text()
    web.screenshot(page, "console-crisis")
    rows.first.click()
    page.wait_for_selector("[data-testid=charts] .chart[data-attr=flow] canvas")
    web.screenshot(page, "console-flood-point")
