"""Transient entities and attributes (clause 4.22): what carries an expiresAt stops existing
at that time, for every operation, on both store backends."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from support.clock import Clock, timed_client

from cityvisor.config import Settings

E = "/ngsi-ld/v1/entities"
EID = "urn:ngsi-ld:Building:t1"
SOON = "2030-01-01T00:00:10Z"


@pytest.fixture(params=["sqlite", "memory"])
def timed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[TestClient, Clock]]:
    settings = Settings(data_dir=tmp_path / "data", auth=False, allow_context_fetch=False)
    with timed_client(request.param, settings) as timed_pair:
        yield timed_pair


def building(**extra: Any) -> dict[str, Any]:
    return {"id": EID, "type": "Building", "name": {"type": "Property", "value": "x"}, **extra}


def test_a_transient_entity_is_gone_at_its_expiry(timed: tuple[TestClient, Clock]) -> None:
    client, clock = timed
    assert client.post(E, json=building(expiresAt=SOON)).status_code == 201
    assert client.get(f"{E}/{EID}").status_code == 200
    timed_body = client.get(f"{E}/{EID}", params={"options": "sysAttrs"}).json()
    assert timed_body["expiresAt"] == SOON
    assert "expiresAt" not in client.get(f"{E}/{EID}").json()
    clock.now = "2030-01-01T00:00:10.000000Z"
    assert client.get(f"{E}/{EID}").status_code == 404
    assert client.get(E, params={"type": "Building"}).json() == []
    assert client.post(E, json=building()).status_code == 201  # the id is free again


def test_transient_attributes_vanish_and_siblings_stay(timed: tuple[TestClient, Clock]) -> None:
    client, clock = timed
    assert client.post(E, json=building(speed=[
        {"type": "Property", "value": 1},
        {"type": "Property", "value": 2, "datasetId": "urn:ds:1", "expiresAt": SOON}],
        owner={"type": "Relationship", "object": "urn:a:b", "expiresAt": SOON})).status_code == 201
    assert len(client.get(f"{E}/{EID}").json()["speed"]) == 2
    clock.now = "2030-01-01T00:01:00.000000Z"
    body = client.get(f"{E}/{EID}").json()
    assert body["speed"] == {"type": "Property", "value": 1}
    assert "owner" not in body and body["name"]["value"] == "x"
    assert client.get(E, params={"q": "owner==\"urn:a:b\""}).json() == []


def test_merge_sets_and_removes_the_expiry(timed: tuple[TestClient, Clock]) -> None:
    client, clock = timed
    assert client.post(E, json=building()).status_code == 201
    assert client.patch(f"{E}/{EID}", json={"expiresAt": SOON}).status_code == 204
    assert client.patch(f"{E}/{EID}", json={"expiresAt": "urn:ngsi-ld:null"}).status_code == 204
    clock.now = "2030-01-02T00:00:00.000000Z"
    assert client.get(f"{E}/{EID}").status_code == 200
    assert client.patch(f"{E}/{EID}", json={"expiresAt": "2020-01-01T00:00:00Z"}).status_code == 204
    assert client.get(f"{E}/{EID}").status_code == 404
    assert client.post(E, json=building(expiresAt="tomorrow")).status_code == 400


def test_an_expired_attribute_takes_its_history_an_expired_entity_leaves_it(
        timed: tuple[TestClient, Clock]) -> None:
    """Clause 4.22 with 5.2.5: the history of an expired instance goes with it; the history
    of an expired entity stays, as after Delete Entity."""
    client, clock = timed
    t = "/ngsi-ld/v1/temporal/entities"
    assert client.post(E, json=building(
        flash={"type": "Property", "value": 10, "expiresAt": SOON},
        expiresAt="2030-01-01T00:01:00Z")).status_code == 201
    assert "flash" in client.get(f"{t}/{EID}").json()
    clock.now = "2030-01-01T00:00:30.000000Z"
    history = client.get(f"{t}/{EID}").json()  # a temporal read reaps too
    assert "flash" not in history and "name" in history
    assert "flash" not in client.get(f"{E}/{EID}").json()
    clock.now = "2030-01-01T00:02:00.000000Z"
    assert client.get(f"{E}/{EID}").status_code == 404
    assert "name" in client.get(f"{t}/{EID}").json()
