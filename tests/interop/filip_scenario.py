"""A user's session with FiLiP (PyPI ``filip``, the FIWARE Library for Python), run unchanged
against a cityvisor broker through its NGSI-LD client, ``ContextBrokerLDClient``.

Run by ``test_clients.py`` in the library's own virtual environment::

    python filip_scenario.py BROKER_URL RECEIVER_URL

Each step prints ``ok <step>``; any failure raises (non-zero exit status).
"""

from __future__ import annotations

import sys

from filip.clients.ngsi_ld.cb import ContextBrokerLDClient
from filip.models.base import FiwareLDHeader
from filip.models.ngsi_ld.context import ActionTypeLD, ContextLDEntity, ContextProperty
from filip.models.ngsi_ld.subscriptions import (
    Endpoint,
    EntityInfo,
    NotificationParams,
    SubscriptionLD,
)
from scenario_steps import notifications, step

broker, receiver = sys.argv[1], sys.argv[2]
CORE = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld"


def lamp(n: int, power: float, lon: float, lat: float) -> ContextLDEntity:
    return ContextLDEntity(
        id=f"urn:ngsi-ld:Streetlight:nimes-{n:04d}", type="Streetlight",
        powerState={"type": "Property", "value": "on"},
        power={"type": "Property", "value": power, "unitCode": "WTT"},
        location={"type": "GeoProperty", "value": {"type": "Point", "coordinates": [lon, lat]}},
        refStreet={"type": "Relationship", "object": "urn:ngsi-ld:Street:rue-de-la-republique"},
    )


# the tenant header makes FiLiP create the tenant (a first write) when it starts
client = ContextBrokerLDClient(url=broker, fiware_header=FiwareLDHeader(ngsild_tenant="nimes"))
step("connect")

# entities CRUD
first = lamp(1, 70.0, 4.3601, 43.8367)
client.post_entity(first)
got = client.get_entity(first.id)
assert got.id == first.id and got.type == "Streetlight", got
assert got.model_dump()["power"]["value"] == 70.0, got.model_dump()
step("create and retrieve")

client.append_entity_attributes(ContextLDEntity(
    id=first.id, type="Streetlight",
    illuminanceLevel={"type": "Property", "value": 0.8}))
assert client.get_entity(first.id).model_dump()["illuminanceLevel"]["value"] == 0.8
step("append attributes")

client.update_entity_attribute(first.id, attr=ContextProperty(value=35.0),
                               attr_name="power")
assert client.get_entity(first.id).model_dump()["power"]["value"] == 35.0
step("update attribute")

kv = client.get_entity(first.id, options="keyValues")
assert kv.model_dump()["power"] == 35.0, kv.model_dump()
step("keyValues")

client.delete_attribute(first.id, "illuminanceLevel")
assert "illuminanceLevel" not in client.get_entity(first.id).model_dump()
step("delete attribute")

# batch operations: create, upsert, update, then delete by ids
lamps = [lamp(n, 50.0 + n, 4.35 + n / 2000, 43.83 + n / 2000) for n in range(2, 42)]
client.entity_batch_operation(entities=lamps, action_type=ActionTypeLD.CREATE)
step("batch create")
lamps[0] = lamp(2, 150.0, 4.351, 43.831)
client.entity_batch_operation(entities=lamps[:3], action_type=ActionTypeLD.UPSERT)
assert client.get_entity(lamps[0].id).model_dump()["power"]["value"] == 150.0
step("batch upsert")
lamps[1] = lamp(3, 160.0, 4.3515, 43.8315)
client.entity_batch_operation(entities=[lamps[1]], action_type=ActionTypeLD.UPDATE)
assert client.get_entity(lamps[1].id).model_dump()["power"]["value"] == 160.0
step("batch update")

# queries: type, q, geo-query, pagination (FiLiP pages with limit/offset and count)
every = client.get_entity_list(entity_type="Streetlight", limit=1000)
assert len(every) == 41, len(every)
strong = client.get_entity_list(entity_type="Streetlight", q="power>=85")
assert {e.id for e in strong} == {e.id for e in lamps if e.model_dump()["power"]["value"] >= 85}
near = client.get_entity_list(entity_type="Streetlight", georel="near;maxDistance==300",
                              geometry="Point", coordinates="[4.3601,43.8367]")
assert first.id in {e.id for e in near}
assert lamps[-1].id not in {e.id for e in near}
paged = ContextBrokerLDClient(url=broker, pagination_limit=7,
                              fiware_header=FiwareLDHeader(ngsild_tenant="nimes"))
assert {e.id for e in paged.get_entity_list(entity_type="Streetlight", limit=1000)} \
    == {e.id for e in every}
step("query")

# subscription with a local receiver
subscription = SubscriptionLD(
    id="urn:ngsi-ld:Subscription:streetlight-power",
    description="Puissance des lampadaires",
    entities=[EntityInfo(type="Streetlight")],
    watchedAttributes=["power"],
    notification=NotificationParams(attributes=["power"],
                                    endpoint=Endpoint(uri=receiver, accept="application/json")),
)
client.post_subscription(subscription)
assert any(s.id == subscription.id for s in client.get_subscription_list())
assert client.get_subscription(subscription.id).description == "Puissance des lampadaires"
client.update_entity_attribute(first.id, attr=ContextProperty(value=20.0),
                               attr_name="power")
received = notifications(receiver)
assert received, "no notification"
assert received[0]["subscriptionId"] == subscription.id
assert received[0]["data"][0]["id"] == first.id
assert received[0]["data"][0]["power"]["value"] == 20.0
step("subscription")
client.delete_subscription(subscription.id)
assert all(s.id != subscription.id for s in client.get_subscription_list())
step("unsubscribe")

# clean-up as FiLiP's own tests do it: a batch delete of ids, then one delete
client.entity_batch_operation(entities=lamps, action_type=ActionTypeLD.DELETE)
client.delete_entity_by_id(first.id)
assert client.get_entity_list(entity_type="Streetlight") == []
step("delete")
print("scenario complete", flush=True)
