"""NGSI-LD subscriptions (ETSI GS CIM 009 v1.8, clauses 5.2.12, 5.2.14, 5.2.15, 5.8, 5.11).

``SubscriptionManager`` validates and stores subscriptions, keeps the subscriptions of each
tenant in memory, and is an ``EntityBroker`` change listener: for every batch of ``WriteOp``
it finds the subscriptions whose selectors, watchedAttributes, q, geoQ and notificationTrigger
match, applies throttling, builds one Notification per subscription and returns it as an
``OutboxRecord`` staged in the same transaction as the change (transactional outbox). A tenant
with no subscription costs one dictionary lookup per write.

Periodic subscriptions (``timeInterval``) are served by ``periodic_tick(now)``, called by the
delivery service's scheduler (or directly by tests with a fake clock).

Choices (see docs/subscriptions.md): the subscription is returned in the terms of the reading
request's @context (``translate``);
an entity creation raises ``entityCreated`` and ``attributeCreated`` for each attribute; an
update compares instances (any change, ``modifiedAt`` included, is an update); a deletion
raises ``entityDeleted`` only; q and geoQ are evaluated on the new entity (the old one for a
deletion); throttling drops notifications inside the window (Orion-LD).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson

from cityvisor.broker.changes import ChangeSink, SubscriptionsChanged
from cityvisor.broker.entities import EntityBroker, utc_now
from cityvisor.broker.retries import current_operation, retried_on_stale
from cityvisor.ngsild import geo as geo_predicates
from cityvisor.ngsild import query as q_language
from cityvisor.ngsild import typequery
from cityvisor.ngsild.context import CORE_CONTEXT_URL, CORE_CONTEXT_URLS, TermMap
from cityvisor.ngsild.errors import (
    AlreadyExists,
    BadRequestData,
    NgsiLdError,
    NonexistentTenant,
    OperationNotSupported,
    ResourceNotFound,
)
from cityvisor.ngsild.model import NULL, VALUE_MEMBER, Representation, check_name, check_uri
from cityvisor.store.base import EntityQuery, EntitySelector, Store, WriteOp
from cityvisor.store.records import (
    OutboxRecord,
    StoredSubscription,
    SubscriptionDelete,
    SubscriptionPut,
    SubscriptionStatus,
)

TRIGGERS = ("entityCreated", "entityUpdated", "entityDeleted",
            "attributeCreated", "attributeUpdated", "attributeDeleted")
DEFAULT_TRIGGERS = ("attributeCreated", "attributeUpdated")
FORMATS = ("normalized", "keyValues", "concise", "simplified")
ACCEPTS = ("application/json", "application/ld+json")
SCHEMES = ("http", "https", "mqtt", "mqtts")
MQTT_VERSIONS = ("mqtt3.1.1", "mqtt5.0")
#: members computed by the broker: ignored when a client sends them
READ_ONLY = ("status", "createdAt", "modifiedAt", "@context")
#: NotificationParams members not implemented (linked entities, clause 4.5.23): refused (422)
NOTIFICATION_UNSUPPORTED = ("join", "joinLevel")
READ_ONLY_NOTIFICATION = ("status", "timesSent", "timesFailed", "lastNotification",
                          "lastSuccess", "lastFailure")
UNSUPPORTED = ("scopeQ", "temporalQ", "expandValues", "join", "joinLevel")
#: the members of a Subscription (clause 5.2.12, Table 5.2.12-1); others are not kept
MEMBERS = frozenset((
    "id", "type", "subscriptionName", "description", "entities", "watchedAttributes",
    "notificationTrigger", "timeInterval", "q", "geoQ", "csf", "isActive", "notification",
    "expiresAt", "throttling", "lang", "datasetId", "jsonldContext", *UNSUPPORTED))
#: entity members that are not attributes (pick / omit name them as they are)
ENTITY_MEMBERS = ("id", "type", "scope", "createdAt", "modifiedAt", "deletedAt")
PERIODIC_LIMIT = 1000  # entities per periodic notification
PREVIOUS = {"value": "previousValue", "object": "previousObject",
            "languageMap": "previousLanguageMap", "json": "previousJson",
            "vocab": "previousVocab", "valueList": "previousValueList",
            "objectList": "previousObjectList"}


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Subscription:
    """A validated subscription, ready to match; ``doc`` is what is stored and returned."""

    id: str
    doc: dict[str, Any]
    context: Any  # the creator's @context (None: core)
    terms: TermMap  # compacts notifications (jsonldContext if given, else the creator's)
    source_terms: TermMap  # the creator's: the terms of ``doc``
    notify_context: Any  # the @context value notifications carry / link
    selectors: tuple[EntitySelector, ...]
    watched: frozenset[str] | None
    q: q_language.QNode | None
    geo: geo_predicates.GeoQuery | None
    triggers: frozenset[str]
    throttling: float
    time_interval: float
    expires_at: float | None
    is_active: bool
    rep: Representation
    show_changes: bool
    target: dict[str, Any]
    # runtime state (of this process: the delivery figures are the store's)
    last_sent: float = -math.inf
    #: the operation (``retries.current_operation``) whose notification opened the window
    throttled_by: object | None = None
    next_due: float = 0.0
    target_json: str = field(default="", repr=False)

    def status(self, now: float) -> str:
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active" if self.is_active else "paused"

    def render(self, now: float, terms: TermMap | None = None,
               stored: StoredSubscription | None = None) -> dict[str, Any]:
        """Clause 5.2.12: the members given by the creator, the notificationTrigger in force
        (default attributeCreated, attributeUpdated) and the read-only status; the
        NotificationParams (5.2.14) carry the delivery figures of ``stored`` (the store's
        row: every worker's deliveries) once a notification was tried."""
        out = translate(self.doc, self.source_terms, terms or self.source_terms)
        out.setdefault("notificationTrigger", list(DEFAULT_TRIGGERS))
        out["status"] = self.status(now)
        notification = dict(out["notification"])
        if stored is not None:
            for key, value in (("timesSent", stored.times_sent or None),
                               ("timesFailed", stored.times_failed or None),
                               ("lastNotification", stored.last_notification),
                               ("lastSuccess", stored.last_success),
                               ("lastFailure", stored.last_failure),
                               ("status", stored.delivery)):
                if value is not None:
                    notification[key] = value
        out["notification"] = notification
        return out


# ------------------------------------------------------------------------ validation


def _strings(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(
            isinstance(v, str) and v for v in value):
        raise BadRequestData(f"{what} must be a non-empty list of non-empty strings")
    return value


def _key_values(value: object, what: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not all(
            isinstance(i, dict) and set(i) == {"key", "value"}
            and isinstance(i["key"], str) and i["key"] and isinstance(i["value"], str)
            for i in value):
        raise BadRequestData(f"{what} must be a list of {{\"key\": ..., \"value\": ...}} "
                             "objects with string members")
    return value


def _positive(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            0 < value < 10**9) or value != value:
        raise BadRequestData(f"{what} must be a positive number of seconds")
    return float(value)


def _query(doc: dict[str, Any], name: str, terms: TermMap) -> q_language.QNode:
    """A q or csf member (clause 4.9), decoded once when sent percent-encoded
    (``unescape_q_member``)."""
    text = doc[name]
    if not isinstance(text, str) or not text.strip():
        raise BadRequestData(f"{name} must be a non-empty string")
    return q_language.parse_q(q_language.unescape_q_member(text), terms.expand)


def _dataset_ids(raw: object) -> frozenset[str]:
    """datasetId (clause 5.2.12): the instances considered, ``@none`` for the default one."""
    items = _strings([raw] if isinstance(raw, str) else raw, "datasetId")
    for item in items:
        if item != "@none":
            check_uri(item, "datasetId")
    return frozenset(items)


def _projection(notification: dict[str, Any], terms: TermMap, notify_terms: TermMap
                ) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    """notification.pick / omit (clauses 5.2.14, 4.21): entity members to keep or to leave
    out, named as they appear in the notified entity; neither goes with ``attributes``."""
    chosen: dict[str, frozenset[str]] = {}
    for name in ("pick", "omit"):
        if name not in notification:
            continue
        if "attributes" in notification:
            raise BadRequestData(f"notification.{name} and notification.attributes cannot "
                                 "be used together")
        members = _strings(notification[name], f"notification.{name}")
        chosen[name] = frozenset(
            m if m in ENTITY_MEMBERS else notify_terms.compact(terms.expand(check_name(m)))
            for m in members)
    if len(chosen) == 2:
        raise BadRequestData("notification.pick and notification.omit cannot be used together")
    return chosen.get("pick"), chosen.get("omit")


def context_link(context: Any) -> str:
    """The URL of the Link header for a notification compacted with ``context`` (clause
    6.3.5): the context itself when it is one URL (the core context is always implied);
    otherwise, a list or an inline object cannot travel in a Link header, the core one."""
    if isinstance(context, list):
        urls = [c for c in context if not (isinstance(c, str) and c in CORE_CONTEXT_URLS)]
        context = urls[0] if len(urls) == 1 else None
    return context if isinstance(context, str) else CORE_CONTEXT_URL


_TYPE_NAME = re.compile(r"[^,;|()\s]+")


def translate(doc: dict[str, Any], source: TermMap, target: TermMap) -> dict[str, Any]:
    """``doc`` with the entity types and attribute names it holds (entities, watchedAttributes,
    geoQ.geoproperty, notification attributes / pick / omit) written in ``target``'s terms
    instead of ``source``'s (clause 6.3.5: a subscription is expanded with the @context of
    the request that gives it and compacted with that of the request that reads it). ``q``
    is kept as written. A new dict: ``doc`` is not changed."""
    if source is target:
        return dict(doc)

    def name(term: str) -> str:
        return term if term in ENTITY_MEMBERS else target.compact(source.expand(term))

    def names(value: Any) -> Any:
        return [name(v) if isinstance(v, str) else v for v in value] if isinstance(
            value, list) else value

    out = dict(doc)
    if isinstance(out.get("entities"), list):
        out["entities"] = [
            {**e, "type": _TYPE_NAME.sub(lambda m: name(m.group()), e["type"])}
            if isinstance(e, dict) and isinstance(e.get("type"), str) else e
            for e in out["entities"]]
    if "watchedAttributes" in out:
        out["watchedAttributes"] = names(out["watchedAttributes"])
    geo_q = out.get("geoQ")
    if isinstance(geo_q, dict) and isinstance(geo_q.get("geoproperty"), str):
        out["geoQ"] = {**geo_q, "geoproperty": name(geo_q["geoproperty"])}
    notification = out.get("notification")
    if isinstance(notification, dict):
        out["notification"] = {k: names(v) if k in ("attributes", "pick", "omit") else v
                               for k, v in notification.items()}
    return out


def check_endpoint(raw: object) -> dict[str, Any]:
    """Clause 5.2.15 Endpoint: uri (http, https, mqtt, mqtts), accept, receiverInfo,
    notifierInfo. Returns the cleaned endpoint."""
    if not isinstance(raw, dict):
        raise BadRequestData("notification.endpoint must be an object with a uri")
    uri = raw.get("uri")
    if not isinstance(uri, str):
        raise BadRequestData("notification.endpoint.uri must be a URL")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        raise BadRequestData(f"notification.endpoint.uri {uri[:80]!r} is not a URL") from None
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise BadRequestData(f"notification.endpoint.uri {uri[:80]!r} must be an http, https, "
                             "mqtt or mqtts URL with a host")
    if any(c.isspace() for c in uri) or (port is not None and not 0 < port < 65536):
        raise BadRequestData(f"notification.endpoint.uri {uri[:80]!r} is not a valid URL")
    if parts.scheme.startswith("mqtt"):
        topic = parts.path.lstrip("/")
        if not topic or "#" in uri or "+" in topic or parts.query:
            raise BadRequestData("An MQTT endpoint needs a topic without wildcards: "
                                 "mqtt://host:port/topic")
    endpoint: dict[str, Any] = {"uri": uri}
    accept = raw.get("accept", "application/json")
    if accept not in ACCEPTS:
        raise BadRequestData(f"notification.endpoint.accept must be one of {', '.join(ACCEPTS)}")
    endpoint["accept"] = accept
    if "receiverInfo" in raw:
        endpoint["receiverInfo"] = _key_values(raw["receiverInfo"], "receiverInfo")
    if "notifierInfo" in raw:
        info = _key_values(raw["notifierInfo"], "notifierInfo")
        for item in info:
            if item["key"] == "MQTT-QoS" and item["value"] not in ("0", "1", "2"):
                raise BadRequestData("notifierInfo MQTT-QoS must be 0, 1 or 2")
            if item["key"] == "MQTT-Version" and item["value"] not in MQTT_VERSIONS:
                raise BadRequestData(f"notifierInfo MQTT-Version must be one of "
                                     f"{', '.join(MQTT_VERSIONS)}")
        endpoint["notifierInfo"] = info
    return endpoint


def clean_document(body: object) -> dict[str, Any]:
    """The members of a subscription as stored: read-only members dropped, shape checked."""
    if not isinstance(body, dict):
        raise BadRequestData("A subscription must be a JSON object")
    for name in UNSUPPORTED:
        if name in body:
            raise OperationNotSupported(f"Subscription member {name} is not supported")
    doc = {k: v for k, v in body.items() if k in MEMBERS and k not in READ_ONLY}
    notification = doc.get("notification")
    if isinstance(notification, dict):
        doc["notification"] = {k: v for k, v in notification.items()
                               if k not in READ_ONLY_NOTIFICATION}
    return doc


async def build(doc: dict[str, Any], context: Any, broker: EntityBroker,
                now: float) -> Subscription:
    """Validate a cleaned document (with its ``id``) into a ``Subscription``."""
    terms = await broker.contexts.term_map(context)
    if doc.get("type", "Subscription") != "Subscription":
        raise BadRequestData("The type of a subscription must be Subscription")
    doc["type"] = "Subscription"
    check_uri(doc.get("id"), "Subscription id")
    for name in ("subscriptionName", "description", "lang"):
        if name in doc and not isinstance(doc[name], str):
            raise BadRequestData(f"{name} must be a string")
    selectors: tuple[EntitySelector, ...] = ()
    if "entities" in doc:
        raw = doc["entities"]
        if not isinstance(raw, list) or not raw:
            raise BadRequestData("entities must be a non-empty list of entity selectors")
        for item in raw:
            if not isinstance(item, dict) or not (set(item) & {"id", "idPattern", "type"}):
                raise BadRequestData("Each entity selector needs id, idPattern or type")
            if isinstance(item.get("id"), list):
                raise BadRequestData("Selector id must be a URI")
        selectors = tuple(EntityBroker._selector(item, terms) for item in raw)
    watched = None
    if "watchedAttributes" in doc:
        names = _strings(doc["watchedAttributes"], "watchedAttributes")
        watched = frozenset(terms.expand(check_name(n)) for n in names)
    q = _query(doc, "q", terms) if "q" in doc else None
    if "csf" in doc:
        _query(doc, "csf", terms)  # clause 4.9 syntax; no context source is queried here
    dataset_ids = _dataset_ids(doc["datasetId"]) if "datasetId" in doc else None
    geo = None
    if "geoQ" in doc:
        geo_q = doc["geoQ"]
        if not isinstance(geo_q, dict):
            raise BadRequestData("geoQ must be an object with georel, geometry, coordinates")
        if not all(k in geo_q for k in ("georel", "geometry", "coordinates")):
            raise BadRequestData("geoQ needs georel, geometry and coordinates")
        if isinstance(geo_q["coordinates"], (int, float, bool, dict)):
            raise BadRequestData("geoQ.coordinates must be an array")
        geo = geo_predicates.parse_geoquery(geo_q.get("georel"), geo_q.get("geometry"),
                                            geo_q.get("coordinates"), geo_q.get("geoproperty"),
                                            terms.expand)
    if not selectors and watched is None:
        raise BadRequestData("A subscription needs entities or watchedAttributes")
    triggers: tuple[str, ...] = DEFAULT_TRIGGERS
    if "notificationTrigger" in doc:
        triggers = tuple(_strings(doc["notificationTrigger"], "notificationTrigger"))
        unknown = [t for t in triggers if t not in TRIGGERS]
        if unknown:
            raise BadRequestData(f"Unknown notificationTrigger {unknown[0]!r}: use "
                                 f"{', '.join(TRIGGERS)}")
    throttling = _positive(doc["throttling"], "throttling") if "throttling" in doc else 0.0
    interval = _positive(doc["timeInterval"], "timeInterval") if "timeInterval" in doc else 0.0
    if interval and watched is not None:
        raise BadRequestData("timeInterval and watchedAttributes cannot be used together")
    if interval and throttling:
        raise BadRequestData("timeInterval and throttling cannot be used together")
    expires = None
    if "expiresAt" in doc:
        try:
            expires = epoch(doc["expiresAt"]) if isinstance(doc["expiresAt"], str) else None
        except ValueError:
            expires = None
        if expires is None or "T" not in doc["expiresAt"]:
            raise BadRequestData("expiresAt must be an ISO 8601 date-time")
    is_active = doc.get("isActive", True)
    if not isinstance(is_active, bool):
        raise BadRequestData("isActive must be true or false")
    notification = doc.get("notification")
    if not isinstance(notification, dict):
        raise BadRequestData("A subscription needs a notification object with an endpoint")
    for name in NOTIFICATION_UNSUPPORTED:
        if name in notification:
            raise OperationNotSupported(f"notification.{name} is not supported")
    form = notification.get("format", "normalized")
    if form not in FORMATS:
        raise BadRequestData(f"notification.format must be one of {', '.join(FORMATS)}")
    attrs = None
    if "attributes" in notification:
        names = _strings(notification["attributes"], "notification.attributes")
        attrs = frozenset(terms.expand(check_name(n)) for n in names)
    for flag in ("showChanges", "sysAttrs"):
        if not isinstance(notification.get(flag, False), bool):
            raise BadRequestData(f"notification.{flag} must be true or false")
    if notification.get("showChanges") and form in ("keyValues", "simplified"):
        raise BadRequestData("notification.showChanges cannot be true with the format "
                             f"{form} (clause 5.2.14)")
    endpoint = check_endpoint(notification.get("endpoint"))
    notification["endpoint"] = endpoint
    notify_context = context
    notify_terms = terms
    if "jsonldContext" in doc:
        url = doc["jsonldContext"]
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise BadRequestData("jsonldContext must be an http(s) URL")
        # an ImplicitlyCreated @context stands for the creator's: its terms are known
        if not broker.contexts.is_implicit_of(url, context):
            notify_terms = await broker.contexts.term_map(url)
        notify_context = url
    pick, omit = _projection(notification, terms, notify_terms)
    rep = Representation(form="keyValues" if form == "simplified" else form,
                         sys_attrs=notification.get("sysAttrs", False), attrs=attrs,
                         dataset_ids=dataset_ids, pick=pick, omit=omit)
    if notify_context is None:
        notify_context = CORE_CONTEXT_URL
    link = context_link(notify_context)
    target = {**endpoint, "link": link}
    sub = Subscription(
        id=doc["id"], doc=doc, context=context, terms=notify_terms, source_terms=terms,
        notify_context=notify_context, selectors=selectors, watched=watched, q=q, geo=geo,
        triggers=frozenset(triggers), throttling=throttling, time_interval=interval,
        expires_at=expires, is_active=is_active, rep=rep,
        show_changes=notification.get("showChanges", False), target=target)
    sub.target_json = orjson.dumps(target).decode()
    sub.next_due = now
    return sub


# ------------------------------------------------------------------------ matching


def selected(sub: Subscription, entity: dict[str, Any]) -> bool:
    """Does the entity match one of the subscription's entity selectors (or there are none)?"""
    if not sub.selectors:
        return True
    for selector in sub.selectors:
        if selector.ids is not None and entity["id"] not in selector.ids:
            continue
        if selector.id_pattern is not None and not q_language.pattern_matches(
                selector.id_pattern, entity["id"]):
            continue
        if selector.types is not None and not typequery.matches_types(
                selector.types, entity["type"]):
            continue
        return True
    return False


def _geo_matches(query: geo_predicates.GeoQuery, entity: dict[str, Any]) -> bool:
    for instance in entity["attrs"].get(query.geoproperty, ()):
        if instance["type"] == "GeoProperty" and geo_predicates.matches(query, instance["value"]):
            return True
    return False


def attribute_changes(old: dict[str, Any], new: dict[str, Any]
                      ) -> tuple[set[str], set[str], set[str]]:
    """(created, deleted, updated) attribute IRIs between two versions of an entity. An
    attribute is identified by its name and datasetId (clause 4.5.5): an instance added or
    removed beside others creates or deletes that attribute; a changed instance updates it."""
    created = new.keys() - old.keys()
    deleted = old.keys() - new.keys()
    updated: set[str] = set()
    for iri, instances in new.items():
        before = old.get(iri)
        if before is None or before == instances:
            continue
        if len(before) == 1 and len(instances) == 1 and (
                before[0].get("datasetId") == instances[0].get("datasetId")):
            updated.add(iri)  # the usual case: one instance, changed
            continue
        old_by_id = {i.get("datasetId"): i for i in before}
        new_by_id = {i.get("datasetId"): i for i in instances}
        if new_by_id.keys() - old_by_id.keys():
            created.add(iri)
        if old_by_id.keys() - new_by_id.keys():
            deleted.add(iri)
        if any(old_by_id[d] != i for d, i in new_by_id.items() if d in old_by_id):
            updated.add(iri)
    return created, deleted, updated


def triggered(sub: Subscription, op: WriteOp) -> bool:
    """Clause 5.11: does this change raise one of the subscription's triggers, on a watched
    attribute where attributes are concerned?"""
    triggers, watched = sub.triggers, sub.watched
    if op.new is None:
        return "entityDeleted" in triggers
    if op.old is None:
        if "entityCreated" in triggers:
            return True
        names = op.new["attrs"].keys()
        return "attributeCreated" in triggers and (
            watched is None or not watched.isdisjoint(names))
    created, deleted, updated = attribute_changes(op.old["attrs"], op.new["attrs"])
    if watched is not None:
        created, deleted, updated = created & watched, deleted & watched, updated & watched
    if ("attributeCreated" in triggers and created) or (
            "attributeUpdated" in triggers and updated) or (
            "attributeDeleted" in triggers and deleted):
        return True
    if "entityUpdated" in triggers:
        if created or deleted or updated:
            return True
        return watched is None and (op.old["type"] != op.new["type"]
                                    or op.old.get("scope") != op.new.get("scope"))
    return False


def matches(sub: Subscription, op: WriteOp, now: float) -> bool:
    """All the rules but throttling: active, selectors, trigger, q, geoQ."""
    if not sub.is_active or sub.time_interval or (
            sub.expires_at is not None and sub.expires_at <= now):
        return False
    entity = op.new if op.new is not None else op.old
    assert entity is not None
    if not selected(sub, entity) or not triggered(sub, op):
        return False
    if sub.q is not None and not q_language.evaluate(sub.q, entity):
        return False
    return sub.geo is None or _geo_matches(sub.geo, entity)


def render_entity(sub: Subscription, op: WriteOp, now_text: str) -> dict[str, Any]:
    """The entity of a notification, in the subscription's format, attributes and terms.

    A deleted attribute (or attribute instance) is shown with the NGSI-LD Null of its type
    (clause 4.5.0) beside the remaining ones. A deleted entity is its id, type and
    ``deletedAt``; with showChanges, also each of its attributes as NGSI-LD Null with its
    previous value (clause 5.2.14)."""
    from cityvisor.ngsild.model import compact_entity

    if op.new is None:
        assert op.old is not None
        if sub.show_changes and sub.rep.form != "keyValues":
            gone = {**op.old, "attrs": {iri: [_null_instance(i) for i in instances]
                                        for iri, instances in op.old["attrs"].items()}}
            out = compact_entity(gone, sub.terms, sub.rep)
            _add_previous(out, op.old, gone, sub)
            out["deletedAt"] = now_text
            return out
        types = [sub.terms.compact(t) for t in op.old["type"]]
        return {"id": op.old["id"], "type": types[0] if len(types) == 1 else types,
                "deletedAt": now_text}
    new = op.new
    if op.old is not None:
        new = _with_deletions(op.old, new)
    out = compact_entity(new, sub.terms, sub.rep)
    if sub.show_changes and op.old is not None and sub.rep.form != "keyValues":
        _add_previous(out, op.old, new, sub)
    return out


def _null_instance(instance: dict[str, Any]) -> dict[str, Any]:
    """The NGSI-LD Null of an attribute instance (clause 4.5.0), with its datasetId."""
    kind = instance["type"]
    member = VALUE_MEMBER[kind]
    value: Any = NULL
    if member == "languageMap":
        value = {"@none": NULL}
    elif member in ("valueList", "objectList"):
        value = [NULL]
    out = {"type": kind, member: value, "createdAt": instance["createdAt"],
           "modifiedAt": instance["modifiedAt"]}
    if "datasetId" in instance:
        out["datasetId"] = instance["datasetId"]
    return out


def _with_deletions(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` with the attribute instances deleted since ``old`` back, as NGSI-LD Null."""
    old_attrs, new_attrs = old["attrs"], new["attrs"]
    merged: dict[str, list[dict[str, Any]]] | None = None
    for iri, before in old_attrs.items():
        after = new_attrs.get(iri)
        if after is not None and (after is before or len(before) == 1 and len(after) >= 1
                                  and before[0].get("datasetId") is None
                                  and after[0].get("datasetId") is None):
            continue  # still there (the usual case: one default instance)
        kept = {i.get("datasetId") for i in after or ()}
        gone = [_null_instance(i) for i in before if i.get("datasetId") not in kept]
        if gone:
            if merged is None:
                merged = dict(new_attrs)
            merged[iri] = [*(after or ()), *gone]
    return new if merged is None else {**new, "attrs": merged}


def _add_previous(out: dict[str, Any], old: dict[str, Any], new: dict[str, Any],
                  sub: Subscription) -> None:
    """showChanges: previousValue (previousObject, ...) of the default instance."""
    for iri, instances in new["attrs"].items():
        before = old["attrs"].get(iri)
        if not before or before[0] == instances[0]:
            continue
        name = sub.terms.compact(iri)
        if name not in out:
            continue
        member = VALUE_MEMBER[before[0]["type"]]
        previous = before[0].get(member)
        if member == "vocab":  # stored expanded, notified in the notification's terms
            previous = _compact_vocab(previous, sub.terms)
        rendered = out[name]
        if isinstance(rendered, list):
            rendered = rendered[0]
            if isinstance(rendered, dict):
                rendered[PREVIOUS.get(member, "previousValue")] = previous
            continue
        if not isinstance(rendered, dict):
            rendered = out[name] = {"value": rendered}
        rendered[PREVIOUS.get(member, "previousValue")] = previous


def _compact_vocab(value: Any, terms: TermMap) -> Any:
    if isinstance(value, list):
        return [terms.compact(v) for v in value]
    return terms.compact(value) if isinstance(value, str) else value


def notification(sub: Subscription, data: list[dict[str, Any]], now_text: str) -> bytes:
    body: dict[str, Any] = {"id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}",
                            "type": "Notification", "subscriptionId": sub.id,
                            "notifiedAt": now_text, "data": data}
    if sub.target["accept"] == "application/ld+json":
        # JSON-LD: the @context of the notification, and of each entity, which a receiver
        # may take out of ``data`` and store as it is
        body["@context"] = sub.notify_context
        for entity in data:
            entity["@context"] = sub.notify_context
    return orjson.dumps(body)


# ------------------------------------------------------------------------ the manager


class SubscriptionManager:
    """Subscription operations (5.8) and the change listener that produces notifications."""

    def __init__(self, broker: EntityBroker, *, clock: Callable[[], float] = time.time,
                 wake: Callable[[str | None], None] | None = None) -> None:
        self.broker = broker
        self.store: Store = broker.store
        self.clock = clock
        self.wake = wake or (lambda tenant: None)
        self._subs: dict[str | None, dict[str, Subscription]] = {}
        #: per tenant, the subscriptions notified on change (not periodic): the hot path
        self._active: dict[str | None, list[Subscription]] = {}
        #: told of each committed create, update and delete (the change feed); None: alone
        self.on_commit: ChangeSink | None = None
        #: held from staging a subscription write to its commit, and while reloading: a
        #: reload reads committed rows, so it must not pass a write in flight
        self._writes = asyncio.Lock()
        #: held by each create, update and delete: one read-modify-write of a subscription
        #: at a time in this process (the store guards those of other processes)
        self._changing = asyncio.Lock()
        #: waits until the delivery figures of this process are stored (the outbox's
        #: ``settled``): a read of a subscription then counts the notifications sent so far
        self.settle: Callable[[str | None], Awaitable[None]] = _settled

    # -------------------------------------------------------------- cache

    async def _tenant(self, tenant: str | None,
                      stored_subs: list[StoredSubscription] | None = None
                      ) -> dict[str, Subscription]:
        """The tenant's subscriptions, loaded once (from ``stored_subs`` when already read)."""
        subs = self._subs.get(tenant)
        if subs is None:
            subs = await self._load(tenant, stored_subs)
            self._subs[tenant] = subs
            self._refresh(tenant)
        return subs

    async def _load(self, tenant: str | None,
                    stored_subs: list[StoredSubscription] | None = None
                    ) -> dict[str, Subscription]:
        if stored_subs is None:
            stored_subs = await self.store.subscriptions(tenant)
        subs: dict[str, Subscription] = {}
        for stored in stored_subs:
            try:
                sub = await build(orjson.loads(stored.doc), orjson.loads(stored.context),
                                  self.broker, self.clock())
            except NgsiLdError:
                continue  # e.g. its @context is no longer available: skip it
            subs[stored.id] = sub
        return subs

    async def reload(self, tenant: str | None) -> None:
        """Read the tenant's subscriptions again (another worker changed them). The new set
        replaces the old at once, so matching never sees a half-loaded tenant; a subscription
        that stays keeps its schedule and throttling state (they live in this process)."""
        async with self._writes:  # a local write is committed, or not yet staged
            fresh = await self._load(tenant)
            for sub_id, sub in fresh.items():
                kept = self._subs.get(tenant, {}).get(sub_id)
                if kept is not None:
                    sub.last_sent, sub.next_due = kept.last_sent, kept.next_due
            self._subs[tenant] = fresh
            self._refresh(tenant)

    async def reload_all(self) -> None:
        """``reload`` every tenant, and load those created since (a ``Resync``)."""
        default: list[str | None] = [None] if None in self._subs else []
        for tenant in [*default, *await self.store.tenants()]:
            await self.reload(tenant)

    def _committed(self, tenant: str | None) -> None:
        if self.on_commit is not None:
            self.on_commit(SubscriptionsChanged(tenant))

    def _refresh(self, tenant: str | None) -> None:
        self._active[tenant] = [s for s in self._subs.get(tenant, {}).values()
                                if not s.time_interval]

    async def load_all(self) -> None:
        """Load every tenant's subscriptions (at start: periodic ones need a schedule)."""
        tenants: list[str | None] = [None, *await self.store.tenants()]
        for tenant in tenants:
            stored = await self.store.subscriptions(tenant)
            if tenant is None and not stored:
                continue  # the default tenant's storage is created by its first write only
            await self._tenant(tenant, stored)

    def tenants(self) -> list[str | None]:
        return list(self._subs)

    # -------------------------------------------------------------- operations (5.8)

    @retried_on_stale
    async def create(self, tenant: str | None, context: Any, body: object,
                     base_url: str | None = None) -> str:
        """5.8.1 Create Subscription. Without a ``jsonldContext``, a request @context that
        is not one URL gets an ImplicitlyCreated @context served under ``base_url``
        (clause 5.13.1), named by the subscription's ``jsonldContext`` and linked from its
        notifications."""
        doc = clean_document(body)
        doc.setdefault("id", f"urn:ngsi-ld:Subscription:{uuid.uuid4()}")
        implicit = self._implicit(doc, context, base_url)
        sub = await build(doc, context, self.broker, self.clock())
        if sub.expires_at is not None and sub.expires_at <= self.clock():
            raise BadRequestData("expiresAt is in the past")
        async with self._changing:
            subs = await self._tenant(tenant)
            if await self.store.subscription(tenant, sub.id) is not None:
                raise AlreadyExists(f"Subscription {sub.id} already exists")
            await self._put(tenant, subs, sub, None)
        if implicit:
            await self.broker.contexts.keep_implicit(context, implicit)
        return sub.id

    def _implicit(self, doc: dict[str, Any], context: Any, base_url: str | None) -> str | None:
        """Name the ImplicitlyCreated @context in ``doc`` when one is needed (5.13.1)."""
        if base_url is None or "jsonldContext" in doc or not self.broker.contexts.needs_implicit(
                context):
            return None
        doc["jsonldContext"] = self.broker.contexts.implicit_url(context, base_url)
        return doc["jsonldContext"]  # type: ignore[no-any-return]

    async def _put(self, tenant: str | None, subs: dict[str, Subscription],
                   sub: Subscription, old: str | None) -> None:
        """Store ``sub``: a creation (``old`` None) or the replacement of the stored document
        ``old`` (a store shared with other processes refuses it, ``StaleWrite``, if another
        changed it meanwhile: the operation then runs again on the new one)."""
        record = SubscriptionPut(sub.id, orjson.dumps(sub.doc).decode(),
                                 orjson.dumps(sub.context).decode(), old)
        async with self._writes:
            durable = await self.store.stage(tenant, [], [record])
            self._subs.get(tenant, subs)[sub.id] = sub
            self._refresh(tenant)
            await durable
        self._committed(tenant)

    async def _existing(self, tenant: str | None, sub_id: str) -> Subscription:
        check_uri(sub_id, "Subscription id")
        if not await self.store.has_tenant(tenant):
            raise NonexistentTenant(f"Tenant {tenant!r} does not exist")
        sub = (await self._tenant(tenant)).get(sub_id)
        if sub is None:
            raise ResourceNotFound(f"Subscription {sub_id} does not exist")
        return sub

    async def _stored(self, tenant: str | None, sub_id: str) -> StoredSubscription:
        """The subscription as the store holds it now (what a change starts from: another
        worker may have changed it since this one cached it)."""
        check_uri(sub_id, "Subscription id")
        if not await self.store.has_tenant(tenant):
            raise NonexistentTenant(f"Tenant {tenant!r} does not exist")
        stored = await self.store.subscription(tenant, sub_id)
        if stored is None:
            raise ResourceNotFound(f"Subscription {sub_id} does not exist")
        return stored

    async def _current(self, tenant: str | None, stored: StoredSubscription) -> Subscription:
        """The stored subscription, validated: this process's copy when it holds the stored
        document, else built from it (keeping the copy's throttling and schedule)."""
        cached = (await self._tenant(tenant)).get(stored.id)
        if cached is not None and orjson.dumps(cached.doc).decode() == stored.doc:
            return cached
        sub = await build(orjson.loads(stored.doc), orjson.loads(stored.context), self.broker,
                          self.clock())
        if cached is not None:
            sub.last_sent, sub.next_due = cached.last_sent, cached.next_due
        return sub

    async def retrieve(self, tenant: str | None, sub_id: str,
                       context: Any = None) -> dict[str, Any]:
        """5.8.3 Retrieve Subscription, in the terms of the request's ``context``."""
        sub = await self._existing(tenant, sub_id)
        await self.settle(tenant)
        return sub.render(self.clock(), await self.broker.contexts.term_map(context),
                          await self.store.subscription(tenant, sub_id))

    async def query(self, tenant: str | None, limit: int, offset: int, context: Any = None
                    ) -> tuple[list[dict[str, Any]], int]:
        """5.8.4 Query Subscriptions: (page, total), in the terms of the request's context."""
        if not await self.store.has_tenant(tenant):
            raise NonexistentTenant(f"Tenant {tenant!r} does not exist")
        subs = list((await self._tenant(tenant)).values())
        page = subs[offset:offset + limit]
        stored: dict[str, StoredSubscription] = {}
        if page:
            await self.settle(tenant)
            stored = {s.id: s for s in await self.store.subscriptions(tenant)}
        now = self.clock()
        terms = await self.broker.contexts.term_map(context)
        return [s.render(now, terms, stored.get(s.id)) for s in page], len(subs)

    @retried_on_stale
    async def update(self, tenant: str | None, sub_id: str, body: object,
                     context: Any = None, base_url: str | None = None) -> None:
        """5.8.2 Update Subscription: each member of the fragment replaces the member of the
        same name (``notification`` included, as a whole); null removes it. The result must
        be a valid subscription, with an expiresAt in the future if one is given.

        A read-modify-write of the stored document: serialised in this process, refused by a
        store shared with other processes when one of them changed it meanwhile (then run
        again on the new document: ``retried_on_stale``)."""
        async with self._changing:
            await self._update(tenant, sub_id, body, context, base_url)

    async def _update(self, tenant: str | None, sub_id: str, body: object, context: Any,
                      base_url: str | None) -> None:
        stored = await self._stored(tenant, sub_id)
        fragment = clean_document(body)
        if not fragment:
            raise BadRequestData("The update carries no subscription member")
        if fragment.get("id", sub_id) != sub_id:
            raise BadRequestData("The id of a subscription cannot change")
        current = await self._current(tenant, stored)
        terms = await self.broker.contexts.term_map(context)
        fragment = translate(fragment, terms, current.source_terms)
        doc = orjson.loads(orjson.dumps(current.doc))
        for name, value in fragment.items():
            if value is None or value == "urn:ngsi-ld:null":
                doc.pop(name, None)
            else:
                doc[name] = value
        implicit = self._implicit(doc, current.context, base_url)
        sub = await build(doc, current.context, self.broker, self.clock())
        if "expiresAt" in fragment and sub.expires_at is not None and (
                sub.expires_at <= self.clock()):
            raise BadRequestData("expiresAt is in the past")
        sub.last_sent = current.last_sent
        await self._put(tenant, await self._tenant(tenant), sub, stored.doc)
        if implicit:
            await self.broker.contexts.keep_implicit(current.context, implicit)

    async def delete(self, tenant: str | None, sub_id: str) -> None:
        """5.8.5 Delete Subscription (its pending notifications go too)."""
        async with self._changing:
            await self._stored(tenant, sub_id)
            subs = await self._tenant(tenant)
            async with self._writes:
                durable = await self.store.stage(tenant, [], [SubscriptionDelete(sub_id)])
                self._subs.get(tenant, subs).pop(sub_id, None)
                self._refresh(tenant)
                await durable
        self._committed(tenant)

    # -------------------------------------------------------------- matching

    async def on_change(self, tenant: str | None, ops: list[WriteOp]) -> Sequence[object]:
        """The ``EntityBroker`` listener: notifications to stage with the change."""
        subs = self._active.get(tenant)
        if subs is None:
            await self._tenant(tenant)
            subs = self._active[tenant]
        if not subs:
            return ()
        return self.records(tenant, subs, ops, self.clock())

    def records(self, tenant: str | None, subs: list[Subscription], ops: list[WriteOp],
                now: float) -> list[OutboxRecord]:
        records: list[OutboxRecord] = []
        now_text = utc_now()
        operation = current_operation()
        for sub in subs:
            # the window never holds against the operation that opened it: a run refused as
            # stale (nothing of it was written) and run again must still notify
            if (sub.throttling and now - sub.last_sent < sub.throttling
                    and (operation is None or sub.throttled_by is not operation)):
                continue
            data = [render_entity(sub, op, now_text) for op in ops if matches(sub, op, now)]
            if not data:
                continue
            sub.last_sent = now
            sub.throttled_by = operation
            records.append(OutboxRecord(sub.id, sub.target["uri"], sub.target_json,
                                        notification(sub, data, now_text), now))
        if records:
            self.wake(tenant)
        return records

    async def periodic_tick(self, now: float | None = None) -> int:
        """Periodic subscriptions (timeInterval) whose time has come: notify the entities
        that match now. Returns how many notifications were staged."""
        now = self.clock() if now is None else now
        staged = 0
        for tenant, subs in list(self._subs.items()):
            records: list[OutboxRecord] = []
            for sub in list(subs.values()):
                if not sub.time_interval or sub.status(now) != "active" or now < sub.next_due:
                    continue
                sub.next_due = now + sub.time_interval
                result = await self.store.query(tenant, EntityQuery(
                    selectors=sub.selectors, q=sub.q, geo=sub.geo, limit=PERIODIC_LIMIT))
                if not result.entities:
                    continue
                now_text = iso(now)
                data = [render_entity(sub, WriteOp(None, e), now_text) for e in result.entities]
                records.append(OutboxRecord(sub.id, sub.target["uri"], sub.target_json,
                                            notification(sub, data, now_text), now))
            if records:
                await (await self.store.stage(tenant, [], records))
                self.wake(tenant)
                staged += len(records)
        return staged


async def _settled(tenant: str | None) -> None:
    """Nothing to wait for (no delivery service)."""


def delivery_status(sub_id: str, event: str, when: float) -> SubscriptionStatus:
    """The status record of one delivery event of a subscription's notification (clause
    5.2.14), ``event`` being:

    - ``sent``: it goes out now (timesSent, lastNotification: counted before the outcome);
    - ``ok``: it was received (lastSuccess, status ok);
    - ``failed``: it was not (timesFailed, lastFailure, status failed);
    - ``held``: it was held back because its endpoint is failing: not sent, not counted as
      failed, but lastFailure and status failed.
    """
    stamp = iso(when)
    if event == "sent":
        return SubscriptionStatus(sub_id, sent=1, last_notification=stamp)
    if event == "ok":
        return SubscriptionStatus(sub_id, last_success=stamp)
    if event == "failed":
        return SubscriptionStatus(sub_id, failed=1, last_failure=stamp)
    if event == "held":
        return SubscriptionStatus(sub_id, last_failure=stamp)
    raise ValueError(f"unknown delivery event {event!r}")
