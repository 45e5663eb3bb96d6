"""Without authentication, only loopback Host names are served (no DNS rebinding)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient


@pytest.mark.parametrize("host", ["evil.example", "evil.example:1026", "192.168.1.10:1026",
                                  "127.0.0.1.evil.example"])
def test_open_server_refuses_foreign_host_names(client: TestClient, host: str) -> None:
    response = client.get("/ngsi-ld/v1/types", headers={"Host": host})
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "loopback" in response.json()["detail"]
    created = client.post("/ngsi-ld/v1/entities", headers={"Host": host},
                          json={"id": "urn:ngsi-ld:T:1", "type": "T"})
    assert created.status_code == 400
    assert client.get("/ngsi-ld/v1/entities/urn:ngsi-ld:T:1").status_code == 404  # not written


@pytest.mark.parametrize("host", ["127.0.0.1:1026", "localhost:1026", "LOCALHOST", "[::1]:1026"])
def test_open_server_answers_loopback_names(client: TestClient, host: str) -> None:
    assert client.get("/ngsi-ld/v1/types", headers={"Host": host}).status_code == 200


def test_authenticated_server_does_not_check_host(secure_client: TestClient) -> None:
    # with tokens required, a rebinding page has no token: the usual 401 answers
    response = secure_client.get("/ngsi-ld/v1/types", headers={"Host": "city.example"})
    assert response.status_code == 401
