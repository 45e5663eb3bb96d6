"""The public portal in Chromium: click the Gard, search "nimes", read its weather and alerts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cityvisor.config import Settings
from cityvisor.sim.weather import OccitanieWeather

ALERT_CONTEXT = "https://raw.githubusercontent.com/smart-data-models/dataModel.Alert/master/context.jsonld"
NOW = datetime.now(UTC).replace(microsecond=0)


def _p(value: Any) -> dict[str, Any]:
    return {"type": "Property", "value": value}


def _at(t: datetime) -> dict[str, Any]:
    return _p({"@type": "DateTime", "@value": t.strftime("%Y-%m-%dT%H:%M:%SZ")})


def flood_alert(slug: str, *, visibility: str, description: str) -> dict[str, Any]:
    """A flood warning as the flood app writes it (docs/data-contracts.md)."""
    return {
        "id": f"urn:ngsi-ld:Alert:flood:{slug}", "type": "Alert",
        "category": _p("weather"), "subCategory": _p("flood"), "severity": _p("high"),
        "vigilanceLevel": _p("orange"), "description": _p(description),
        "dateIssued": _at(NOW - timedelta(minutes=20)), "validFrom": _at(NOW - timedelta(minutes=20)),
        "location": {"type": "GeoProperty", "value": {"type": "Point", "coordinates": [4.372, 43.826]}},
        "address": _p({"addressLocality": "Nîmes", "addressRegion": "Occitanie",
                       "addressCountry": "FR", "postalCode": "30000"}),
        "inseeCode": _p("30189"), "domain": _p("flood"), "visibility": _p(visibility),
        "workflowState": _p("acknowledged"),
        "lastAction": {"type": "Property", "observedAt": NOW.strftime("%Y-%m-%dT%H:%M:%SZ"),
                       "value": {"action": "acknowledge", "actor": "agent.dupont",
                                 "comment": "Équipe terrain prévenue"}},
    }


async def seed(services: Any) -> None:
    weather = OccitanieWeather(seed=7, only=None, forecast_days=3)
    gard = [c.code for c in weather.communes if c.departement == "30"]
    weather = OccitanieWeather(seed=7, only=gard, forecast_days=3)
    for context, entities in weather.initial(NOW):
        result = await services.broker.batch_upsert("nimes", context, entities)
        assert not result.errors
    alerts = [flood_alert("cadereau-uzes", visibility="public",
                          description="Crue rapide du cadereau d'Uzès : évitez les berges."),
              flood_alert("internal", visibility="internal",
                          description="NOTE INTERNE — ne pas diffuser")]
    result = await services.broker.batch_upsert("nimes", [ALERT_CONTEXT], alerts)
    assert not result.errors


@pytest.fixture(scope="module")
def portal(web: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data = Path(tmp_path_factory.mktemp("portal")) / "data"
    settings = Settings(data_dir=data, auth=False, allow_context_fetch=False)
    with web.live_server(settings) as server:
        server.call(seed)
        yield server


def _open(page: Any, url: str) -> list[str]:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    return errors


def test_click_the_gard_and_see_its_communes(portal: Any, browser_page: Any, web: Any) -> None:
    page = browser_page
    errors = _open(page, portal.url + "/")
    page.wait_for_function("() => window.portal.map.loaded()")
    # the overview lists the active public alerts of the region (and only those)
    summary = page.locator("[data-testid=region-alert]")
    assert summary.count() == 1 and "Nîmes" in summary.inner_text()
    web.screenshot(page, "public-portal-occitanie")
    # Alès, in the Gard: where is it on screen?
    x, y = page.evaluate("(() => { const p = window.portal.map.project([4.08, 44.13]);"
                         " return [p.x, p.y]; })()")
    box = page.locator("#map canvas").bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_selector("#departement-view:not([hidden])")
    assert page.locator("#departement-name").inner_text() == "Gard (30)"
    assert page.locator("#departement-info").inner_text().startswith("353 communes")
    assert page.evaluate("window.portal.state.communeCount") == 353
    assert "Nîmes" in page.locator("#departement-alerts").inner_text()  # the Gard's alerts
    # the communes are drawn: once the zoom has settled, features render under Nîmes
    page.wait_for_function("() => !window.portal.map.isMoving() && window.portal.map.loaded()")
    rendered = page.evaluate("window.portal.map.queryRenderedFeatures("
                             "{layers: ['communes-fill']}).map(f => f.properties.nom)")
    assert "Nîmes" in rendered and len(set(rendered)) > 300
    # communes are coloured by their current temperature
    coloured = page.evaluate("Object.keys(window.portal.state.weather).length")
    assert coloured == 353
    web.screenshot(page, "public-portal-gard")
    assert errors == []


def test_search_nimes_and_see_its_weather_and_alerts(portal: Any, browser_page: Any,
                                                     web: Any) -> None:
    page = browser_page
    errors = _open(page, portal.url + "/")
    page.fill("#search", "nimes")
    option = page.locator("#suggestions li", has_text="Nîmes").first
    option.wait_for()
    assert "Gard (30)" in option.inner_text()
    option.click()
    page.wait_for_selector("#commune-view:not([hidden])")
    assert page.locator("#commune-name").inner_text() == "Nîmes"
    temperature = page.locator("[data-testid=weather-temperature]").inner_text()
    assert temperature.endswith("°C") and any(ch.isdigit() for ch in temperature)
    assert page.locator("[data-testid=forecast-day]").count() == 3
    alert = page.locator("[data-testid=alert]")
    assert alert.count() == 1
    text = alert.inner_text()
    assert "Crue" in text and "cadereau d'Uzès" in text and "Vigilance orange" in text
    body = page.locator("body").inner_text()
    assert "NOTE INTERNE" not in body and "agent.dupont" not in body
    assert "données simulées" in body
    page.wait_for_function("() => !window.portal.map.isMoving()")
    web.screenshot(page, "public-portal-nimes")
    # accents and case do not matter, Enter takes the first suggestion
    page.fill("#search", "SAINT-gely")
    page.locator("#suggestions li", has_text="Saint-Gély-du-Fesc").first.wait_for()
    page.press("#search", "Enter")
    page.wait_for_function("() => document.getElementById('commune-name').textContent"
                           " === 'Saint-Gély-du-Fesc'")
    assert page.locator("[data-testid=no-alert]").is_visible()
    assert errors == []


def test_phone_sized_screen(portal: Any, chromium: Any, web: Any) -> None:
    context = chromium.new_context(locale="fr-FR", timezone_id="Europe/Paris",
                                   viewport={"width": 390, "height": 844},
                                   device_scale_factor=2, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        errors = _open(page, portal.url + "/")
        # "locate me": the phone says it stands by the Maison Carrée
        context.grant_permissions(["geolocation"])
        context.set_geolocation({"longitude": 4.3561, "latitude": 43.8383})
        page.click("#locate")
        page.wait_for_selector("#commune-view:not([hidden])")
        assert page.locator("#commune-name").inner_text() == "Nîmes"
        assert page.locator("#search").is_visible()
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page scrolls sideways ({width} px)"
        for selector in ("#map", "#panel", "[data-testid=alert]"):
            box = page.locator(selector).bounding_box()
            assert box and box["x"] >= 0 and box["x"] + box["width"] <= 391, selector
        page.wait_for_function("() => !window.portal.map.isMoving()")
        web.screenshot(page, "public-portal-phone")
        assert errors == []
    finally:
        context.close()


def test_english_is_available_and_remembered(portal: Any, browser_page: Any, web: Any) -> None:
    page = browser_page
    errors = _open(page, portal.url + "/#commune=30189")
    page.wait_for_selector("#commune-view:not([hidden])")
    assert page.locator("#commune-view h3").first.inner_text() == "Alertes en cours"
    page.click("#language")
    page.wait_for_function("() => document.documentElement.lang === 'en'")
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_selector("#commune-view:not([hidden])")
    headings = page.locator("#commune-view h3").all_inner_texts()
    assert headings[:3] == ["Current alerts", "Current weather", "Forecast"]
    assert "Orange warning" in page.locator("[data-testid=alert]").inner_text()
    assert page.locator("#search").get_attribute("placeholder").startswith("Search for a town")
    page.wait_for_function("() => !window.portal.map.isMoving()")
    web.screenshot(page, "public-portal-english")
    page.goto(portal.url + "/")  # the choice is kept
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#welcome p").first.inner_text().startswith("Tap a département")
    page.click("#language")
    page.wait_for_function("() => document.documentElement.lang === 'fr'")
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#welcome p").first.inner_text().startswith("Touchez un département")
    assert errors == []
