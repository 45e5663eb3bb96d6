"""Markup in city data is shown as text, never run: the console (alarm description, name,
commune, assignee, comment, operator name) and the public portal (alert description and name).

Two nets: no dialog opens and no element from a payload exists in the DOM (an ``innerHTML``
regression would create the ``<img>`` even where the CSP stops its handler), and the page
reports no CSP violation (an inline handler or script that got in would).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "console"))
from console_seed import ALERTS, alert

from cityvisor.config import Settings

IMG = '<img src=x onerror="window.xss=(window.xss||0)+1;alert(1)">'
SCRIPT = "<script>window.xss=(window.xss||0)+1;alert(2)</script>"
DESCRIPTION = f"Crue {IMG} du cadereau"
NAME = f"Point {SCRIPT}"
COMMUNE = f"Nîmes {IMG}"
COMMENT = f"vu {IMG} </textarea>{SCRIPT}"
ASSIGNEE = f"Équipe <b>crue</b> {IMG}"
OPERATOR = f"Camille {IMG}"
NOW = datetime.now(UTC).replace(microsecond=0)

WATCH = """
window.cspViolations = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


def hostile_alert() -> dict[str, Any]:
    entity = alert("xss", "high", (NOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                   commune=COMMUNE)
    entity["description"] = {"type": "Property", "value": DESCRIPTION}
    entity["name"] = {"type": "Property", "value": NAME}
    entity["visibility"] = {"type": "Property", "value": "public"}
    return entity


@pytest.fixture(scope="module")
def server(web: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("xss") / "data", auth=False,
                        allow_context_fetch=False)
    with web.live_server(settings) as live:

        async def seed(services: Any) -> None:
            result = await services.broker.batch_upsert("nimes", [ALERTS], [hostile_alert()])
            assert not result.errors

        live.call(seed)
        yield live


def watched(page: Any) -> tuple[list[str], list[str]]:
    dialogs: list[str] = []
    errors: list[str] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.add_init_script(WATCH)
    return dialogs, errors


def assert_inert(page: Any, dialogs: list[str]) -> None:
    assert dialogs == []
    assert page.evaluate("window.xss") is None
    assert page.locator("img[src=x]").count() == 0
    assert page.locator("body script").count() == 0
    assert page.locator("b", has_text="crue").count() == 0
    assert page.evaluate("window.cspViolations") == []


def test_console_shows_hostile_alert_data_and_comments_as_text(server: Any, browser_page: Any,
                                                               web: Any) -> None:
    page = browser_page
    dialogs, errors = watched(page)
    page.goto(server.url + "/console/")
    page.wait_for_selector("#signin:not([hidden])")
    page.fill("#signin-name", OPERATOR)
    page.click("#signin-form button[type=submit]")
    page.wait_for_function("() => window.cityvisorConsole.firstPaintMs !== null", timeout=90_000)
    item = page.locator("#alarm-list li[data-id$=':xss']")
    item.wait_for()
    assert DESCRIPTION in item.inner_text() and COMMUNE in item.inner_text()
    item.click()
    panel = page.locator("[data-testid=panel]")
    panel.locator("[data-testid=alarm-actions]").wait_for()
    page.fill("[data-testid=action-assignee]", ASSIGNEE)
    page.fill("[data-testid=action-comment]", COMMENT)
    page.click("[data-testid=alarm-actions] button[data-action=assign]")
    trail = page.locator("[data-testid=audit-trail]")
    trail.locator("li").first.wait_for()
    page.wait_for_function(
        "(text) => document.querySelector('[data-testid=audit-trail]').innerText.includes(text)",
        arg=COMMENT)
    shown = trail.inner_text()
    assert OPERATOR in shown and COMMENT in shown  # the typed name is the actor, as text
    assert DESCRIPTION in panel.inner_text() and NAME in panel.inner_text()
    page.wait_for_selector("#alarm-list li[data-id$=':xss'].state-assigned", state="attached")
    assert OPERATOR in page.locator("#alarm-list li[data-id$=':xss']").inner_text()
    web.screenshot(page, "console-xss-inert")
    assert_inert(page, dialogs)
    assert errors == []


def test_public_portal_shows_hostile_alert_text_literally(server: Any, browser_page: Any,
                                                          web: Any) -> None:
    page = browser_page
    dialogs, errors = watched(page)
    page.goto(server.url + "/#commune=30189")
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    page.wait_for_selector("#commune-view:not([hidden])")
    shown = page.locator("[data-testid=alert]")
    shown.first.wait_for()
    assert DESCRIPTION in shown.first.inner_text()
    page.goto(server.url + "/")  # the region overview lists it too
    page.wait_for_selector("body[data-ready=true]", timeout=30_000)
    page.locator("[data-testid=region-alert]").first.wait_for()
    web.screenshot(page, "public-portal-xss-inert")
    assert_inert(page, dialogs)
    assert errors == []
