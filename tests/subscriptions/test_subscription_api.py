"""Subscription endpoints (clauses 6.10-6.11): success and error paths of every route."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.testclient import TestClient

SUBS = "/ngsi-ld/v1/subscriptions"
STREETLIGHT = ("https://raw.githubusercontent.com/smart-data-models/dataModel.Streetlighting/"
               "master/context.jsonld")


def link(url: str) -> dict[str, str]:
    return {"Link": f'<{url}>; rel="http://www.w3.org/ns/json-ld#context"; '
                    'type="application/ld+json"'}


def sub(**members: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "Subscription", "entities": [{"type": "Streetlight"}],
                            "notification": {"endpoint": {"uri": "http://127.0.0.1:9/n"}}}
    body.update(members)
    return body


def test_create_retrieve_list_update_delete(client: TestClient) -> None:
    created = client.post(SUBS, json=sub(watchedAttributes=["powerState"], q="powerState==\"on\"",
                                         throttling=5), headers=link(STREETLIGHT))
    assert created.status_code == 201, created.text
    location = created.headers["Location"]
    assert location.startswith(SUBS + "/urn:ngsi-ld:Subscription:")
    sub_id = location.rsplit("/", 1)[1]
    got = client.get(f"{SUBS}/{sub_id}", headers=link(STREETLIGHT))
    assert got.status_code == 200
    body = got.json()
    assert body["id"] == sub_id and body["type"] == "Subscription"
    # clause 5.2.12: the creator's members, the trigger in force and the computed status;
    # no isActive the creator did not give, no timesSent before a notification was tried
    assert body["status"] == "active" and "isActive" not in body
    assert body["notificationTrigger"] == ["attributeCreated", "attributeUpdated"]
    assert body["watchedAttributes"] == ["powerState"]
    assert "timesSent" not in body["notification"]
    assert body["notification"]["endpoint"]["accept"] == "application/json"
    assert "Link" in got.headers

    client.post(SUBS, json=sub(id="urn:ngsi-ld:Subscription:two"))
    listed = client.get(SUBS, params={"count": "true", "limit": "1"})
    assert listed.status_code == 200
    assert listed.headers["NGSILD-Results-Count"] == "2"
    assert [s["id"] for s in listed.json()] == [sub_id]
    assert [s["id"] for s in client.get(SUBS, params={"offset": "1"}).json()] == [
        "urn:ngsi-ld:Subscription:two"]

    patched = client.patch(f"{SUBS}/{sub_id}", json={
        "isActive": False,
        "notification": {"format": "keyValues", "endpoint": {"uri": "http://127.0.0.1:9/m"}}})
    assert patched.status_code == 204, patched.text
    body = client.get(f"{SUBS}/{sub_id}").json()
    assert body["status"] == "paused" and body["isActive"] is False
    assert body["notification"]["format"] == "keyValues"
    assert body["notification"]["endpoint"]["uri"] == "http://127.0.0.1:9/m"

    assert client.delete(f"{SUBS}/{sub_id}").status_code == 204
    assert client.get(f"{SUBS}/{sub_id}").status_code == 404
    assert client.delete(f"{SUBS}/{sub_id}").status_code == 404


def test_given_id_conflict_and_ld_json_context(client: TestClient) -> None:
    body = {**sub(id="urn:ngsi-ld:Subscription:x"), "@context": STREETLIGHT}
    headers = {"Content-Type": "application/ld+json"}
    first = client.post(SUBS, content=__import__("orjson").dumps(body), headers=headers)
    assert first.status_code == 201
    again = client.post(SUBS, content=__import__("orjson").dumps(body), headers=headers)
    assert again.status_code == 409
    assert again.json()["type"].endswith("AlreadyExists")
    got = client.get(f"{SUBS}/urn:ngsi-ld:Subscription:x",
                     headers={"Accept": "application/ld+json"})
    assert got.json()["@context"] == "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"


def test_expired_status_and_periodic(client: TestClient) -> None:
    created = client.post(SUBS, json=sub(id="urn:ngsi-ld:Subscription:p", timeInterval=60,
                                         expiresAt="2999-01-01T00:00:00Z"))
    assert created.status_code == 201
    assert client.get(f"{SUBS}/urn:ngsi-ld:Subscription:p").json()["timeInterval"] == 60


@pytest.mark.parametrize("body, detail", [
    ([], "JSON object"),
    (sub(type="Entity"), "type"),
    (sub(id="not a uri"), "URI"),
    ({"type": "Subscription", "notification": {"endpoint": {"uri": "http://h/x"}}},
     "entities or watchedAttributes"),
    (sub(entities=[]), "entities"),
    (sub(entities=[{}]), "selector"),
    (sub(entities=[{"type": ""}]), "type"),
    (sub(entities=[{"idPattern": "(["}]), ""),
    (sub(watchedAttributes=[]), "watchedAttributes"),
    (sub(watchedAttributes=["a b"]), "forbidden"),
    (sub(q="a>>"), ""),
    (sub(q=5), "q"),
    (sub(geoQ={"georel": "near;maxDistance==10", "geometry": "Point"}), "geoQ"),
    (sub(geoQ={"georel": "near;maxDistance==10", "geometry": "Point",
               "coordinates": [500, 43]}), ""),
    (sub(geoQ={"georel": "within", "geometry": "Polygon", "coordinates": "x"}), ""),
    (sub(notificationTrigger=["entityExploded"]), "notificationTrigger"),
    (sub(throttling=-1), "throttling"),
    (sub(timeInterval="10"), "timeInterval"),
    (sub(timeInterval=10, watchedAttributes=["a"]), "timeInterval"),
    (sub(timeInterval=10, throttling=3), "timeInterval"),
    (sub(expiresAt="tomorrow"), "expiresAt"),
    (sub(expiresAt="2000-01-01T00:00:00Z"), "past"),
    (sub(isActive="yes"), "isActive"),
    (sub(notification=None), "notification"),
    (sub(notification={"endpoint": {"uri": "ftp://h/x"}}), "uri"),
    (sub(notification={"endpoint": {"uri": "http://"}}), "uri"),
    (sub(notification={"endpoint": {"uri": "mqtt://h:1883/"}}), "topic"),
    (sub(notification={"endpoint": {"uri": "mqtt://h/a/#"}}), "topic"),
    (sub(notification={"endpoint": {"uri": "http://h/x", "accept": "text/plain"}}), "accept"),
    (sub(notification={"endpoint": {"uri": "http://h/x", "receiverInfo": [{"k": 1}]}}),
     "receiverInfo"),
    (sub(notification={"endpoint": {"uri": "mqtt://h/t", "notifierInfo": [
        {"key": "MQTT-QoS", "value": "3"}]}}), "MQTT-QoS"),
    (sub(notification={"endpoint": {"uri": "mqtt://h/t", "notifierInfo": [
        {"key": "MQTT-Version", "value": "4"}]}}), "MQTT-Version"),
    (sub(notification={"format": "xml", "endpoint": {"uri": "http://h/x"}}), "format"),
    (sub(notification={"attributes": "a", "endpoint": {"uri": "http://h/x"}}), "attributes"),
    (sub(notification={"showChanges": 1, "endpoint": {"uri": "http://h/x"}}), "showChanges"),
    (sub(jsonldContext="ctx"), "jsonldContext"),
    # clause 5.2.14: showChanges is not for keyValues (simplified); no empty pick / omit;
    # pick / omit not with attributes, nor together (clause 4.21)
    (sub(notification={"format": "keyValues", "showChanges": True,
                       "endpoint": {"uri": "http://h/x"}}), "showChanges"),
    (sub(notification={"format": "simplified", "showChanges": True,
                       "endpoint": {"uri": "http://h/x"}}), "showChanges"),
    (sub(notification={"attributes": [], "endpoint": {"uri": "http://h/x"}}), "attributes"),
    (sub(notification={"pick": [], "endpoint": {"uri": "http://h/x"}}), "pick"),
    (sub(notification={"omit": [], "endpoint": {"uri": "http://h/x"}}), "omit"),
    (sub(notification={"pick": ["id"], "omit": ["id"], "endpoint": {"uri": "http://h/x"}}),
     "together"),
    (sub(notification={"pick": ["id"], "attributes": ["a"], "endpoint": {"uri": "http://h/x"}}),
     "together"),
    (sub(notification={"omit": ["a"], "attributes": ["a"], "endpoint": {"uri": "http://h/x"}}),
     "together"),
    # clause 5.2.12: csf is a query (clause 4.9); datasetId a list of URIs (or @none)
    (sub(csf="(("), ""),
    (sub(csf=""), "csf"),
    (sub(datasetId=[]), "datasetId"),
    (sub(datasetId=["not a uri"]), "datasetId"),
])
def test_create_rejects_invalid(client: TestClient, body: Any, detail: str) -> None:
    response = client.post(SUBS, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["type"].endswith("BadRequestData")
    assert detail in response.json()["detail"]


def test_members_outside_5_2_12_and_read_only_ones_are_not_kept(client: TestClient) -> None:
    created = client.post(SUBS, json=sub(id="urn:ngsi-ld:Subscription:m", __context="http://x/c",
                                         status="expired", csf="p==1",
                                         datasetId=["urn:ngsi-ld:Dataset:a", "@none"],
                                         notification={"endpoint": {"uri": "http://h/x"},
                                                       "timesSent": 42,
                                                       "timesFailed": 7}))
    assert created.status_code == 201, created.text
    body = client.get(f"{SUBS}/urn:ngsi-ld:Subscription:m").json()
    assert "__context" not in body and body["status"] == "active"
    assert "timesSent" not in body["notification"]
    assert "timesFailed" not in body["notification"]
    assert body["csf"] == "p==1" and body["datasetId"] == ["urn:ngsi-ld:Dataset:a", "@none"]


def test_update_replaces_notification_and_refuses_past_expiry(client: TestClient) -> None:
    """Clause 5.8.2: a member of the fragment replaces the whole member, so a notification
    without an endpoint is invalid; an expiresAt in the past is refused; nothing changes."""
    client.post(SUBS, json=sub(id="urn:ngsi-ld:Subscription:r"))
    url = f"{SUBS}/urn:ngsi-ld:Subscription:r"
    bad = client.patch(url, json={"notification": {"format": "keyValues"}})
    assert bad.status_code == 400 and "endpoint" in bad.json()["detail"]
    past = client.patch(url, json={"expiresAt": "2020-08-01T22:07:00Z"})
    assert past.status_code == 400 and "past" in past.json()["detail"]
    body = client.get(url).json()
    assert "expiresAt" not in body and "format" not in body["notification"]


def test_unsupported_member_and_media_type(client: TestClient) -> None:
    assert client.post(SUBS, json=sub(scopeQ="/a")).status_code == 422
    joined = client.post(SUBS, json=sub(notification={"join": "flat", "joinLevel": 1,
                                                      "endpoint": {"uri": "http://h/x"}}))
    assert joined.status_code == 422 and "join" in joined.json()["detail"]
    assert client.post(SUBS, content=b"{}", headers={"Content-Type": "text/plain"}
                       ).status_code == 415
    assert client.post(SUBS, content=b"{", headers={"Content-Type": "application/json"}
                       ).status_code == 400


def test_query_parameters_and_unknown(client: TestClient) -> None:
    assert client.get(SUBS).json() == []
    assert client.get(SUBS, params={"limit": "0"}).status_code == 400
    assert client.get(SUBS, params={"limit": "5000"}).status_code == 400
    assert client.get(SUBS, params={"offset": "-1"}).status_code == 400
    assert client.get(SUBS, params={"limit": "x"}).status_code == 400
    counted = client.get(SUBS, params={"limit": "0", "count": "true"})
    assert counted.status_code == 200 and counted.headers["NGSILD-Results-Count"] == "0"
    assert client.get(SUBS, headers={"NGSILD-Tenant": "nobody"}).status_code == 404
    assert client.get(f"{SUBS}/urn:ngsi-ld:Subscription:none").status_code == 404
    assert client.get(f"{SUBS}/not-a-uri").status_code == 400
    assert client.patch(f"{SUBS}/urn:ngsi-ld:Subscription:none",
                        json={"isActive": False}).status_code == 404
    assert client.delete(f"{SUBS}/urn:ngsi-ld:Subscription:none",
                         headers={"NGSILD-Tenant": "nobody"}).status_code == 404


def test_update_errors(client: TestClient) -> None:
    client.post(SUBS, json=sub(id="urn:ngsi-ld:Subscription:u"))
    url = f"{SUBS}/urn:ngsi-ld:Subscription:u"
    assert client.patch(url, json={}).status_code == 400
    assert client.patch(url, json={"id": "urn:ngsi-ld:Subscription:v"}).status_code == 400
    assert client.patch(url, json={"throttling": "fast"}).status_code == 400
    assert client.patch(url, json={"notification": {"endpoint": {"uri": "x"}}}).status_code == 400
    assert client.patch(url, json=[1]).status_code == 400
    # the invalid updates changed nothing
    assert client.get(url).json()["notification"]["endpoint"]["uri"] == "http://127.0.0.1:9/n"
    assert client.patch(url, json={"q": "a==1", "expiresAt": "2999-01-01T00:00:00Z"}
                        ).status_code == 204
    assert client.get(url).json()["q"] == "a==1"


def test_tenants_are_separate(client: TestClient) -> None:
    tenant = {"NGSILD-Tenant": "city2"}
    assert client.post(SUBS, json=sub(id="urn:ngsi-ld:Subscription:t"), headers=tenant
                       ).status_code == 201
    assert client.get(f"{SUBS}/urn:ngsi-ld:Subscription:t", headers=tenant).status_code == 200
    assert client.get(f"{SUBS}/urn:ngsi-ld:Subscription:t").status_code == 404


def test_roles(secure_client: TestClient, secure_settings: Any) -> None:
    from cityvisor.security.tokens import TokenStore
    from cityvisor.store.sqlite_system import SqliteSystemStore

    system = SqliteSystemStore(secure_settings.system_db)
    reader, _ = asyncio.run(TokenStore(system).create("reader", "*", "r"))
    asyncio.run(system.close())
    auth = {"Authorization": f"Bearer {reader}"}
    assert secure_client.get(SUBS).status_code == 401
    assert secure_client.post(SUBS, json=sub(), headers=auth).status_code == 403
    assert secure_client.get(SUBS, headers=auth).status_code == 200


def test_version_preference_is_applied_on_retrieve_and_query(client: TestClient) -> None:
    client.post(SUBS, json=sub(id="urn:ngsi-ld:Subscription:v"))
    url = f"{SUBS}/urn:ngsi-ld:Subscription:v"
    got = client.get(url, headers={"Prefer": "respond-async, NGSI-LD=\"1.0\";q=0.1"})
    assert got.status_code == 200
    assert got.headers["Preference-Applied"] == "ngsi-ld=1.0"
    assert got.json()["id"] == "urn:ngsi-ld:Subscription:v"
    listed = client.get(SUBS, params={"count": "true"}, headers={"Prefer": "ngsi-ld=1.8"})
    assert listed.headers["Preference-Applied"] == "ngsi-ld=1.8"
    assert listed.headers["NGSILD-Results-Count"] == "1"
    for prefer in ("respond-async", "ngsi-ld=7.0"):
        assert "Preference-Applied" not in client.get(url, headers={"Prefer": prefer}).headers
    assert "Preference-Applied" not in client.get(url).headers


def test_terms_follow_the_context_of_each_request(client: TestClient) -> None:
    """Clause 6.3.5: the names a subscription holds are expanded with the @context of the
    request that gives them and compacted with that of the request that reads them."""
    sl = "https://smartdatamodels.org/dataModel.Streetlighting/"
    client.post(SUBS, json=sub(id="urn:ngsi-ld:Subscription:t", watchedAttributes=["powerState"],
                               notification={"attributes": ["powerState"],
                                             "endpoint": {"uri": "http://h/x"}}),
                headers=link(STREETLIGHT))
    url = f"{SUBS}/urn:ngsi-ld:Subscription:t"
    plain = client.get(url).json()
    assert plain["watchedAttributes"] == [sl + "powerState"]
    assert plain["notification"]["attributes"] == [sl + "powerState"]
    assert plain["entities"] == [{"type": sl + "Streetlight"}]
    assert client.get(url, headers=link(STREETLIGHT)).json()["watchedAttributes"] == [
        "powerState"]
    listed = client.get(SUBS, headers=link(STREETLIGHT)).json()
    assert listed[0]["entities"] == [{"type": "Streetlight"}]
    # an update in the core context: its names are the core's, whatever the creator's
    assert client.patch(url, json={"entities": [{"type": "Streetlight,Pole"}]}).status_code == 204
    assert client.get(url).json()["entities"] == [{"type": "Streetlight,Pole"}]
    assert client.get(url, headers=link(STREETLIGHT)).json()["entities"] != [
        {"type": "Streetlight,Pole"}]
