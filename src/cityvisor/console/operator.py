"""The operator console's API routes (under ``/console/api``), composed by :mod:`cityvisor.web`.

| route | role | what |
|---|---|---|
| ``GET /console/api/mode`` | none | whether sign-in needs a token (auth on) or only a name |
| ``GET /console/api/session`` | reader | the signed-in operator: actor, role, tenant; the tile URL |
| ``GET /console/api/layers`` | reader | the map layers (kind, entity type, @context) |
| ``GET /console/api/layers/{kind}`` | reader | every asset of a kind, as compact columns (kept live while consoles watch) |
| ``GET /console/api/geo/{name}`` | reader | bundled outlines: communes, departements, region |
| ``GET /console/api/alerts`` | reader | Alert entities by severity and age (``domain``, ``commune``, ``state``) |
| ``GET /console/api/alerts/{id}/history`` | reader | the alert's audit trail |
| ``POST /console/api/alerts/{id}/actions`` | writer | a workflow action |
| ``GET /console/api/flood`` | reader | flood warning points, most urgent first |
| ``GET /console/api/events`` | reader | live changes (server-sent events; at most ``events.MAX_STREAMS``) |
"""

from __future__ import annotations

from starlette.routing import Route

from . import alarms, crisis, events, layers, session
from .session import console_endpoint

API = "/console/api"

ROUTES = [
    Route(API + "/mode", session.session_mode, methods=["GET"]),
    Route(API + "/session", console_endpoint(session.session), methods=["GET"]),
    Route(API + "/layers", console_endpoint(layers.layer_list), methods=["GET"]),
    Route(API + "/layers/{kind}", console_endpoint(events.layer), methods=["GET"]),
    Route(API + "/geo/{name}", console_endpoint(layers.geography), methods=["GET"]),
    Route(API + "/alerts", console_endpoint(alarms.list_alerts), methods=["GET"]),
    Route(API + "/alerts/{id:path}/history", console_endpoint(alarms.history), methods=["GET"]),
    Route(API + "/alerts/{id:path}/actions", console_endpoint(alarms.act, "writer"),
          methods=["POST"]),
    Route(API + "/flood", console_endpoint(crisis.flood_view), methods=["GET"]),
    Route(API + "/events", console_endpoint(events.events), methods=["GET"]),
]
