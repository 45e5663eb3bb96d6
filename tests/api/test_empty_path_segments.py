"""A path parameter left empty (``/entities//attrs``) is BadRequestData, not a missing resource
(an empty entity id or attribute name is no valid one, clause 4.6.2)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

API = "/ngsi-ld/v1"
INSTANCE = "urn:ngsi-ld:instance:1"


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/temporal/entities//attrs"),
    ("PATCH", f"/temporal/entities//attrs/speed/{INSTANCE}"),
    ("DELETE", f"/temporal/entities//attrs/speed/{INSTANCE}"),
    ("DELETE", f"/temporal/entities/urn:ngsi-ld:V:1/attrs//{INSTANCE}"),
    ("PATCH", f"/temporal/entities/urn:ngsi-ld:V:1/attrs//{INSTANCE}"),
    ("POST", "/entities//attrs"),
])
def test_an_empty_path_parameter_is_bad_request_data(client: TestClient, method: str,
                                                     path: str) -> None:
    r = client.request(method, API + path, json={"speed": {"type": "Property", "value": 1}})
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "https://uri.etsi.org/ngsi-ld/errors/BadRequestData"
    assert "empty" in r.json()["detail"]


@pytest.mark.parametrize("path", ["/nothing//here", "/temporal//entities/x/y/z/w"])
def test_other_unknown_paths_stay_not_found(client: TestClient, path: str) -> None:
    r = client.get(API + path)
    assert r.status_code == 404
