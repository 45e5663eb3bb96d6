"""Console sign-in with bearer tokens (authentication on): refused, reader, writer."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "console"))
from console_seed import ALERTS, LIGHTS, alert, streetlights

from cityvisor.config import Settings


@pytest.fixture(scope="module")
def secure_city(web: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("secure-console") / "data", auth=True,
                        allow_context_fetch=False)
    with web.live_server(settings) as server:

        async def seed(services: Any) -> None:
            await services.broker.batch_upsert("nimes", [LIGHTS], streetlights())
            await services.broker.batch_upsert("nimes", [ALERTS], [
                alert("pont", "high", "2026-11-27T08:00:00Z")])

        server.call(seed)
        def token(role: str, tenant: str, name: str) -> str:
            made = server.call(lambda services: services.tokens.create(role, tenant, name))
            return made[0]  # type: ignore[index, no-any-return]

        server.reader = token("reader", "*", "Lecteur Poste 3")
        server.writer = token("writer", "nimes", "Inès Garcia")
        yield server


def sign_in(page: Any, server: Any, token: str) -> None:
    page.goto(server.url + "/console/")
    page.wait_for_selector("#signin:not([hidden])")
    assert page.locator("#signin-token-row").is_visible()
    assert not page.locator("#signin-open-note").is_visible()
    page.fill("#signin-token", token)
    page.click("#signin-form button[type=submit]")


def test_a_bad_token_is_refused_with_a_clear_message(secure_city: Any, browser_page: Any) -> None:
    sign_in(browser_page, secure_city, "cvt_nope_nope")
    error = browser_page.locator("#signin-error")
    error.wait_for()
    browser_page.wait_for_function(
        "() => document.querySelector('#signin-error').textContent.length > 0")
    assert "Connexion refusée" in error.inner_text() and "unknown or revoked" in error.inner_text()
    assert browser_page.locator("#signin").is_visible()


def test_a_reader_sees_the_map_but_may_not_act(secure_city: Any, browser_page: Any, web: Any) -> None:
    sign_in(browser_page, secure_city, secure_city.reader)
    browser_page.wait_for_function("() => window.cityvisorConsole.firstPaintMs !== null")
    assert browser_page.locator("#operator-name").inner_text().startswith("Lecteur Poste 3")
    assert not browser_page.locator("#mode-badge").is_visible()
    assert browser_page.evaluate(
        "window.cityvisorConsole.map.layers.streetlights.features.length") == 4
    browser_page.click("#alarm-list li[data-id$='pont']")
    panel = browser_page.locator("[data-testid=alarm-actions]")
    panel.wait_for()
    assert "Lecture seule" in panel.inner_text()
    assert panel.locator("button[data-action]").count() == 0
    web.screenshot(browser_page, "console-reader")


def test_a_writer_acts_under_the_token_name(secure_city: Any, browser_page: Any) -> None:
    sign_in(browser_page, secure_city, secure_city.writer)
    browser_page.wait_for_function("() => window.cityvisorConsole.firstPaintMs !== null")
    browser_page.click("#alarm-list li[data-id$='pont']")
    browser_page.click("[data-testid=alarm-actions] button[data-action=acknowledge]")
    trail = browser_page.locator("[data-testid=audit-trail]")
    trail.locator("text=Acquitter par Inès Garcia").wait_for()
    # the token stays in this tab only, and a reload keeps the operator signed in
    browser_page.reload()
    browser_page.wait_for_function("() => window.cityvisorConsole.firstPaintMs !== null")
    assert browser_page.locator("#signin").is_hidden()
