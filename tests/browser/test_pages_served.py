"""The console and the portal are served with a strict CSP, and their npm packages locally."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from cityvisor.config import Settings


def test_pages_and_vendor_files_are_served_locally(web: Any, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", auth=False, allow_context_fetch=False)
    with web.live_server(settings) as server:
        for url in ("/", "/console/"):
            page = httpx.get(server.url + url)
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            csp = page.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "default-src 'none'" not in csp
            assert page.headers["x-frame-options"] == "DENY"
        script = httpx.get(server.url + "/vendor/maplibre-gl.js")
        assert script.status_code == 200, "run `npm ci` in src/cityvisor/console"
        assert script.headers["content-type"].startswith("text/javascript")
        assert httpx.get(server.url + "/vendor/left-pad.js").status_code == 404
        assert httpx.get(server.url + "/static/../assets.py").status_code == 404
        # the API keeps its own locked-down CSP
        api = httpx.get(server.url + "/ngsi-ld/v1/types")
        assert api.headers["content-security-policy"].startswith("default-src 'none'")


def test_pages_render_in_chromium(web: Any, browser_page: Any, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", auth=False, allow_context_fetch=False)
    with web.live_server(settings) as server:
        errors: list[str] = []
        browser_page.on("pageerror", lambda error: errors.append(str(error)))
        browser_page.goto(server.url + "/console/")
        assert browser_page.locator("h1").first.inner_text()
        web.screenshot(browser_page, "console-skeleton")
        assert errors == []
