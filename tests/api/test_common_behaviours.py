"""Behaviours common to every operation (clause 6.3): content negotiation, the Content-Length
precondition, the tenant header, GeoJSON @context placement, and the Context Source identity."""

from __future__ import annotations

import re
from typing import Any

import pytest
from starlette.testclient import TestClient

from cityvisor.api.http import OFFERS, choose_media_type

BASE = "/ngsi-ld/v1"
ERR = "https://uri.etsi.org/ngsi-ld/errors/"
EID = "urn:ngsi-ld:Vehicle:common-1"
WITH_GEO = (*OFFERS, "application/geo+json")


def vehicle(client: TestClient, headers: dict[str, str] | None = None) -> None:
    body = {"id": EID, "type": "Vehicle", "location": {
        "type": "GeoProperty", "value": {"type": "Point", "coordinates": [8.5, 41.2]}}}
    response = client.post(f"{BASE}/entities", json=body, headers=headers or {})
    assert response.status_code == 201, response.text


def problem(response: Any, status: int, type_name: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["type"] == ERR + type_name


# ---------------------------------------------------------------- Accept (6.3.4, RFC 9110)


@pytest.mark.parametrize(("accept", "offers", "chosen"), [
    ("*/*", OFFERS, "application/json"),
    ("application/*", OFFERS, "application/json"),
    ("application/ld+json, application/json", OFFERS, "application/ld+json"),
    ("application/json;q=0, */*", WITH_GEO, "application/ld+json"),
    ("application/json;q=0, application/ld+json", OFFERS, "application/ld+json"),
    ("*/*;q=0.9, application/ld+json;q=0.8", WITH_GEO, "application/json"),
    ("application/ld+json;q=notanumber", OFFERS, "application/ld+json"),
    ("application/ld+json;q=0.5, application/json;q=0.7", OFFERS, "application/json"),
    ("Application/LD+JSON; profile=x", OFFERS, "application/ld+json"),
    ("application/geo+json", OFFERS, None),
    ("application/geo+json", WITH_GEO, "application/geo+json"),
    ("text/html", OFFERS, None),
    ("*/*;q=0", OFFERS, None),
    ("application/json;q=0, application/ld+json;q=0", OFFERS, None),
])
def test_choose_media_type(accept: str, offers: tuple[str, ...], chosen: str | None) -> None:
    assert choose_media_type(accept, offers) == chosen


def test_without_accept_the_answer_is_json(client: TestClient) -> None:
    vehicle(client)
    response = client.get(f"{BASE}/entities/{EID}", headers={"Accept": ""})
    assert response.headers["content-type"].startswith("application/json")
    assert "link" in response.headers


def test_a_zero_weight_wins_over_a_wildcard(client: TestClient) -> None:
    vehicle(client)
    response = client.get(f"{BASE}/entities/{EID}",
                          headers={"Accept": "application/json;q=0, */*"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/ld+json")


def test_geojson_only_where_offered(client: TestClient) -> None:
    """Clause 6.3.4/6.3.7: only Retrieve and Query Entities offer GeoJSON; elsewhere an
    Accept naming only GeoJSON is 406, decided before the resource is looked up."""
    vehicle(client)
    geo = {"Accept": "application/geo+json"}
    assert client.get(f"{BASE}/entities/{EID}", headers=geo).status_code == 200
    assert client.get(f"{BASE}/entities?type=Vehicle", headers=geo).status_code == 200
    for path in (f"{BASE}/subscriptions/urn:ngsi-ld:Subscription:none", f"{BASE}/subscriptions",
                 f"{BASE}/temporal/entities?type=Vehicle&timerel=after&timeAt=2020-08-01T12:05:00Z",
                 f"{BASE}/types"):
        problem(client.get(path, headers=geo), 406, "InvalidRequest")


def test_prefer_body_json_moves_the_geojson_context_to_a_link(client: TestClient) -> None:
    """Clause 6.3.6: with ``Prefer: body=json`` a GeoJSON body carries no @context."""
    vehicle(client)
    geo = {"Accept": "application/geo+json"}
    embedded = client.get(f"{BASE}/entities?type=Vehicle", headers=geo)
    assert "@context" in embedded.json() and "link" not in embedded.headers
    linked = client.get(f"{BASE}/entities?type=Vehicle", headers={**geo, "Prefer": "body=json"})
    assert linked.headers["content-type"].startswith("application/geo+json")
    assert "@context" not in linked.json() and linked.json()["type"] == "FeatureCollection"
    assert "ngsi-ld-core-context" in linked.headers["link"]
    explicit = client.get(f"{BASE}/entities/{EID}", headers={**geo, "Prefer": "body=ld+json"})
    assert "@context" in explicit.json()


# ---------------------------------------------------------------- 411 (6.3.2, 6.3.4)


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/entities"), ("PATCH", f"/entities/{EID}/attrs"), ("PUT", f"/entities/{EID}"),
    ("POST", "/jsonldContexts"), ("POST", "/subscriptions"),
])
def test_a_body_without_content_length_is_a_bare_411(client: TestClient, method: str,
                                                     path: str) -> None:
    body = b'{"id": "urn:ngsi-ld:Building:411", "type": "Building"}'
    response = client.request(method, BASE + path, content=iter([body]),  # chunked
                              headers={"Content-Type": "application/json",
                                       "NGSILD-Tenant": "nosuchtenant"})
    assert response.status_code == 411
    assert response.content == b""
    assert client.get(f"{BASE}/entities/urn:ngsi-ld:Building:411").status_code == 404


def test_a_get_needs_no_content_length(client: TestClient) -> None:
    assert client.get(f"{BASE}/entities?type=Building").status_code == 200


# ---------------------------------------------------------------- tenants (6.3.14, 5.5.10)


def test_the_tenant_is_echoed_on_answers_and_errors(client: TestClient) -> None:
    tenant = {"NGSILD-Tenant": "tenant-echo"}
    response = client.get(f"{BASE}/entities?type=Vehicle", headers=tenant)
    problem(response, 404, "NonexistentTenant")
    assert response.headers["NGSILD-Tenant"] == "tenant-echo"
    created = client.post(f"{BASE}/entities", json={"id": EID, "type": "Vehicle"}, headers=tenant)
    assert created.status_code == 201 and created.headers["NGSILD-Tenant"] == "tenant-echo"
    found = client.get(f"{BASE}/entities/{EID}", headers=tenant)
    assert found.status_code == 200 and found.headers["NGSILD-Tenant"] == "tenant-echo"
    assert "ngsild-tenant" not in client.get(f"{BASE}/entities?type=Vehicle").headers
    bad = client.get(f"{BASE}/entities?type=Vehicle", headers={"NGSILD-Tenant": "no spaces"})
    problem(bad, 400, "BadRequestData")
    assert "ngsild-tenant" not in bad.headers


# ---------------------------------------------------------------- identity (5.15.1, 5.2.40)

DURATION = re.compile(r"^P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?!$)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$")
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$")


def identity(client: TestClient, tenant: str | None = None) -> dict[str, Any]:
    headers = {"NGSILD-Tenant": tenant} if tenant else {}
    response = client.get(f"{BASE}/info/sourceIdentity", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    return response.json()  # type: ignore[no-any-return]


def test_source_identity_carries_the_mandatory_members(client: TestClient) -> None:
    body = identity(client)
    assert body["type"] == "ContextSourceIdentity" and body["id"].startswith("urn:")
    assert body["contextSourceAlias"]
    assert DURATION.match(body["contextSourceUptime"]), body["contextSourceUptime"]
    assert DATETIME.match(body["contextSourceTimeAt"]), body["contextSourceTimeAt"]


def test_source_alias_identifies_the_tenant(client: TestClient) -> None:
    default, a, b = identity(client), identity(client, "alias-a"), identity(client, "alias-b")
    aliases = {default["contextSourceAlias"], a["contextSourceAlias"], b["contextSourceAlias"]}
    assert len(aliases) == 3
    assert identity(client, "alias-a")["contextSourceAlias"] == a["contextSourceAlias"]
