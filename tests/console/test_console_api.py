"""The console API: sign-in and roles, layers, geography, alarm workflow, flood view."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from console_seed import (
    ALERTS,
    ENVIRONMENT,
    LIGHTS,
    alert,
    console_server,
    streetlights,
    warning_point,
)
from links import link
from starlette.testclient import TestClient

from cityvisor.config import Settings
from cityvisor.console import alarms
from cityvisor.services import Services
from cityvisor.web import create_web_app

TENANT = {"NGSILD-Tenant": "nimes"}


def upsert(client: TestClient, context: str, entities: list[dict[str, Any]],
           headers: dict[str, str] | None = None) -> None:
    response = client.post("/ngsi-ld/v1/entityOperations/upsert", json=entities,
                           headers={**link(context), **TENANT, **(headers or {})})
    assert response.status_code in (201, 204), response.text


class Secure:
    def __init__(self, client: TestClient, services: Services) -> None:
        self.client = client
        self.services = services
        assert services.tokens is not None
        self.reader = {"Authorization": "Bearer " + client.portal.call(services.tokens.create, "reader", "*", "lecteur")[0]}
        self.writer = {"Authorization": "Bearer " + client.portal.call(services.tokens.create, "writer", "*", "Alice Martin")[0]}
        self.other_tenant = {"Authorization": "Bearer " + client.portal.call(services.tokens.create, "writer", "ales", "ales")[0]}


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[Secure]:
    with console_server(tmp_path / "data", auth=True) as (client, services):
        yield Secure(client, services)


@pytest.fixture
def open_client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path / "open", auth=False, allow_context_fetch=False)
    with TestClient(create_web_app(settings), base_url="http://127.0.0.1:1026") as client:
        yield client


def test_mode_says_whether_a_token_is_needed(secure: Secure, open_client: TestClient) -> None:
    assert secure.client.get("/console/api/mode").json()["auth"] is True
    assert open_client.get("/console/api/mode").json()["auth"] is False


def test_session_needs_a_valid_token_and_reports_the_principal(secure: Secure) -> None:
    client = secure.client
    missing = client.get("/console/api/session")
    assert missing.status_code == 401 and "bearer token" in missing.json()["detail"]
    assert client.get("/console/api/session", headers={"Authorization": "Bearer cvt_x_y"}).status_code == 401
    me = client.get("/console/api/session", headers=secure.writer).json()
    assert me["actor"].startswith("Alice Martin") and me["role"] == "writer"
    assert me["tenant"] == "nimes" and me["mode"] == "token" and me["canAct"] is True
    assert client.get("/console/api/session", headers=secure.reader).json()["canAct"] is False
    # a token bound to another tenant gets that tenant, and may not read nimes
    assert client.get("/console/api/session", headers=secure.other_tenant).json()["tenant"] == "ales"
    refused = client.get("/console/api/layers/streetlights", headers={**secure.other_tenant, **TENANT})
    assert refused.status_code == 403


def test_streetlight_layer_is_styled_by_state(secure: Secure) -> None:
    upsert(secure.client, LIGHTS, streetlights(), secure.writer)
    response = secure.client.get("/console/api/layers/streetlights", headers=secure.reader)
    assert response.status_code == 200
    layer = response.json()
    assert layer["count"] == 4 and layer["type"] == "Streetlight"
    states = dict(zip(layer["ids"], layer["state"], strict=True))
    assert [states[f"urn:ngsi-ld:Streetlight:test:{i}"] for i in range(1, 5)] == [
        "on", "dimmed", "off", "faulty"]
    assert layer["lon"][0] == pytest.approx(4.36) and layer["lat"][0] == pytest.approx(43.84)
    assert "build;dur=" in response.headers["server-timing"]
    empty = secure.client.get("/console/api/layers/cameras", headers=secure.reader).json()
    assert empty["count"] == 0 and empty["ids"] == []
    many = [{**light, "id": f"urn:ngsi-ld:Streetlight:bulk:{i}"}
            for i, light in enumerate(streetlights() * 50)]
    upsert(secure.client, LIGHTS, many, secure.writer)
    big = secure.client.get("/console/api/layers/streetlights",
                            headers={**secure.reader, "Accept-Encoding": "gzip"})
    assert big.headers["content-encoding"] == "gzip" and big.json()["count"] == 204
    unknown = secure.client.get("/console/api/layers/dragons", headers=secure.reader)
    assert unknown.status_code == 404 and "streetlights" in unknown.json()["detail"]
    assert secure.client.get("/console/api/layers/streetlights").status_code == 401


def test_geography_is_served_from_bundled_files(secure: Secure) -> None:
    communes = secure.client.get("/console/api/geo/communes", headers=secure.reader)
    assert communes.status_code == 200
    names = {f["properties"]["nom"] for f in communes.json()["features"]}
    assert len(names) == 39 and "Nîmes" in names
    assert secure.client.get("/console/api/geo/departements", headers=secure.reader).status_code == 200
    assert secure.client.get("/console/api/geo/../../x", headers=secure.reader).status_code == 404
    assert secure.client.get("/console/api/geo/mars", headers=secure.reader).status_code == 404


def _seed_alerts(secure: Secure) -> None:
    upsert(secure.client, ALERTS, [
        alert("old-high", "high", "2026-11-27T08:00:00Z"),
        alert("new-critical", "critical", "2026-11-27T09:30:00Z"),
        alert("old-critical", "critical", "2026-11-27T09:00:00Z"),
        alert("light", "medium", "2026-11-27T07:00:00Z", domain="lighting", commune="Milhaud",
              insee="30169", state=None),
    ], secure.writer)


def test_alerts_by_severity_then_age_with_filters(secure: Secure) -> None:
    _seed_alerts(secure)
    listed = secure.client.get("/console/api/alerts", headers=secure.reader).json()
    assert [a["id"].rsplit(":", 1)[-1] for a in listed["alerts"]] == [
        "old-critical", "new-critical", "old-high", "light"]
    assert listed["alerts"][3]["workflowState"] == "new"  # absent means new
    by_domain = secure.client.get("/console/api/alerts?domain=lighting", headers=secure.reader).json()
    assert [a["commune"] for a in by_domain["alerts"]] == ["Milhaud"]
    by_commune = secure.client.get("/console/api/alerts?commune=30169", headers=secure.reader).json()
    assert by_commune["count"] == 1
    by_name = secure.client.get("/console/api/alerts?commune=Nîmes", headers=secure.reader).json()
    assert by_name["count"] == 3
    # an alert with only an address is found by its commune's INSEE code, and the reverse
    upsert(secure.client, ALERTS, [alert("addr", "low", "2026-11-27T07:00:00Z", commune="Milhaud",
                                         insee=None)], secure.writer)
    assert secure.client.get("/console/api/alerts?commune=30169",
                             headers=secure.reader).json()["count"] == 2
    assert secure.client.get("/console/api/alerts?commune=Milhaud",
                             headers=secure.reader).json()["count"] == 2
    bad = secure.client.get("/console/api/alerts?state=sleeping", headers=secure.reader)
    assert bad.status_code == 400


def act(secure: Secure, slug: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return secure.client.post(f"/console/api/alerts/urn:ngsi-ld:Alert:test:{slug}/actions",
                              json=body, headers=headers or secure.writer)


def test_alarm_lifecycle_records_who_when_and_why(secure: Secure) -> None:
    _seed_alerts(secure)
    assert act(secure, "old-critical", {"action": "acknowledge"}, secure.reader).status_code == 403
    # the actor is the signed-in principal: a body naming one is refused, not half-obeyed
    spoofed = act(secure, "old-critical", {"action": "acknowledge", "actor": "someone else"})
    assert spoofed.status_code == 400 and "actor" in spoofed.json()["detail"]
    done = act(secure, "old-critical", {"action": "acknowledge", "comment": "vu"})
    assert done.status_code == 200, done.text
    acknowledged = done.json()
    assert acknowledged["workflowState"] == "acknowledged"
    assert acknowledged["lastAction"]["actor"].startswith("Alice Martin")  # never the body's
    assert acknowledged["lastAction"]["comment"] == "vu" and acknowledged["lastAction"]["at"]
    again = act(secure, "old-critical", {"action": "acknowledge"})
    assert again.status_code == 409 and "acknowledged" in again.json()["detail"]
    assert act(secure, "old-critical", {"action": "resolve"}).status_code == 400  # needs a why
    assert act(secure, "old-critical", {"action": "assign"}).status_code == 400  # needs a who
    assigned = act(secure, "old-critical", {"action": "assign", "assignee": "Équipe crue"}).json()
    assert assigned["workflowState"] == "assigned" and assigned["assignee"] == "Équipe crue"
    resolved = act(secure, "old-critical", {"action": "resolve", "comment": "décrue"}).json()
    assert resolved["workflowState"] == "resolved"
    assert act(secure, "old-critical", {"action": "close"}).json()["workflowState"] == "closed"
    assert act(secure, "old-critical", {"action": "fly"}).status_code == 400
    open_ids = [a["id"] for a in secure.client.get("/console/api/alerts", headers=secure.reader).json()["alerts"]]
    assert "urn:ngsi-ld:Alert:test:old-critical" not in open_ids
    history = secure.client.get("/console/api/alerts/urn:ngsi-ld:Alert:test:old-critical/history",
                                headers=secure.reader).json()["actions"]
    assert [a["action"] for a in history] == ["acknowledge", "assign", "resolve", "close"]
    assert history[2]["comment"] == "décrue" and all(a["actor"].startswith("Alice") for a in history)
    # the audit trail is in the temporal API too
    temporal = secure.client.get(
        "/ngsi-ld/v1/temporal/entities/urn:ngsi-ld:Alert:test:old-critical?attrs=lastAction",
        headers={**secure.reader, **TENANT, **link(ALERTS)}).json()
    assert len(temporal["lastAction"]) == 4
    missing = act(secure, "nope", {"action": "acknowledge"})
    assert missing.status_code == 404


def test_shelving_expires_back_to_the_previous_state(secure: Secure) -> None:
    _seed_alerts(secure)
    act(secure, "old-high", {"action": "acknowledge"})
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    assert act(secure, "old-high", {"action": "shelve", "comment": "x", "shelvedUntil": past}).status_code == 400
    assert act(secure, "old-high", {"action": "shelve", "comment": "x",
                                    "shelvedUntil": "demain"}).status_code == 400
    until = datetime.now(UTC) + timedelta(minutes=30)
    shelved = act(secure, "old-high", {"action": "shelve", "comment": "travaux en cours",
                                       "shelvedUntil": until.isoformat()}).json()
    assert shelved["workflowState"] == "shelved" and shelved["shelvedUntil"].startswith(
        until.strftime("%Y-%m-%dT%H:%M"))
    services = secure.services
    portal = secure.client.portal  # the app's event loop
    assert portal is not None
    assert portal.call(alarms.expire_shelving, services, "nimes") == 0
    later = until + timedelta(seconds=1)
    returned = portal.call(alarms.expire_shelving, services, "nimes", later)
    assert returned == 1
    back = [a for a in secure.client.get("/console/api/alerts", headers=secure.reader).json()["alerts"]
            if a["id"].endswith("old-high")][0]
    assert back["workflowState"] == "acknowledged" and back["shelvedUntil"] is None
    assert back["lastAction"]["action"] == "unshelve" and back["lastAction"]["actor"] == "système"


def test_open_mode_actor_is_the_typed_name(open_client: TestClient) -> None:
    upsert(open_client, ALERTS, [alert("a", "high", "2026-11-27T08:00:00Z")])
    done = open_client.post("/console/api/alerts/urn:ngsi-ld:Alert:test:a/actions",
                            json={"action": "acknowledge"},
                            headers={"X-Cityvisor-Operator": "%C3%89lodie%20Roux"})
    assert done.status_code == 200
    assert done.json()["lastAction"]["actor"] == "Élodie Roux"
    me = open_client.get("/console/api/session", headers={"X-Cityvisor-Operator": "Paul"}).json()
    assert me["mode"] == "open" and me["actor"] == "Paul"


def test_flood_view_orders_points_by_urgency(open_client: TestClient) -> None:
    upsert(open_client, ENVIRONMENT, [
        warning_point("yellow", "yellow", "2026-11-27T11:00:00Z", 5),
        warning_point("red-late", "red", "2026-11-27T15:00:00Z", 50),
        warning_point("red-soon", "red", "2026-11-27T12:00:00Z", 40),
        warning_point("orange-nopeak", "orange", None, 20),
        warning_point("orange", "orange", "2026-11-27T13:00:00Z", 30),
    ])
    # a demo gauge without vigilanceLevel is not a warning point
    upsert(open_client, ENVIRONMENT, [{"id": "urn:ngsi-ld:FloodMonitoring:nimes:1",
                                       "type": "FloodMonitoring",
                                       "currentLevel": {"type": "Property", "value": 0.4}}])
    points = open_client.get("/console/api/flood").json()["points"]
    assert [p["id"].rsplit(":", 1)[-1] for p in points] == [
        "red-soon", "red-late", "orange", "orange-nopeak", "yellow"]
    first = points[0]
    assert first["forecastPeak"]["peakTime"] == "2026-11-27T12:00:00Z"
    assert first["forecastPeak"]["value"] == 80 and first["trend"] == "rising"
    assert [f["lead"] for f in first["forecast"]] == ["PT1H", "PT2H"]


class TileSettings(Settings):
    """Settings with the console's optional tile server (a field the lead adds to Settings)."""

    console_tile_url: str | None = None


def test_a_configured_tile_server_is_allowed_by_the_page_csp(tmp_path: Path) -> None:
    plain = Settings(data_dir=tmp_path / "plain", auth=False, allow_context_fetch=False)
    with TestClient(create_web_app(plain), base_url="http://127.0.0.1:1026") as client:
        csp = client.get("/console/").headers["content-security-policy"]
        assert "connect-src 'self';" in csp and client.get("/console/api/session").json()["tileUrl"] is None
    tiles = TileSettings(data_dir=tmp_path / "tiles", auth=False, allow_context_fetch=False,
                         console_tile_url="https://tiles.nimes.example/{z}/{x}/{y}.png")
    with TestClient(create_web_app(tiles), base_url="http://127.0.0.1:1026") as client:
        csp = client.get("/console/").headers["content-security-policy"]
        assert "connect-src 'self' https://tiles.nimes.example;" in csp
        assert "img-src 'self' https://tiles.nimes.example " in csp
        assert client.get("/console/api/session").json()["tileUrl"].startswith("https://tiles.")
        assert "tileUrl" not in client.get("/console/api/mode").json()  # signed-in only
