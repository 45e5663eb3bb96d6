"""Security by default (ADR 0003): bearer tokens, roles, tenants, revocation, headers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.testclient import TestClient

from cityvisor.config import Settings
from cityvisor.security.tokens import TokenStore
from cityvisor.store.sqlite_system import SqliteSystemStore

BASE = "/ngsi-ld/v1"
ERR = "https://uri.etsi.org/ngsi-ld/errors/"
EXPECTED_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}


def entity(n: int = 1) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:Sensor:{n}", "type": "Sensor",
            "temperature": {"type": "Property", "value": n}}


def tokens(client: TestClient) -> TokenStore:
    store = client.app.app.state.services.tokens  # SecurityHeaders -> Starlette
    assert store is not None
    return store


def create_token(client: TestClient, *args: str) -> tuple[str, Any]:
    """A token made by the server's own token store (on its event loop)."""
    return client.portal.call(tokens(client).create, *args)  # type: ignore[union-attr]


def bearer(token: str, tenant: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {token}"}
    if tenant is not None:
        headers["NGSILD-Tenant"] = tenant
    return headers


def problem(response, status: int, type_name: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"] == ERR + type_name
    assert body["status"] == status
    return body


def assert_security_headers(response) -> None:
    for name, value in EXPECTED_HEADERS.items():
        assert response.headers.get(name) == value, (name, dict(response.headers))


@pytest.fixture
def admin(secure_client: TestClient) -> str:
    return create_token(secure_client, "admin", "*", "ops")[0]


# ---------------------------------------------------------------- authentication


def test_no_token_is_401_with_www_authenticate(secure_client: TestClient) -> None:
    response = secure_client.get(f"{BASE}/types")
    problem(response, 401, "Unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert_security_headers(response)


@pytest.mark.parametrize("header", [
    "Bearer cvt_000000000000_nope", "Bearer not-a-token", "Bearer ", "Basic dXNlcjpwYXNz",
    "cvt_000000000000_nope"])
def test_bad_tokens_are_401(secure_client: TestClient, header: str) -> None:
    response = secure_client.get(f"{BASE}/types", headers={"Authorization": header})
    problem(response, 401, "Unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_right_id_wrong_secret_is_401(secure_client: TestClient) -> None:
    token, info = create_token(secure_client, "admin", "*")
    forged = f"cvt_{info.token_id}_{'A' * 43}"
    assert forged != token
    problem(secure_client.get(f"{BASE}/types", headers=bearer(forged)), 401, "Unauthorized")


def test_every_api_route_needs_a_token(secure_client: TestClient) -> None:
    calls = [("GET", "/entities?type=Sensor"), ("POST", "/entities"),
             ("GET", "/entities/urn:ngsi-ld:Sensor:1"), ("DELETE", "/entities/urn:ngsi-ld:Sensor:1"),
             ("POST", "/entityOperations/upsert"), ("POST", "/entityOperations/query"),
             ("GET", "/types"), ("GET", "/attributes"), ("GET", "/jsonldContexts"),
             ("GET", "/jsonldContexts/core"), ("DELETE", "/jsonldContexts/core")]
    for method, path in calls:
        response = secure_client.request(method, BASE + path, json=[entity()])
        problem(response, 401, "Unauthorized")


def test_health_and_openapi_are_open(secure_client: TestClient) -> None:
    response = secure_client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert_security_headers(response)
    assert secure_client.get(f"{BASE}/openapi.json").status_code == 200


# ---------------------------------------------------------------- roles


def test_reader_may_read_but_not_write(secure_client: TestClient, admin: str) -> None:
    assert secure_client.post(f"{BASE}/entities", json=entity(),
                              headers=bearer(admin)).status_code == 201
    reader = create_token(secure_client, "reader")[0]
    response = secure_client.get(f"{BASE}/entities/urn:ngsi-ld:Sensor:1", headers=bearer(reader))
    assert response.status_code == 200, response.text
    assert secure_client.get(f"{BASE}/types", headers=bearer(reader)).status_code == 200
    response = secure_client.post(f"{BASE}/entityOperations/query", headers=bearer(reader),
                                  json={"type": "Query", "entities": [{"type": "Sensor"}]})
    assert response.status_code == 200, response.text
    assert [e["id"] for e in response.json()] == ["urn:ngsi-ld:Sensor:1"]
    for method, path, body in [
        ("POST", "/entities", entity(2)),
        ("POST", "/entityOperations/upsert", [entity(3)]),
        ("PATCH", "/entities/urn:ngsi-ld:Sensor:1/attrs/temperature", {"value": 99}),
        ("DELETE", "/entities/urn:ngsi-ld:Sensor:1", None),
        ("POST", "/jsonldContexts", {"@context": {"a": "https://a.example/a"}}),
    ]:
        response = secure_client.request(method, BASE + path, json=body, headers=bearer(reader))
        problem(response, 403, "Forbidden")
    # nothing was written
    kv = secure_client.get(f"{BASE}/entities/urn:ngsi-ld:Sensor:1", headers=bearer(reader),
                           params={"options": "keyValues"}).json()
    assert kv["temperature"] == 1
    problem(secure_client.get(f"{BASE}/entities/urn:ngsi-ld:Sensor:2", headers=bearer(admin)),
            404, "ResourceNotFound")


def test_writer_may_write_but_not_delete_contexts(secure_client: TestClient, admin: str) -> None:
    writer = create_token(secure_client, "writer")[0]
    response = secure_client.post(f"{BASE}/entities", json=entity(), headers=bearer(writer))
    assert response.status_code == 201, response.text
    response = secure_client.patch(f"{BASE}/entities/urn:ngsi-ld:Sensor:1/attrs/temperature",
                                   json={"value": 5}, headers=bearer(writer))
    assert response.status_code == 204, response.text
    response = secure_client.post(f"{BASE}/jsonldContexts", headers=bearer(writer),
                                  json={"@context": {"a": "https://a.example/a"}})
    assert response.status_code == 201, response.text
    local_id = response.headers["location"].rsplit("/", 1)[-1]
    problem(secure_client.delete(f"{BASE}/jsonldContexts/{local_id}", headers=bearer(writer)),
            403, "Forbidden")
    response = secure_client.delete(f"{BASE}/jsonldContexts/{local_id}", headers=bearer(admin))
    assert response.status_code == 204, response.text
    response = secure_client.delete(f"{BASE}/entities/urn:ngsi-ld:Sensor:1", headers=bearer(writer))
    assert response.status_code == 204, response.text


# ---------------------------------------------------------------- tenants


def test_token_bound_to_a_tenant(secure_client: TestClient) -> None:
    t1 = create_token(secure_client, "writer", "t1")[0]
    response = secure_client.post(f"{BASE}/entities", json=entity(), headers=bearer(t1, "t1"))
    assert response.status_code == 201, response.text
    assert secure_client.get(f"{BASE}/entities/urn:ngsi-ld:Sensor:1",
                             headers=bearer(t1, "t1")).status_code == 200
    problem(secure_client.post(f"{BASE}/entities", json=entity(2), headers=bearer(t1, "t2")),
            403, "Forbidden")
    problem(secure_client.get(f"{BASE}/types", headers=bearer(t1, "t2")), 403, "Forbidden")
    problem(secure_client.get(f"{BASE}/types", headers=bearer(t1)), 403, "Forbidden")
    problem(secure_client.post(f"{BASE}/entities", json=entity(3), headers=bearer(t1)),
            403, "Forbidden")


def test_default_tenant_token_is_refused_on_named_tenants(secure_client: TestClient) -> None:
    default = create_token(secure_client, "writer")[0]
    assert secure_client.post(f"{BASE}/entities", json=entity(),
                              headers=bearer(default)).status_code == 201
    problem(secure_client.post(f"{BASE}/entities", json=entity(), headers=bearer(default, "t1")),
            403, "Forbidden")


def test_star_token_works_on_every_tenant(secure_client: TestClient) -> None:
    star = create_token(secure_client, "writer", "*")[0]
    for tenant in (None, "t1", "t2"):
        response = secure_client.post(f"{BASE}/entities", json=entity(),
                                      headers=bearer(star, tenant))
        assert response.status_code == 201, (tenant, response.text)
        response = secure_client.get(f"{BASE}/entities/urn:ngsi-ld:Sensor:1",
                                     headers=bearer(star, tenant))
        assert response.status_code == 200, (tenant, response.text)


def test_invalid_tenant_header_is_rejected(secure_client: TestClient, admin: str) -> None:
    response = secure_client.get(f"{BASE}/types", headers=bearer(admin, "../etc"))
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


# ---------------------------------------------------------------- revocation


def test_revoked_token_is_refused(secure_client: TestClient, monkeypatch) -> None:
    store = tokens(secure_client)
    monkeypatch.setattr(store, "cache_s", 0.0)
    token, info = create_token(secure_client, "writer")
    assert secure_client.get(f"{BASE}/types", headers=bearer(token)).status_code == 200
    assert secure_client.portal.call(store.revoke, info.token_id) is True
    problem(secure_client.get(f"{BASE}/types", headers=bearer(token)), 401, "Unauthorized")
    assert secure_client.portal.call(store.revoke, info.token_id) is False
    listed = secure_client.portal.call(store.list)
    assert [t.revoked_at is not None for t in listed if t.token_id == info.token_id] == [True]


def test_revocation_by_another_process_within_the_cache_time(secure_client: TestClient,
                                                              secure_settings: Settings,
                                                              monkeypatch) -> None:
    store = tokens(secure_client)
    monkeypatch.setattr(store, "cache_s", 0.0)
    token, info = create_token(secure_client, "reader")
    assert secure_client.get(f"{BASE}/types", headers=bearer(token)).status_code == 200
    other = SqliteSystemStore(secure_settings.system_db)  # what `cityvisor token revoke` does
    try:
        assert asyncio.run(TokenStore(other).revoke(info.token_id))
    finally:
        asyncio.run(other.close())
    problem(secure_client.get(f"{BASE}/types", headers=bearer(token)), 401, "Unauthorized")


@pytest.mark.anyio
async def test_unknown_token_store_roles_are_refused(tmp_path) -> None:
    system = SqliteSystemStore(tmp_path / "system.sqlite")
    store = TokenStore(system)
    try:
        with pytest.raises(ValueError, match="bogus"):
            await store.create("bogus")
        token, info = await store.create("reader", "t1", "label")
        assert token.startswith(f"cvt_{info.token_id}_")
        listed = await store.list()
        assert [(t.token_id, t.role, t.tenant, t.name) for t in listed] == [
            (info.token_id, "reader", "t1", "label")]
        assert token.split("_", 2)[2] not in repr(listed)
    finally:
        await system.close()


# ---------------------------------------------------------------- headers, 404, 405, limits


def test_security_headers_on_success_error_and_404(client: TestClient) -> None:
    ok = client.post(f"{BASE}/entities", json=entity())
    assert ok.status_code == 201
    assert_security_headers(ok)
    assert_security_headers(client.get(f"{BASE}/entities/urn:ngsi-ld:Sensor:1"))
    error = client.post(f"{BASE}/entities", json=entity())
    assert error.status_code == 409
    assert_security_headers(error)
    missing = client.get("/nowhere")
    assert missing.status_code == 404
    assert_security_headers(missing)
    assert_security_headers(client.delete(f"{BASE}/types"))


def test_unknown_path_is_404_problem(client: TestClient) -> None:
    for path in ("/nowhere", f"{BASE}/nothing", f"{BASE}/entities/a/b/c/d"):
        problem(client.get(path), 404, "ResourceNotFound")


def test_wrong_method_is_405_problem(client: TestClient) -> None:
    for method, path in [("DELETE", f"{BASE}/types"), ("PUT", f"{BASE}/entities"),
                         ("GET", f"{BASE}/entityOperations/create"), ("POST", "/health")]:
        response = client.request(method, path)
        assert response.status_code == 405, (method, path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["status"] == 405


def test_wrong_method_names_the_allowed_methods(client: TestClient) -> None:
    response = client.request("PUT", f"{BASE}/entities")
    assert response.status_code == 405
    allowed = {m.strip() for m in response.headers.get("allow", "").split(",")}
    assert {"GET", "POST"} <= allowed


def test_body_over_the_limit_is_413(client: TestClient) -> None:
    big = {**entity(), "blob": {"type": "Property", "value": "x" * (4 * 1024 * 1024 + 1)}}
    problem(client.post(f"{BASE}/entities", json=big), 413, "PayloadTooLarge")
    problem(client.get(f"{BASE}/entities/urn:ngsi-ld:Sensor:1"), 404, "ResourceNotFound")


def test_no_auth_is_refused_off_loopback() -> None:
    with pytest.raises(ValueError, match="Refusing"):
        Settings(host="0.0.0.0", auth=False).check()
    with pytest.raises(ValueError):
        Settings(host="192.168.1.10", auth=False).check()
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        Settings(host=host, auth=False).check()
    Settings(host="0.0.0.0", auth=True).check()


def test_errors_do_not_leak_internals(client: TestClient) -> None:
    response = client.post(f"{BASE}/entities", content=b"\xff\xfe",
                           headers={"Content-Type": "application/json"})
    body = problem(response, 400, "InvalidRequest")
    assert "Traceback" not in body["detail"]
