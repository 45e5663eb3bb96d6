"""/jsonldContexts (clause 6.30) and @context resolution: hosted, preloaded, unavailable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.testclient import TestClient
from typer.testing import CliRunner

from cityvisor.api.app import create_app
from cityvisor.cli import app as cli_app
from cityvisor.config import Settings
from cityvisor.services import Services

BASE = "/ngsi-ld/v1"
ERR = "https://uri.etsi.org/ngsi-ld/errors/"
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"
DEFAULT = "https://uri.etsi.org/ngsi-ld/default-context/"
EX = "https://example.org/parking#"
LINK_REL = 'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'
DOCUMENT = {"@context": {"ex": EX, "ParkingSpot": "ex:ParkingSpot", "occupied": EX + "occupied",
                         "capacity": {"@id": "ex:capacity"}}}


def link(url: str) -> dict[str, str]:
    return {"Link": f"<{url}>; {LINK_REL}"}


def problem(response, status: int, type_name: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == ERR + type_name
    return body


def host(client: TestClient, document: Any = DOCUMENT) -> str:
    response = client.post(f"{BASE}/jsonldContexts", json=document)
    assert response.status_code == 201, response.text
    return response.headers["location"]


def spot(n: int = 1) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:ParkingSpot:{n}", "type": "ParkingSpot",
            "occupied": {"type": "Property", "value": True},
            "capacity": {"type": "Property", "value": 2},
            "colour": {"type": "Property", "value": "blue"}}


def test_list_contains_the_core_context(client: TestClient) -> None:
    response = client.get(f"{BASE}/jsonldContexts")
    assert response.status_code == 200
    assert CORE in response.json()
    details = client.get(f"{BASE}/jsonldContexts", params={"details": "true"}).json()
    core = [d for d in details if d["URL"] == CORE]
    assert core and core[0]["kind"] == "ImplicitlyCreated"
    assert core[0]["localId"] == "core"


def test_serve_the_core_context(client: TestClient) -> None:
    response = client.get(f"{BASE}/jsonldContexts/core")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/ld+json")
    context = response.json()["@context"]
    assert "Property" in json.dumps(context)


def test_add_get_list_and_delete(client: TestClient) -> None:
    url = host(client)
    assert url.startswith("http://127.0.0.1:1026/ngsi-ld/v1/jsonldContexts/")
    local_id = url.rsplit("/", 1)[-1]
    served = client.get(f"{BASE}/jsonldContexts/{local_id}")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("application/ld+json")
    assert served.json() == DOCUMENT
    assert client.get(url).json() == DOCUMENT  # the Location itself works
    assert url in client.get(f"{BASE}/jsonldContexts").json()
    details = client.get(f"{BASE}/jsonldContexts", params={"details": "true",
                                                           "kind": "Hosted"}).json()
    assert [(d["URL"], d["localId"], d["kind"]) for d in details] == [(url, local_id, "Hosted")]
    assert details[0]["timestamp"]

    response = client.delete(f"{BASE}/jsonldContexts/{local_id}")
    assert response.status_code == 204, response.text
    problem(client.get(f"{BASE}/jsonldContexts/{local_id}"), 404, "ResourceNotFound")
    problem(client.delete(f"{BASE}/jsonldContexts/{local_id}"), 404, "ResourceNotFound")
    assert url not in client.get(f"{BASE}/jsonldContexts").json()


def test_deleting_the_core_context_is_400(client: TestClient) -> None:
    problem(client.delete(f"{BASE}/jsonldContexts/core"), 400, "BadRequestData")
    assert client.get(f"{BASE}/jsonldContexts/core").status_code == 200


def test_unknown_context_is_404(client: TestClient) -> None:
    problem(client.get(f"{BASE}/jsonldContexts/0123456789abcdef"), 404, "ResourceNotFound")


def test_adding_something_that_is_not_a_context_is_400(client: TestClient) -> None:
    for body in ({"terms": {}}, [1, 2], {"@context": 42}):
        problem(client.post(f"{BASE}/jsonldContexts", json=body), 400, "BadRequestData")
    response = client.post(f"{BASE}/jsonldContexts", content=b"{",
                           headers={"Content-Type": "application/json"})
    problem(response, 400, "InvalidRequest")
    assert client.get(f"{BASE}/jsonldContexts").json() == [CORE]


def test_hosted_context_expands_and_compacts_entities(client: TestClient) -> None:
    url = host(client)
    response = client.post(f"{BASE}/entities", json=spot(), headers=link(url))
    assert response.status_code == 201, response.text
    # with the hosted context: short terms back
    response = client.get(f"{BASE}/entities/urn:ngsi-ld:ParkingSpot:1", headers=link(url),
                          params={"options": "keyValues"})
    assert response.status_code == 200
    assert response.json() == {"id": "urn:ngsi-ld:ParkingSpot:1", "type": "ParkingSpot",
                               "occupied": True, "capacity": 2, "colour": "blue"}
    assert url in response.headers["link"]
    # without it: the hosted context's IRIs (terms it does not define use the default vocab)
    body = client.get(f"{BASE}/entities/urn:ngsi-ld:ParkingSpot:1",
                      params={"options": "keyValues"}).json()
    assert body["type"] == EX + "ParkingSpot"
    assert body[EX + "occupied"] is True
    assert body[EX + "capacity"] == 2
    assert body["colour"] == "blue"
    # the type is stored under its IRI
    assert client.get(f"{BASE}/types/" + quote(EX + "ParkingSpot", safe="")).json()["entityCount"] == 1


def test_hosted_context_in_an_ld_json_body(client: TestClient) -> None:
    url = host(client)
    response = client.post(f"{BASE}/entities", json={**spot(2), "@context": url},
                           headers={"Content-Type": "application/ld+json"})
    assert response.status_code == 201, response.text
    response = client.get(f"{BASE}/entities/urn:ngsi-ld:ParkingSpot:2",
                          headers={**link(url), "Accept": "application/ld+json"})
    assert response.status_code == 200
    body = response.json()
    assert body["@context"] == url
    assert body["occupied"]["value"] is True


def test_deleted_context_is_no_longer_resolvable(client: TestClient) -> None:
    url = host(client)
    assert client.post(f"{BASE}/entities", json=spot(), headers=link(url)).status_code == 201
    assert client.delete(f"{BASE}/jsonldContexts/{url.rsplit('/', 1)[-1]}").status_code == 204
    response = client.get(f"{BASE}/entities/urn:ngsi-ld:ParkingSpot:1", headers=link(url))
    problem(response, 503, "LdContextNotAvailable")
    # the entity itself is still there, under its IRIs
    body = client.get(f"{BASE}/entities/urn:ngsi-ld:ParkingSpot:1").json()
    assert body["type"] == EX + "ParkingSpot"


def test_unknown_context_url_with_fetching_disabled_is_503(client: TestClient) -> None:
    response = client.post(f"{BASE}/entities", json=spot(),
                           headers=link("https://example.invalid/context.jsonld"))
    body = problem(response, 503, "LdContextNotAvailable")
    assert "preload" in body["detail"]
    problem(client.get(f"{BASE}/entities/urn:ngsi-ld:ParkingSpot:1"), 404, "ResourceNotFound")


def test_core_context_under_every_published_url(client: TestClient) -> None:
    for version in (3, 6, 8):
        url = f"https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.{version}.jsonld"
        entity = {"id": f"urn:ngsi-ld:Thing:{version}", "type": "Thing",
                  "name": {"type": "Property", "value": "x"}}
        assert client.post(f"{BASE}/entities", json=entity, headers=link(url)).status_code == 201
    assert client.get(f"{BASE}/types/Thing").json()["entityCount"] == 3


def test_cli_preload_then_use_without_fetching(tmp_path: Path) -> None:
    data_dir = tmp_path / "airgap"
    url = "https://contexts.example.org/parking/context.jsonld"
    document = tmp_path / "context.jsonld"
    document.write_text(json.dumps(DOCUMENT), encoding="utf-8")
    result = CliRunner().invoke(cli_app, ["context", "preload", url, str(document),
                                          "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    settings = Settings(data_dir=data_dir, auth=False, allow_context_fetch=False)
    with TestClient(create_app(settings, build_services=Services.build), base_url="http://127.0.0.1:1026") as client:
        response = client.post(f"{BASE}/entities", json=spot(), headers=link(url))
        assert response.status_code == 201, response.text
        body = client.get(f"{BASE}/entities/urn:ngsi-ld:ParkingSpot:1",
                          params={"options": "keyValues"}).json()
        assert body["type"] == EX + "ParkingSpot"
        assert body[EX + "capacity"] == 2
        short = client.get(f"{BASE}/entities/urn:ngsi-ld:ParkingSpot:1", headers=link(url),
                           params={"options": "keyValues"}).json()
        assert short["type"] == "ParkingSpot" and short["capacity"] == 2
        listed = client.get(f"{BASE}/jsonldContexts", params={"details": "true",
                                                              "kind": "Cached"}).json()
        assert [d["URL"] for d in listed] == [url]


def test_cli_preload_rejects_a_non_context(tmp_path: Path) -> None:
    document = tmp_path / "bad.json"
    document.write_text(json.dumps({"terms": {}}), encoding="utf-8")
    result = CliRunner().invoke(cli_app, ["context", "preload", "https://x.example/c.jsonld",
                                          str(document), "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 2
