"""The matcher on hand-built stored entities: selectors, triggers, watchedAttributes, q, geoQ,
throttling, notification bodies, periodic notifications (fake clock, no sleeps)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from support.backends import BACKENDS, services_on

from cityvisor.broker.subscriptions import build, matches, render_entity, triggered
from cityvisor.config import Settings
from cityvisor.services import Services
from cityvisor.store.base import StaleWrite, WriteOp

D = "https://uri.etsi.org/ngsi-ld/default-context/"
T = "2026-01-01T00:00:00.000000Z"


def inst(value: Any, modified: str = T) -> list[dict[str, Any]]:
    return [{"type": "Property", "value": value, "createdAt": T, "modifiedAt": modified}]


def entity(n: int = 1, kind: str = "Lamp", **attrs: Any) -> dict[str, Any]:
    return {"id": f"urn:ngsi-ld:{kind}:{n}", "type": [D + kind], "createdAt": T,
            "modifiedAt": T, "attrs": {D + k: v for k, v in attrs.items()}}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=BACKENDS)
async def services(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    async with services_on(request.param, Settings(data_dir=tmp_path / "d", auth=False,
                                                   allow_context_fetch=False)) as built:
        yield built


async def make(services: Services, **members: Any) -> Any:
    doc: dict[str, Any] = {"id": "urn:ngsi-ld:Subscription:s", "type": "Subscription",
                           "entities": [{"type": "Lamp"}],
                           "notification": {"endpoint": {"uri": "http://h/n"}}}
    doc.update(members)
    doc = {k: v for k, v in doc.items() if v is not None}
    return await build(doc, None, services.broker, 0.0)


pytestmark = pytest.mark.anyio


async def test_selectors(services: Services) -> None:
    lamp = entity(1, power=inst("on"))
    other = entity(2, "Pole", power=inst("on"))
    create = WriteOp(None, lamp)
    assert matches(await make(services), create, 0)
    assert not matches(await make(services), WriteOp(None, other), 0)
    by_id = await make(services, entities=[{"id": "urn:ngsi-ld:Lamp:1", "type": "Lamp"}])
    assert matches(by_id, create, 0)
    assert not matches(by_id, WriteOp(None, entity(3, power=inst("on"))), 0)
    pattern = await make(services, entities=[{"idPattern": "Pole:.*"}])
    assert matches(pattern, WriteOp(None, other), 0) and not matches(pattern, create, 0)
    either = await make(services, entities=[{"type": "Lamp|Pole"}])
    assert matches(either, WriteOp(None, other), 0)
    watched_only = await make(services, entities=None, watchedAttributes=["power"])
    assert matches(watched_only, WriteOp(None, other), 0)


async def test_triggers_and_watched_attributes(services: Services) -> None:
    old = entity(power=inst("on"), level=inst(1))
    changed = entity(power=inst("off", "2026-01-02T00:00:00Z"), level=inst(1))
    added = entity(power=inst("on"), level=inst(1), extra=inst(5))
    removed = entity(power=inst("on"))
    default = await make(services)
    assert triggered(default, WriteOp(None, old))  # attributeCreated on creation
    assert triggered(default, WriteOp(old, changed))
    assert triggered(default, WriteOp(old, added))
    assert not triggered(default, WriteOp(old, removed))
    assert not triggered(default, WriteOp(old, None))
    assert not triggered(default, WriteOp(old, old))
    watched = await make(services, watchedAttributes=["level"])
    assert not triggered(watched, WriteOp(old, changed))
    assert not triggered(watched, WriteOp(old, added))
    deleted = await make(services, notificationTrigger=["attributeDeleted", "entityDeleted"])
    assert triggered(deleted, WriteOp(old, removed))
    assert triggered(deleted, WriteOp(old, None))
    assert not triggered(deleted, WriteOp(old, changed))
    entity_level = await make(services, notificationTrigger=["entityCreated", "entityUpdated"])
    assert triggered(entity_level, WriteOp(None, old))
    assert triggered(entity_level, WriteOp(old, removed))
    assert not triggered(entity_level, WriteOp(old, None))
    watched_update = await make(services, watchedAttributes=["power"],
                                notificationTrigger=["entityUpdated"])
    assert triggered(watched_update, WriteOp(old, changed))
    assert not triggered(watched_update, WriteOp(old, added))


async def test_q_geo_active_expiry(services: Services) -> None:
    lamp = entity(power=inst("on"), level=inst(7), location=[{
        "type": "GeoProperty", "value": {"type": "Point", "coordinates": [4.36, 43.84]},
        "createdAt": T, "modifiedAt": T}])
    lamp["attrs"]["https://uri.etsi.org/ngsi-ld/location"] = lamp["attrs"].pop(D + "location")
    op = WriteOp(None, lamp)
    assert matches(await make(services, q="level>5;power==\"on\""), op, 0)
    assert not matches(await make(services, q="level>9"), op, 0)
    near = {"georel": "near;maxDistance==1000", "geometry": "Point",
            "coordinates": [4.361, 43.841]}
    assert matches(await make(services, geoQ=near), op, 0)
    far = {**near, "coordinates": [5.0, 44.0]}
    assert not matches(await make(services, geoQ=far), op, 0)
    assert not matches(await make(services, isActive=False), op, 0)
    expiring = await make(services, expiresAt="2030-01-01T00:00:00Z")
    assert matches(expiring, op, 1_800_000_000) and not matches(expiring, op, 1_900_000_000)
    assert expiring.status(1_900_000_000) == "expired"
    assert not matches(await make(services, timeInterval=5), op, 0)  # periodic only


async def test_rendering_formats_attributes_show_changes(services: Services) -> None:
    old = entity(power=inst("on"), level=inst(1))
    new = entity(power=inst("off"), level=inst(1))
    op = WriteOp(old, new)
    normalized = render_entity(await make(services, notification={
        "showChanges": True, "attributes": ["power"], "endpoint": {"uri": "http://h/n"}}), op, T)
    assert normalized == {"id": "urn:ngsi-ld:Lamp:1", "type": "Lamp", "power": {
        "type": "Property", "value": "off", "previousValue": "on"}}
    key_values = render_entity(await make(services, notification={
        "format": "keyValues", "endpoint": {"uri": "http://h/n"}}), op, T)
    assert key_values == {"id": "urn:ngsi-ld:Lamp:1", "type": "Lamp", "power": "off", "level": 1}
    concise = render_entity(await make(services, notification={
        "format": "concise", "showChanges": True, "endpoint": {"uri": "http://h/n"}}), op, T)
    assert concise["power"] == {"value": "off", "previousValue": "on"} and concise["level"] == 1
    sys_attrs = render_entity(await make(services, notification={
        "sysAttrs": True, "endpoint": {"uri": "http://h/n"}}), op, T)
    assert sys_attrs["createdAt"] == T and sys_attrs["power"]["modifiedAt"] == T
    gone = render_entity(await make(services), WriteOp(old, None), T)
    assert gone == {"id": "urn:ngsi-ld:Lamp:1", "type": "Lamp", "deletedAt": T}


async def test_listener_throttling_and_notification_body(services: Services) -> None:
    clock = Clock()
    manager = services.subscriptions.manager
    manager.clock = clock
    await manager.create(None, None, {
        "type": "Subscription", "entities": [{"type": "Lamp"}], "throttling": 10,
        "notification": {"endpoint": {"uri": "http://h/n", "accept": "application/ld+json"}}})
    first = await manager.on_change(None, [WriteOp(None, entity(power=inst("on")))])
    assert len(first) == 1
    body = orjson.loads(first[0].payload)
    assert body["type"] == "Notification" and body["id"].startswith("urn:ngsi-ld:Notification:")
    assert body["data"][0]["power"]["value"] == "on" and "@context" in body
    clock.now += 5
    assert await manager.on_change(None, [WriteOp(None, entity(2, power=inst("on")))]) == []
    clock.now += 6
    assert len(await manager.on_change(None, [WriteOp(None, entity(3, power=inst("on")))])) == 1
    # a batch: one notification carrying every matching entity
    clock.now += 20
    batch = await manager.on_change(None, [WriteOp(None, entity(n, power=inst(1)))
                                           for n in range(4, 9)])
    assert len(batch) == 1 and len(orjson.loads(batch[0].payload)["data"]) == 5
    # no subscription in a tenant: nothing
    assert await manager.on_change("empty", [WriteOp(None, entity())]) == ()


async def test_a_write_refused_as_stale_and_run_again_still_notifies_a_throttled_subscription(
        services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    manager = services.subscriptions.manager
    await services.broker.create_entity(None, None, {"id": "urn:ngsi-ld:Lamp:1", "type": "Lamp",
                                                     "power": {"value": "off"}})
    await manager.create(None, None, {
        "type": "Subscription", "entities": [{"type": "Lamp"}], "throttling": 3600,
        "notification": {"endpoint": {"uri": "http://h/n"}}})
    outbox = await services.store.outbox_reader(None)
    before = await outbox.pending()
    store = services.broker.store
    real_stage = store.stage
    refused: list[int] = []

    async def stage_refused_once(tenant: str | None, ops: list[WriteOp],
                                 records: Sequence[object] = ()) -> Awaitable[None]:
        if ops and not refused:  # another worker changed the lamp meanwhile: nothing written
            refused.append(1)
            raise StaleWrite("Entity changed since it was read")
        return await real_stage(tenant, ops, records)

    monkeypatch.setattr(store, "stage", stage_refused_once)
    await services.broker.update_attribute(None, None, "urn:ngsi-ld:Lamp:1", "power",
                                           {"value": "on"})
    assert refused == [1]  # the first run was refused, the second written
    assert await outbox.pending() == before + 1  # its notification was not throttled out
    # the window holds against the next operation
    await services.broker.update_attribute(None, None, "urn:ngsi-ld:Lamp:1", "power",
                                           {"value": "off"})
    assert await outbox.pending() == before + 1


async def test_periodic_notifications_with_fake_clock(services: Services) -> None:
    clock = Clock()
    manager = services.subscriptions.manager
    manager.clock = clock
    await services.broker.create_entity(None, None, {"id": "urn:ngsi-ld:Lamp:1", "type": "Lamp",
                                                     "power": {"value": "on"}})
    await manager.create(None, None, {
        "type": "Subscription", "entities": [{"type": "Lamp"}], "timeInterval": 60,
        "notification": {"endpoint": {"uri": "http://h/n"}}})
    outbox = await services.store.outbox_reader(None)

    async def rows() -> int:
        return await outbox.pending()

    before = await rows()
    assert await manager.periodic_tick(clock.now) == 1
    assert await manager.periodic_tick(clock.now + 30) == 0
    assert await manager.periodic_tick(clock.now + 61) == 1
    assert await rows() == before + 2
    payload = (await outbox.fresh(0, 10_000))[-1].payload
    assert orjson.loads(payload)["data"][0]["id"] == "urn:ngsi-ld:Lamp:1"


async def test_dataset_ids_pick_omit_and_percent_encoded_q(services: Services) -> None:
    """datasetId (clause 5.2.12) keeps the chosen instances; pick / omit (5.2.14) shape the
    entity; a percent-encoded q means what it means in a URL."""
    two = [{"type": "Property", "value": "Eiffel Tower", "createdAt": T, "modifiedAt": T},
           {"type": "Property", "value": "Tour Eiffel", "datasetId": "urn:ngsi-ld:Dataset:fr",
            "createdAt": T, "modifiedAt": T}]
    op = WriteOp(None, entity(name=two, level=inst(1)))
    only_fr = render_entity(await make(services, datasetId=["urn:ngsi-ld:Dataset:fr"]), op, T)
    assert only_fr["name"] == {"type": "Property", "value": "Tour Eiffel",
                               "datasetId": "urn:ngsi-ld:Dataset:fr"}
    assert "level" not in only_fr
    default = render_entity(await make(services, datasetId=["@none"]), op, T)
    assert default["name"]["value"] == "Eiffel Tower" and "level" in default
    picked = render_entity(await make(services, notification={
        "pick": ["id", "level"], "endpoint": {"uri": "http://h/n"}}), op, T)
    assert picked == {"id": "urn:ngsi-ld:Lamp:1", "level": {"type": "Property", "value": 1}}
    omitted = render_entity(await make(services, notification={
        "omit": ["name"], "endpoint": {"uri": "http://h/n"}}), op, T)
    assert set(omitted) == {"id", "type", "level"}
    encoded = await make(services, q='name=="Eiffel%20Tower"')
    assert matches(encoded, op, 0)


async def test_json_ld_notification_context_and_link(services: Services) -> None:
    """application/ld+json: the @context in the notification and in each entity;
    application/json: a Link header to the one context URL given in a list."""
    from cityvisor.broker.subscriptions import context_link, notification
    from cityvisor.ngsild.context import CORE_CONTEXT_URL

    ld = await make(services, notification={
        "endpoint": {"uri": "http://h/n", "accept": "application/ld+json"}})
    body = orjson.loads(notification(ld, [{"id": "urn:x:1", "type": "Lamp"}], T))
    assert body["@context"] == CORE_CONTEXT_URL
    assert body["data"][0]["@context"] == CORE_CONTEXT_URL
    assert context_link(["http://x/c.jsonld"]) == "http://x/c.jsonld"
    assert context_link([CORE_CONTEXT_URL, "http://x/c.jsonld"]) == "http://x/c.jsonld"
    assert context_link(["http://x/a", "http://x/b"]) == CORE_CONTEXT_URL
    assert context_link({"a": "http://x/a"}) == CORE_CONTEXT_URL


async def test_previous_vocab_is_compacted(services: Services) -> None:
    def vocab(term: str) -> list[dict[str, Any]]:
        return [{"type": "VocabProperty", "vocab": D + term, "createdAt": T, "modifiedAt": T}]

    op = WriteOp(entity(kind_of=vocab("monument")), entity(kind_of=vocab("museum")))
    out = render_entity(await make(services, notification={
        "showChanges": True, "endpoint": {"uri": "http://h/n"}}), op, T)
    assert out["kind_of"] == {"type": "VocabProperty", "vocab": "museum",
                              "previousVocab": "monument"}


async def test_deleted_attributes_and_instances_are_notified_as_ngsi_ld_null(
        services: Services) -> None:
    """attributeDeleted: a deleted attribute, or attribute instance (datasetId), is notified as
    the NGSI-LD Null of its type (clause 4.5.0) beside what remains; showChanges adds the
    previous value; a deleted entity with showChanges lists its attributes so."""
    fr = {"type": "Property", "value": "Tour Eiffel", "datasetId": "urn:ngsi-ld:Dataset:fr",
          "createdAt": T, "modifiedAt": T}
    street = [{"type": "LanguageProperty", "languageMap": {"fr": "Grand Place"},
               "createdAt": T, "modifiedAt": T}]
    old = entity(name=[*inst("Eiffel Tower"), fr], street=street, level=inst(1))
    sub = await make(services, watchedAttributes=["name"],
                     notificationTrigger=["attributeDeleted"])
    # one instance of name deleted: an attribute deleted (name + datasetId), not an update only
    one_gone = WriteOp(old, entity(name=inst("Eiffel Tower"), street=street, level=inst(1)))
    assert triggered(sub, one_gone)
    out = render_entity(sub, one_gone, T)
    assert out["name"] == [{"type": "Property", "value": "Eiffel Tower"},
                           {"type": "Property", "value": "urn:ngsi-ld:null",
                            "datasetId": "urn:ngsi-ld:Dataset:fr"}]
    # a whole attribute deleted, with its previous value
    no_street = WriteOp(old, entity(name=[*inst("Eiffel Tower"), fr], level=inst(1)))
    assert not triggered(sub, no_street)  # street is not watched
    shown = render_entity(await make(services, notification={
        "showChanges": True, "endpoint": {"uri": "http://h/n"}}), no_street, T)
    assert shown["street"] == {"type": "LanguageProperty", "languageMap": {"@none": "urn:ngsi-ld:null"},
                               "previousLanguageMap": {"fr": "Grand Place"}}
    simple = render_entity(await make(services, notification={
        "format": "keyValues", "endpoint": {"uri": "http://h/n"}}), no_street, T)
    assert simple["street"] == {"languageMap": {"@none": "urn:ngsi-ld:null"}}
    # entity deletion with showChanges
    gone = render_entity(await make(services, notification={
        "showChanges": True, "attributes": ["level"], "endpoint": {"uri": "http://h/n"}}),
        WriteOp(old, None), T)
    assert gone == {"id": "urn:ngsi-ld:Lamp:1", "type": "Lamp", "deletedAt": T, "level": {
        "type": "Property", "value": "urn:ngsi-ld:null", "previousValue": 1}}


def test_ngsi_ld_null_of_every_value_member_is_a_deletion() -> None:
    from cityvisor.broker.fragments import deletion

    null = "urn:ngsi-ld:null"
    assert deletion(null) == (True, None)
    assert deletion({"type": "LanguageProperty", "languageMap": {"@none": null}}) == (True, None)
    assert deletion({"valueList": [null], "datasetId": "urn:d:1"}) == (True, "urn:d:1")
    assert deletion({"object": null}) == (True, None)
    assert deletion({"languageMap": {"fr": null}}) == (False, None)
    assert deletion({"value": [null]}) == (False, None)


def test_a_json_null_value_is_not_an_ngsi_ld_null() -> None:
    from cityvisor.broker.fragments import deletion

    assert deletion({"value": None}) == (False, None)
    assert deletion({"object": None}) == (False, None)


async def test_rendering_leaves_the_stored_document_alone(services: Services) -> None:
    sub = await make(services)
    before = orjson.dumps(sub.doc)
    rendered = sub.render(0.0, sub.source_terms)
    assert rendered["status"] == "active" and "notificationTrigger" in rendered
    sub.render(0.0)
    assert orjson.dumps(sub.doc) == before


async def test_an_implicit_context_is_the_link_and_keeps_the_creator_terms(
        services: Services) -> None:
    """clause 5.13.1: notifications of a subscription whose @context is inline link to the
    ImplicitlyCreated @context standing for it, compacted with the creator's terms, and a
    restart needs no download of it."""
    manager = services.subscriptions.manager
    context = {"lamp": "https://example.org/lamp#Lamp", "lux": "https://example.org/lamp#lux"}
    await manager.create(None, context, {
        "id": "urn:ngsi-ld:Subscription:imp", "type": "Subscription",
        "entities": [{"type": "lamp"}],
        "notification": {"endpoint": {"uri": "http://h/n"}}}, "http://broker:1026/")
    sub = (await manager._tenant(None))["urn:ngsi-ld:Subscription:imp"]
    url = sub.doc["jsonldContext"]
    assert url.startswith("http://broker:1026/ngsi-ld/v1/jsonldContexts/implicit-")
    assert sub.target["link"] == url
    assert sub.terms.compact("https://example.org/lamp#lux") == "lux"
    rebuilt = await build(dict(sub.doc), context, services.broker, 0)  # as at a restart
    assert rebuilt.target["link"] == url
    assert rebuilt.terms.compact("https://example.org/lamp#lux") == "lux"


async def test_concurrent_updates_in_one_process_keep_every_member(services: Services) -> None:
    """Each update is a read-modify-write of the stored document: one at a time."""
    manager = services.subscriptions.manager
    sub_id = await manager.create(None, None, {
        "type": "Subscription", "entities": [{"type": "Lamp"}],
        "notification": {"endpoint": {"uri": "http://h/n"}}})
    await asyncio.gather(manager.update(None, sub_id, {"subscriptionName": "lamps"}),
                         manager.update(None, sub_id, {"description": "every lamp"}),
                         manager.update(None, sub_id, {"throttling": 5}))
    got = await manager.retrieve(None, sub_id)
    assert (got["subscriptionName"], got["description"], got["throttling"]) == (
        "lamps", "every lamp", 5)
    (stored,) = await services.store.subscriptions(None)
    assert orjson.loads(stored.doc)["throttling"] == 5
