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
    assert core and core[0]["kind"] == "Cached"  # clause 5.13.1: downloaded, never created
    assert core[0]["localId"] == "core" and core[0]["createdAt"].endswith("Z")


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
    assert details[0]["createdAt"].endswith("Z")

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
    # clause 5.13.2.4: not an object with an @context member -> not an Add @context request
    for body in ({"terms": {}}, [1, 2]):
        problem(client.post(f"{BASE}/jsonldContexts", json=body), 400, "InvalidRequest")
    # an @context value that is not JSON-LD (clause 5.5.4) -> BadRequestData, nothing stored
    for body in ({"@context": 42}, {"@context": True}, {"@context": ["https://x.example/c", 7]},
                 {"@context": [None]}):
        response = client.post(f"{BASE}/jsonldContexts", json=body)
        problem(response, 400, "BadRequestData")
        assert "location" not in response.headers
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
        assert [d["URL"] for d in listed] == [CORE, url]


def test_cli_preload_rejects_a_non_context(tmp_path: Path) -> None:
    document = tmp_path / "bad.json"
    document.write_text(json.dumps({"terms": {}}), encoding="utf-8")
    result = CliRunner().invoke(cli_app, ["context", "preload", "https://x.example/c.jsonld",
                                          str(document), "--data-dir", str(tmp_path / "d")])
    assert result.exit_code == 2


def test_list_kind_must_be_a_known_kind(client: TestClient) -> None:  # clause 5.13.3
    for params in ({"kind": "other"}, {"details": "true", "kind": "other"},
                   {"details": "other", "kind": "Hosted"}):
        problem(client.get(f"{BASE}/jsonldContexts", params=params), 400, "BadRequestData")
    for kind in ("Hosted", "Cached", "ImplicitlyCreated"):
        assert client.get(f"{BASE}/jsonldContexts", params={"kind": kind}).status_code == 200


def test_serve_with_details_gives_the_context_info(client: TestClient) -> None:  # 5.13.4
    url = host(client)
    local_id = url.rsplit("/", 1)[-1]
    for context_id in (local_id, quote(url, safe="")):
        response = client.get(f"{BASE}/jsonldContexts/{context_id}", params={"details": "true"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        info = response.json()
        assert set(info) == {"URL", "localId", "kind", "createdAt"}
        assert (info["URL"], info["localId"], info["kind"]) == (url, local_id, "Hosted")
    core = quote("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld", safe="")
    info = client.get(f"{BASE}/jsonldContexts/{core}", params={"details": "true"}).json()
    assert (info["URL"], info["kind"]) == (CORE, "Cached")
    problem(client.get(f"{BASE}/jsonldContexts/nothere", params={"details": "true"}), 404,
            "ResourceNotFound")


def test_only_a_cached_context_can_be_reloaded(client: TestClient) -> None:  # 5.13.5
    local_id = host(client).rsplit("/", 1)[-1]
    response = client.delete(f"{BASE}/jsonldContexts/{local_id}", params={"reload": "true"})
    problem(response, 400, "BadRequestData")
    assert client.get(f"{BASE}/jsonldContexts/{local_id}").status_code == 200  # still there
    problem(client.delete(f"{BASE}/jsonldContexts/{local_id}", params={"reload": "maybe"}), 400,
            "BadRequestData")


def test_reloading_the_core_context_reinstates_the_bundled_copy(client: TestClient) -> None:
    core = quote("https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld", safe="")
    response = client.delete(f"{BASE}/jsonldContexts/{core}", params={"reload": "true"})
    assert response.status_code == 204, response.text
    assert client.get(f"{BASE}/jsonldContexts/core").json()["@context"]
    problem(client.delete(f"{BASE}/jsonldContexts/{core}"), 400, "BadRequestData")


def test_reloading_a_cached_context_offline_keeps_it(tmp_path: Path) -> None:  # 5.13.5.4
    url = "https://contexts.example.org/kept.jsonld"
    document = tmp_path / "context.jsonld"
    document.write_text(json.dumps(DOCUMENT), encoding="utf-8")
    data_dir = tmp_path / "offline"
    result = CliRunner().invoke(cli_app, ["context", "preload", url, str(document),
                                          "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    settings = Settings(data_dir=data_dir, auth=False, allow_context_fetch=False)
    with TestClient(create_app(settings, build_services=Services.build),
                    base_url="http://127.0.0.1:1026") as client:
        target = f"{BASE}/jsonldContexts/{quote(url, safe='')}"
        problem(client.delete(target, params={"reload": "true"}), 503, "LdContextNotAvailable")
        assert client.get(target, params={"details": "true"}).json()["kind"] == "Cached"
        assert client.delete(target).status_code == 204
        problem(client.get(target), 404, "ResourceNotFound")


def _subscribe(client: TestClient, context: Any, sub_id: str, **members: Any) -> None:
    body = {"id": sub_id, "type": "Subscription", "entities": [{"type": "ParkingSpot"}],
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}},
            "@context": context, **members}
    response = client.post(f"{BASE}/subscriptions", content=json.dumps(body),
                           headers={"Content-Type": "application/ld+json"})
    assert response.status_code == 201, response.text


def test_subscription_with_a_context_list_creates_an_implicit_context(
        client: TestClient) -> None:  # clause 5.13.1
    first = host(client)
    second = host(client, {"@context": {"colour": EX + "colour"}})
    _subscribe(client, [first, second], "urn:ngsi-ld:Subscription:i1")
    sub = client.get(f"{BASE}/subscriptions/urn:ngsi-ld:Subscription:i1").json()
    implicit = sub["jsonldContext"]
    assert implicit.startswith(f"http://127.0.0.1:1026{BASE}/jsonldContexts/")
    listed = client.get(f"{BASE}/jsonldContexts",
                        params={"details": "true", "kind": "ImplicitlyCreated"}).json()
    assert [d["URL"] for d in listed] == [implicit]
    local_id = listed[0]["localId"]
    assert client.get(implicit.removeprefix("http://127.0.0.1:1026")).json() == {
        "@context": [first, second]}
    # the same @context again: the same implicit context, not a second one
    _subscribe(client, [first, second], "urn:ngsi-ld:Subscription:i2")
    assert client.get(f"{BASE}/subscriptions/urn:ngsi-ld:Subscription:i2").json()[
        "jsonldContext"] == implicit
    assert len(client.get(f"{BASE}/jsonldContexts",
                          params={"kind": "ImplicitlyCreated"}).json()) == 1
    # only a Cached context can be reloaded (clause 5.13.5); an implicit one can be deleted
    problem(client.delete(f"{BASE}/jsonldContexts/{local_id}", params={"reload": "true"}),
            400, "BadRequestData")
    assert client.delete(f"{BASE}/jsonldContexts/{local_id}").status_code == 204
    assert client.get(f"{BASE}/jsonldContexts",
                      params={"kind": "ImplicitlyCreated"}).json() == []


def test_no_implicit_context_for_one_url_an_explicit_one_or_a_refused_subscription(
        client: TestClient) -> None:
    hosted = host(client)
    _subscribe(client, hosted, "urn:ngsi-ld:Subscription:u1")
    _subscribe(client, [hosted, CORE], "urn:ngsi-ld:Subscription:u2")
    _subscribe(client, {"colour": EX + "colour"}, "urn:ngsi-ld:Subscription:u3",
               jsonldContext=hosted)
    body = {"id": "urn:ngsi-ld:Subscription:u4", "type": "Subscription",
            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}},
            "@context": {"colour": EX + "colour"}}  # no entities nor watchedAttributes
    response = client.post(f"{BASE}/subscriptions", content=json.dumps(body),
                           headers={"Content-Type": "application/ld+json"})
    problem(response, 400, "BadRequestData")
    assert client.get(f"{BASE}/jsonldContexts", params={"kind": "ImplicitlyCreated"}).json() == []
    assert "jsonldContext" not in client.get(
        f"{BASE}/subscriptions/urn:ngsi-ld:Subscription:u1").json()
