"""A user's session with ngsildclient (PyPI ``ngsildclient``, the Python client of the
``pyngsildclient`` project), run unchanged against a cityvisor broker.

Run by ``test_clients.py`` in the library's own virtual environment::

    python ngsildclient_scenario.py HOST PORT RECEIVER_URL

Each step prints ``ok <step>``; any failure raises (non-zero exit status).
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from ngsildclient import Client, Entity, SubscriptionBuilder
from scenario_steps import notifications, step

host, port, receiver = sys.argv[1], int(sys.argv[2]), sys.argv[3]


client = Client(hostname=host, port=port, verbose=False)
step("connect")

# entities CRUD
gauge = Entity("WaterLevelGauge", "Nimes:Cadereau:Gauge1")  # urn:ngsi-ld:WaterLevelGauge:...
gauge.prop("waterLevel", 0.42, unitcode="MTR", observedat=datetime(2026, 10, 3, 6, 0, tzinfo=UTC))
gauge.prop("name", "Cadereau d'Alès, pont de la Route d'Alès")
gauge.gprop("location", (43.8420, 4.3500))  # (lat, lon)
assert client.create(gauge), "create"
step("create")

got = client.get(gauge.id)
assert got["waterLevel"]["value"] == 0.42, got.to_dict()
assert got["location"]["value"]["coordinates"] == [4.35, 43.842], got.to_dict()
assert client.exists(gauge.id)
step("retrieve")

got["waterLevel"]["value"] = 0.57
assert client.update(got), "update"
assert client.get(gauge.id)["waterLevel"]["value"] == 0.57
step("update")

# batch create / upsert of several entities
gauges = []
for i in range(2, 32):
    e = Entity("WaterLevelGauge", f"Nimes:Vistre:Gauge{i}")
    e.prop("waterLevel", i / 10, unitcode="MTR")
    e.gprop("location", (43.80 + i / 1000, 4.30 + i / 1000))
    gauges.append(e)
result = client.create(*gauges)
assert result.ok, repr(result)
step("batch create")
gauges[0]["waterLevel"]["value"] = 9.9
result = client.upsert(*gauges[:5])
assert result.ok, repr(result)
assert client.get(gauges[0].id)["waterLevel"]["value"] == 9.9
step("batch upsert")

# queries: type, q, count; the client pages through the 31 results (default page: 20)
# (its `gq` argument sends a `geoQ` URL parameter that NGSI-LD does not define: geo-queries
# are driven with FiLiP in filip_scenario.py)
everything = client.query(type="WaterLevelGauge")
assert len(everything) == 31, len(everything)
high = client.query(type="WaterLevelGauge", q="waterLevel>2.5")
assert {e.id for e in high} == {gauges[0].id} | {g.id for g in gauges[24:]}, [e.id for e in high]
assert client.count(type="WaterLevelGauge") == 31
assert client.count(type="WaterLevelGauge", q="waterLevel>2.5") == len(high)
step("query")

# temporal: the history of the gauge
for level, minute in ((0.8, 10), (1.3, 20), (2.1, 30)):
    reading = Entity("WaterLevelGauge", "Nimes:Cadereau:Gauge1")
    reading.prop("waterLevel", level, unitcode="MTR",
                 observedat=datetime(2026, 10, 3, 6, minute, tzinfo=UTC))
    client.update(reading)
troes = client.temporal.get(gauge.id, attrs=["waterLevel"])
values = sorted(v for v, _ in troes[0]["waterLevel"]["values"]) if isinstance(troes, list) \
    else sorted(v for v, _ in troes["waterLevel"]["values"])
assert {0.8, 1.3, 2.1} <= set(values), troes
step("temporal")

# subscription with a local receiver
subscr = (SubscriptionBuilder(receiver).description("Niveau haut au Cadereau")
          .select_type("WaterLevelGauge").watch(["waterLevel"]).query("waterLevel>3").build())
sid = client.subscriptions.create(subscr)
assert client.subscriptions.exists(sid)
alarm = Entity("WaterLevelGauge", "Nimes:Cadereau:Gauge1")
alarm.prop("waterLevel", 3.4, unitcode="MTR")
client.update(alarm)
received = notifications(receiver)
assert received and received[0]["subscriptionId"] == sid, received
assert received[0]["data"][0]["id"] == gauge.id
assert received[0]["data"][0]["waterLevel"]["value"] == 3.4
step("subscription")
assert client.subscriptions.delete("Niveau haut")  # by name or description
assert not client.subscriptions.exists(sid)
step("unsubscribe")

# clean up: delete one entity, then the rest by type
assert client.delete(gauge)
assert not client.exists(gauge.id)
client.drop("WaterLevelGauge")
assert client.count(type="WaterLevelGauge") == 0
step("delete")
client.close()
print("scenario complete", flush=True)
