"""``cityvisor demo`` end to end: a real process serves the city and the city changes over time."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from links import SDM, link

from cityvisor.demo import DEMO_TENANT


def latest_report(api: str) -> str:
    """The most recent ``observedAt`` of the first 1,000 streetlights' power readings."""
    response = httpx.get(f"{api}/entities", params={
        "type": "Streetlight", "attrs": "powerConsumption", "limit": 1000},
        headers={"NGSILD-Tenant": DEMO_TENANT, **link(SDM.format("Streetlighting"))},
        timeout=30)
    assert response.status_code == 200, response.text
    return max(e["powerConsumption"]["observedAt"] for e in response.json())


def test_demo_serves_a_living_city(e2e: Any, tmp_path: Path) -> None:
    port = e2e.free_port()
    data = tmp_path / "demo"
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [e2e.cli, "demo", "--port", str(port), "--data-dir", str(data), "--speed", "30",
             "--report-every", "2"], stdout=out, stderr=subprocess.STDOUT)
    server = e2e.Server(process, port, data, log)
    e2e.servers.append(server)
    e2e.wait_for_health(server, timeout=120)
    first = latest_report(server.api)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.5)  # simulated time runs 30x: reports arrive continuously
        later = latest_report(server.api)
        if later > first:
            break
    assert later > first, server.log_text()
    while "live: lighting" not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.2)  # the first rate line is printed 2 s after start
    while "pending entities written" not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.2)  # the forecasts are written once the server is up
    text = server.log_text()
    assert "Live city (simulated time ×30)" in text and "lighting" in text
    assert "live: lighting" in text
    assert "13455 more entities (weather forecasts)" in text
    assert "live: 13455 of 13455 pending entities written after start-up" in text, text
    forecasts = httpx.get(f"{server.api}/entities", params={
        "type": "WeatherForecast", "count": "true", "limit": 0},
        headers={"NGSILD-Tenant": DEMO_TENANT, **link(SDM.format("Weather"))}, timeout=30)
    assert forecasts.headers["NGSILD-Results-Count"] == "13455", forecasts.text
    server.stop()  # SIGTERM: the live city stops with the server, without a traceback
    assert process.returncode in (0, -15), text
    assert "Traceback" not in server.log_text()


def test_demo_refuses_an_unknown_scenario_at_once(e2e: Any, tmp_path: Path) -> None:
    started = time.monotonic()
    result = e2e.run_cli("demo", "--scenario", "flood-1988", "--data-dir",
                         str(tmp_path / "demo"), timeout=60)
    assert result.returncode == 2, result.stderr
    assert "--scenario must be flood-2014 or none, got 'flood-1988'" in result.stderr
    assert "Loading" not in result.stderr
    assert time.monotonic() - started < 20  # before building or loading anything
