"""The served OpenAPI 3.0 description of the NGSI-LD API subset cityvisor implements.

It is written from the route table's point of view (paths, parameters, bodies, status codes)
so that clients can discover the API and fuzzers (schemathesis) can exercise it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from cityvisor import __version__
from cityvisor.ngsild.tenants import TENANT_NAME

_STR = {"type": "string"}
_INT = {"type": "integer"}
_BOOL = {"type": "string", "enum": ["true", "false"]}


def _param(name: str, schema: dict[str, Any], where: str = "query",
           required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path", "schema": schema}


_TENANT = _param("NGSILD-Tenant", {"type": "string", "pattern": f"^{TENANT_NAME.pattern}$"},
                 "header")
_ENTITY_ID = _param("entityId", {"type": "string", "format": "uri"}, "path")
_ATTR_ID = _param("attrId", _STR, "path")
_SHAPE = [_param("options", _STR), _param("format", {"type": "string", "enum": [
    "normalized", "concise", "keyValues", "simplified", "geojson"]}), _param("attrs", _STR),
    _param("pick", _STR), _param("omit", _STR), _param("lang", _STR),
    _param("geometryProperty", _STR),
    _param("join", {"type": "string", "enum": ["inline", "flat", "@none"]}),
    _param("joinLevel", {"type": "integer", "minimum": 1, "maximum": 10}),
    _param("containedBy", _STR)]
_QUERY = [_param("id", _STR), _param("idPattern", _STR), _param("type", _STR), _param("q", _STR),
          _param("georel", _STR), _param("geometry", _STR), _param("coordinates", _STR),
          _param("geoproperty", _STR), _param("limit", _INT), _param("offset", _INT),
          _param("count", _BOOL), _param("local", _BOOL)]
#: Query Entities only: scope query (4.19), context source filter, ordering (4.23)
_ORDER = [_param("orderBy", _STR), _param("orderFrom", _STR), _param("collation", _STR)]
_SELECT = [_param("scopeQ", _STR), _param("csf", _STR)]
_PAGING = [_param("limit", _INT), _param("offset", _INT), _param("count", _BOOL),
           _param("local", _BOOL)]
#: entity maps on retrieve and query (clauses 5.7.1.4-5.7.4.4): the flag and the header
_MAPPED = [_param("entityMap", _BOOL), _param("NGSILD-EntityMap", _STR, "header")]

_ATTRIBUTE = {"type": "object", "additionalProperties": True}
_ENTITY = {"type": "object", "required": ["id", "type"], "properties": {
    "id": {"type": "string", "format": "uri"},
    "type": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}},
    "additionalProperties": _ATTRIBUTE}
_FRAGMENT = {"type": "object", "additionalProperties": _ATTRIBUTE}
_ENTITIES = {"type": "array", "items": _ENTITY}
_IDS = {"type": "array", "items": {"type": "string", "format": "uri"}}
_QUERY_BODY: dict[str, Any] = {"type": "object", "properties": {
    "type": {"type": "string", "enum": ["Query"]}, "entities": {"type": "array", "items": {
        "type": "object"}}, "attrs": {"type": "array", "items": _STR}, "q": _STR,
    "geoQ": {"type": "object"}}}
_PROBLEM = {"description": "Error (application/problem+json)",
            "content": {"application/problem+json": {"schema": {"type": "object"}}}}


def _op(summary: str, params: list[dict[str, Any]], ok: dict[str, str],
        body: dict[str, Any] | None = None) -> dict[str, Any]:
    responses: dict[str, Any] = {code: {"description": text} for code, text in ok.items()}
    for code in ("400", "401", "403", "404", "409", "413", "415"):
        responses.setdefault(code, _PROBLEM)
    op: dict[str, Any] = {"summary": summary, "parameters": [_TENANT, *params],
                          "responses": responses, "security": [{"bearer": []}]}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": body}, "application/ld+json": {"schema": body}}}
    return op


_LOCAL = _param("local", _BOOL)


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    ok200 = {"200": "OK"}
    no_content = {"204": "No Content"}
    batch = {"204": "All succeeded", "207": "Some failed (BatchOperationResult)"}
    paths: dict[str, Any] = {
        "/entities": {
            "get": _op("Query entities (6.4.3.2)",
                       _QUERY + _SELECT + _ORDER + _SHAPE + _MAPPED,
                       {**ok200, "201": "OK, and an entity map was made"}),
            "post": _op("Create entity (6.4.3.1)", [], {"201": "Created"}, _ENTITY),
            "delete": _op("Purge entities (6.4.3.3)",
                          [p for p in _QUERY if p["name"] not in ("limit", "offset", "count")]
                          + [_param("attrs", _STR), _param("keep", _STR), _param("drop", _STR)],
                          no_content)},
        "/entities/{entityId}": {
            "get": _op("Retrieve entity (6.5.3.1)", [_ENTITY_ID, *_SHAPE, *_MAPPED], ok200),
            "put": _op("Replace entity (6.5.3.3)", [_ENTITY_ID], no_content, _FRAGMENT),
            "patch": _op("Merge entity (6.5.3.4)", [_ENTITY_ID], no_content, _FRAGMENT),
            "delete": _op("Delete entity (6.5.3.2)", [_ENTITY_ID], no_content)},
        "/entities/{entityId}/attrs": {
            "post": _op("Append attributes (6.6.3.1)", [_ENTITY_ID, _param("options", _STR)],
                        {"204": "No Content", "207": "Partial"}, _FRAGMENT),
            "patch": _op("Update attributes (6.6.3.2)", [_ENTITY_ID],
                         {"204": "No Content", "207": "Partial"}, _FRAGMENT)},
        "/entities/{entityId}/attrs/{attrId}": {
            "patch": _op("Partial attribute update (6.7.3.1)", [_ENTITY_ID, _ATTR_ID],
                         no_content, _ATTRIBUTE),
            "put": _op("Replace attribute (6.7.3.3)", [_ENTITY_ID, _ATTR_ID], no_content,
                       _ATTRIBUTE),
            "delete": _op("Delete attribute (6.7.3.2)", [_ENTITY_ID, _ATTR_ID,
                          _param("datasetId", _STR), _param("deleteAll", _BOOL)], no_content)},
        "/entityOperations/create": {"post": _op("Batch create (6.14)", [],
                                                 {"201": "Created", "207": "Partial"}, _ENTITIES)},
        "/entityOperations/upsert": {"post": _op("Batch upsert (6.15)", [_param("options", _STR)],
                                                 {"201": "Created", **batch}, _ENTITIES)},
        "/entityOperations/update": {"post": _op("Batch update (6.16)", [_param("options", _STR)],
                                                 batch, _ENTITIES)},
        "/entityOperations/merge": {"post": _op("Batch merge (6.31)", [], batch, _ENTITIES)},
        "/entityOperations/delete": {"post": _op("Batch delete (6.17)", [], batch, _IDS)},
        "/entityOperations/query": {"post": _op("Query via POST (6.23)", _PAGING + _ORDER + _SHAPE,
                                                ok200, _QUERY_BODY)},
        "/types": {"get": _op("Entity types (6.25)", [_param("details", _BOOL), _LOCAL],
                              ok200)},
        "/types/{type}": {"get": _op("Entity type details (6.26)",
                                     [_param("type", _STR, "path"), _LOCAL], ok200)},
        "/attributes": {"get": _op("Attributes (6.27)", [_param("details", _BOOL), _LOCAL],
                                   ok200)},
        "/attributes/{attrId}": {"get": _op("Attribute details (6.28)", [_ATTR_ID, _LOCAL],
                                            ok200)},
        "/jsonldContexts": {
            "get": _op("List @contexts (6.30.3.2)", [_param("details", _BOOL),
                                                      _param("kind", _STR)], ok200),
            "post": _op("Add an @context (6.30.3.1)", [], {"201": "Created"},
                        {"type": "object", "required": ["@context"]})},
        "/jsonldContexts/{contextId}": {
            "get": _op("Serve an @context (6.30.3.3)", [_param("contextId", _STR, "path"),
                                                         _param("details", _BOOL)], ok200),
            "delete": _op("Delete and reload an @context (6.30.3.4)",
                          [_param("contextId", _STR, "path"), _param("reload", _BOOL)],
                          no_content)},
        "/entityMaps/{entityMapId}": _entity_map_paths(),
        "/info/sourceIdentity": {"get": _op("Context source identity (5.15.1)", [], ok200)},
    }
    paths.update(_subscription_paths())
    paths.update(_temporal_paths())
    return {
        "openapi": "3.0.3",
        "info": {"title": "cityvisor NGSI-LD API", "version": __version__,
                 "description": "ETSI GS CIM 009 v1.8 context information management API"},
        "servers": [{"url": "/ngsi-ld/v1"}],
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def _subscription_paths() -> dict[str, Any]:
    """Subscriptions (clause 6.10-6.11)."""
    sub_id = _param("subscriptionId", {"type": "string", "format": "uri"}, "path")
    body = {"type": "object", "properties": {
        "id": {"type": "string", "format": "uri"},
        "type": {"type": "string", "enum": ["Subscription"]},
        "entities": {"type": "array", "items": {"type": "object"}},
        "watchedAttributes": {"type": "array", "items": _STR}, "q": _STR,
        "geoQ": {"type": "object"}, "notificationTrigger": {"type": "array", "items": _STR},
        "throttling": {"type": "number"}, "timeInterval": {"type": "number"},
        "expiresAt": {"type": "string", "format": "date-time"}, "isActive": {"type": "boolean"},
        "jsonldContext": _STR,
        "notification": {"type": "object", "properties": {
            "attributes": {"type": "array", "items": _STR},
            "format": {"type": "string", "enum": ["normalized", "keyValues", "concise"]},
            "showChanges": {"type": "boolean"}, "sysAttrs": {"type": "boolean"},
            "endpoint": {"type": "object", "required": ["uri"], "properties": {
                "uri": {"type": "string", "format": "uri"}, "accept": _STR,
                "receiverInfo": {"type": "array", "items": {"type": "object"}},
                "notifierInfo": {"type": "array", "items": {"type": "object"}}}}}}}}
    return {
        "/subscriptions": {
            "get": _op("Query subscriptions (6.10.3.2)", [
                _param("limit", _INT), _param("offset", _INT), _param("count", _BOOL)],
                {"200": "OK"}),
            "post": _op("Create subscription (6.10.3.1)", [], {"201": "Created"},
                        {**body, "required": ["notification"]})},
        "/subscriptions/{subscriptionId}": {
            "get": _op("Retrieve subscription (6.11.3.1)", [sub_id], {"200": "OK"}),
            "patch": _op("Update subscription (6.11.3.2)", [sub_id], {"204": "No Content"},
                         body),
            "delete": _op("Delete subscription (6.11.3.3)", [sub_id], {"204": "No Content"})},
    }


def _entity_map_paths() -> dict[str, Any]:
    """An EntityMap (clause 6.32)."""
    map_id = _param("entityMapId", {"type": "string", "format": "uri"}, "path")
    body = {"type": "object", "properties": {
        "expiresAt": {"type": "string", "format": "date-time"}}}
    return {
        "get": _op("Retrieve EntityMap (6.32.3.1)", [map_id], {"200": "OK"}),
        "patch": _op("Update EntityMap (6.32.3.2)", [map_id], {"204": "No Content"}, body),
        "delete": _op("Delete EntityMap (6.32.3.3)", [map_id], {"204": "No Content"})}


def _temporal_paths() -> dict[str, Any]:
    """Temporal API (clause 6.18-6.22)."""
    time = [_param("timerel", {"type": "string", "enum": ["before", "after", "between"]}),
            _param("timeAt", {"type": "string", "format": "date-time"}),
            _param("endTimeAt", {"type": "string", "format": "date-time"}),
            _param("timeproperty", {"type": "string", "enum": [
                "observedAt", "createdAt", "modifiedAt"]}),
            _param("lastN", _INT), _param("options", _STR), _param("aggrMethods", _STR),
            _param("aggrPeriodDuration", _STR)]
    entity = {"type": "object", "required": ["id", "type"], "properties": {
        "id": {"type": "string", "format": "uri"},
        "type": {"oneOf": [_STR, {"type": "array", "items": _STR}]}},
        "additionalProperties": {"oneOf": [_ATTRIBUTE, {"type": "array", "items": _ATTRIBUTE}]}}
    fragment = {"type": "object", "additionalProperties": {
        "oneOf": [_ATTRIBUTE, {"type": "array", "items": _ATTRIBUTE}]}}
    query = {"type": "object", "properties": {
        **_QUERY_BODY["properties"], "temporalQ": {"type": "object", "properties": {
            "timerel": time[0]["schema"], "timeAt": time[1]["schema"],
            "endTimeAt": time[2]["schema"], "timeproperty": time[3]["schema"],
            "lastN": _INT}}}}
    instance = _param("instanceId", {"type": "string", "format": "uri"}, "path")
    ok = {"200": "OK", "206": "Partial Content (Content-Range: date-time ...)"}
    return {
        "/temporal/entities": {
            "get": _op("Query temporal evolution of entities (6.18.3.2)",
                       _QUERY + time + [_param("attrs", _STR), *_MAPPED],
                       {**ok, "201": "OK, and an entity map was made"}),
            "post": _op("Create or update temporal representation (6.18.3.1)", [],
                        {"201": "Created", "204": "Updated"}, entity)},
        "/temporal/entities/{entityId}": {
            "get": _op("Retrieve temporal evolution of an entity (6.19.3.1)",
                       [_ENTITY_ID, _param("attrs", _STR), *time, *_MAPPED], ok),
            "delete": _op("Delete temporal representation (6.19.3.2)", [_ENTITY_ID],
                          {"204": "No Content"})},
        "/temporal/entities/{entityId}/attrs": {
            "post": _op("Add attributes to temporal representation (6.20.3.1)", [_ENTITY_ID],
                        {"204": "No Content"}, fragment)},
        "/temporal/entities/{entityId}/attrs/{attrId}": {
            "delete": _op("Delete attribute history (6.21.3.1)", [
                _ENTITY_ID, _ATTR_ID, _param("datasetId", _STR), _param("deleteAll", _BOOL)],
                {"204": "No Content"})},
        "/temporal/entities/{entityId}/attrs/{attrId}/{instanceId}": {
            "patch": _op("Modify attribute instance (6.22.3.1)", [_ENTITY_ID, _ATTR_ID, instance],
                         {"204": "No Content"}, _ATTRIBUTE),
            "delete": _op("Delete attribute instance (6.22.3.2)",
                          [_ENTITY_ID, _ATTR_ID, instance], {"204": "No Content"})},
        "/temporal/entityOperations/query": {
            "post": _op("Query temporal evolution via POST (6.24.3.1)", _PAGING + time, ok,
                        query)},
    }
