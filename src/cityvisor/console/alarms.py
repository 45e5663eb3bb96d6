"""The alarm console: Alert entities, their workflow and its audit trail.

Lifecycle (``docs/data-contracts.md``, "Alarm workflow")::

    new --acknowledge--> acknowledged --assign--> assigned
     |  \\____________________|___________________/ |
     |        shelve (until T) | resolve            |
     v                         v                    v
    shelved --(T passes, or unshelve)--> the state it was shelved from
    resolved --close--> closed

Every action is ONE merge of the Alert (``workflowState``, ``lastAction`` with ``observedAt``,
``assignee``, ``shelvedUntil``), so the temporal API keeps who did what, when and why. The actor
is the signed-in principal, never a name sent in the body. Writes go through the
``ContextClient`` like any app.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from cityvisor.broker.keyed_locks import KeyedLocks
from cityvisor.client import LocalContextClient
from cityvisor.ngsild.build import date_time, prop
from cityvisor.ngsild.context import sdm_context
from cityvisor.ngsild.errors import BadRequestData, CityvisorProblem, ResourceNotFound
from cityvisor.ngsild.time import format_utc_micros, parse_utc, parse_utc_or_none, utc_now

from .session import ConsoleServices, Operator, json_response, read_object, services_of

ALERT_CONTEXT = sdm_context("Alert")
STATES = ("new", "acknowledged", "assigned", "shelved", "resolved", "closed")
OPEN_STATES = frozenset(["new", "acknowledged", "assigned", "shelved", "resolved"])  # not closed
SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3, "informational": 4}
MAX_COMMENT = 2000
MAX_SHELVE = timedelta(days=30)
SYSTEM_ACTOR = "système"
#: what an action body may hold (anything else, e.g. an "actor", is refused: the actor is the
#: signed-in principal)
BODY_MEMBERS = frozenset(("action", "comment", "assignee", "shelvedUntil"))
PAGE = 1000


class InvalidTransition(CityvisorProblem):
    """The action is not allowed from the alert's current state (HTTP 409)."""

    type_name, status, title = "InvalidTransition", 409, "Invalid alarm transition"


@dataclass(frozen=True)
class Action:
    name: str
    allowed_from: frozenset[str]
    target: str | None  # None: computed (unshelve returns to the previous state)
    needs_comment: bool = False


ACTIONS = {a.name: a for a in [
    Action("acknowledge", frozenset(["new"]), "acknowledged"),
    Action("assign", frozenset(["new", "acknowledged", "assigned"]), "assigned"),
    Action("shelve", frozenset(["new", "acknowledged", "assigned"]), "shelved", needs_comment=True),
    Action("unshelve", frozenset(["shelved"]), None),
    Action("resolve", frozenset(["new", "acknowledged", "assigned", "shelved"]), "resolved",
           needs_comment=True),
    Action("close", frozenset(["resolved"]), "closed"),
]}

#: one lock per (tenant, alert id) while someone holds or awaits it: ids sent by clients (even
#: unknown ones) cannot make the table grow without bound
_locks: KeyedLocks[tuple[str | None, str]] = KeyedLocks()


def _clean_text(text: str) -> str:
    """Operator text as stored: control characters (but new lines and tabs) removed, trimmed."""
    return "".join(c for c in text if c in "\n\t" or (c.isprintable() or c == " ")).strip()


def operator_time(text: Any, what: str) -> datetime:
    """A date-time typed by an operator, in UTC; it must carry its time zone (a time without
    one is more likely a local time than UTC)."""
    if isinstance(text, str):
        try:
            return parse_utc(text, require_offset=True)
        except ValueError:
            if parse_utc_or_none(text) is not None:
                raise BadRequestData(
                    f"{what} must carry a time zone (e.g. 2026-01-01T12:00:00Z)") from None
    raise BadRequestData(f"{what} must be an ISO 8601 date-time, got {text!r}")


def client_for(services: ConsoleServices, tenant: str | None) -> LocalContextClient:
    return LocalContextClient(services.broker, tenant=tenant, context=ALERT_CONTEXT)


def _value(entity: dict[str, Any], name: str) -> Any:
    attr = entity.get(name)
    if isinstance(attr, list):  # several instances: the default one
        attr = next((a for a in attr if "datasetId" not in a), attr[0] if attr else None)
    if not isinstance(attr, dict):
        return None
    if "object" in attr:
        return attr["object"]
    value = attr.get("value")
    if isinstance(value, dict) and "@value" in value:
        return value["@value"]
    return value


def summary(entity: dict[str, Any]) -> dict[str, Any]:
    """What the alarm list shows of an Alert (normalized, compacted with the Alert context)."""
    address = _value(entity, "address") or {}
    last = entity.get("lastAction")
    last_action = None
    if isinstance(last, dict) and isinstance(last.get("value"), dict):
        last_action = {**last["value"], "at": last.get("observedAt")}
    location = _value(entity, "location")
    state = _value(entity, "workflowState") or "new"
    return {
        "id": entity["id"],
        "severity": _value(entity, "severity") or "informational",
        "category": _value(entity, "category"),
        "subCategory": _value(entity, "subCategory"),
        "domain": _value(entity, "domain") or _value(entity, "category"),
        "description": _value(entity, "description"),
        "name": _value(entity, "name"),
        "commune": address.get("addressLocality") if isinstance(address, dict) else None,
        "inseeCode": _value(entity, "inseeCode"),
        "dateIssued": _value(entity, "dateIssued"),
        "validFrom": _value(entity, "validFrom"),
        "validTo": _value(entity, "validTo"),
        "vigilanceLevel": _value(entity, "vigilanceLevel"),
        "alertSource": _value(entity, "alertSource"),
        "workflowState": state if state in STATES else "new",
        "assignee": _value(entity, "assignee"),
        "shelvedUntil": _value(entity, "shelvedUntil"),
        "lastAction": last_action,
        "location": location.get("coordinates") if isinstance(location, dict)
        and location.get("type") == "Point" else None,
    }


def order_key(alert: dict[str, Any]) -> tuple[int, str, str]:
    """Most severe first; within a severity the oldest first (it has waited longest)."""
    return (SEVERITY_RANK.get(alert["severity"], 5), alert["dateIssued"] or "9999", alert["id"])


async def all_alerts(services: ConsoleServices, tenant: str | None,
                     q: str | None = None) -> list[dict[str, Any]]:
    """The summaries of the tenant's alerts (those matching the NGSI-LD query ``q``)."""
    if not await services.broker.has_tenant(tenant):
        return []
    client = client_for(services, tenant)
    found: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = await client.query_entities(type="Alert", q=q, limit=PAGE, offset=offset)
        found.extend(summary(entity) for entity in page)
        if len(page) < PAGE:
            return found
        offset += PAGE


@lru_cache(maxsize=1)
def _commune_names() -> dict[str, str]:
    """INSEE code -> name of the communes of the métropole (bundled geography)."""
    from .layers import GEO_DIR, GEO_FILES

    data = orjson.loads((GEO_DIR / GEO_FILES["communes"]).read_bytes())
    return {f["properties"]["code"]: f["properties"]["nom"] for f in data["features"]}


def _commune_keys(wanted: str | None) -> set[str] | None:
    """A commune filter matches its INSEE code and its name (alerts may carry either)."""
    if wanted is None:
        return None
    names = _commune_names()
    codes = {code for code, name in names.items() if name == wanted}
    return {wanted, *codes, *([names[wanted]] if wanted in names else [])}


def _matches(alert: dict[str, Any], field: str, wanted: str | None) -> bool:
    return wanted is None or alert.get(field) == wanted


async def list_alerts(request: Request, operator: Operator) -> Response:
    """GET /console/api/alerts?domain=&commune=&state=open|all|<state>"""
    services = services_of(request)
    listed = await all_alerts(services, operator.tenant)
    if await expire_shelving(services, operator.tenant, listed=listed):
        listed = await all_alerts(services, operator.tenant)  # read again: some returned
    params = request.query_params
    wanted_state = params.get("state", "open")
    if wanted_state not in ("open", "all", *STATES):
        raise BadRequestData(f"state must be open, all or one of {', '.join(STATES)}")
    communes = _commune_keys(params.get("commune") or None)
    domain = params.get("domain") or None
    alerts = [a for a in listed
              if _matches(a, "domain", domain)
              and (communes is None or bool(communes & {a["commune"], a["inseeCode"]}))
              and (wanted_state == "all"
                   or (a["workflowState"] in OPEN_STATES if wanted_state == "open"
                       else a["workflowState"] == wanted_state))]
    alerts.sort(key=order_key)
    return json_response({"alerts": alerts, "count": len(alerts)})


async def history(request: Request, operator: Operator) -> Response:
    """GET /console/api/alerts/{id}/history: the audit trail (from the temporal API)."""
    services = services_of(request)
    alert_id = request.path_params["id"]
    entity = await client_for(services, operator.tenant).get_entity(alert_id)
    if entity.get("type") != "Alert":
        raise ResourceNotFound(f"{alert_id} is not an Alert")
    temporal = services.temporal
    if temporal is None:
        return json_response({"id": alert_id, "actions": []})
    from cityvisor.broker.temporal import TemporalQuery

    try:
        result = await temporal.retrieve(operator.tenant, ALERT_CONTEXT, alert_id,
                                         TemporalQuery.parse(last_n="500"), "lastAction")
    except ResourceNotFound:  # an Alert with no recorded history yet
        return json_response({"id": alert_id, "actions": []})
    data = result.entities[0] if result.entities else {}
    instances = data.get("lastAction") or []
    if isinstance(instances, dict):
        instances = [instances]
    actions = [{**i["value"], "at": i.get("observedAt")} for i in instances
               if isinstance(i.get("value"), dict)]
    actions.sort(key=lambda a: a.get("at") or "")
    return json_response({"id": alert_id, "actions": actions})


def _fragment(action: str, actor: str, comment: str, state: str, previous: str,
              now: datetime) -> dict[str, Any]:
    return {
        "workflowState": prop(state, at=format_utc_micros(now)),
        "lastAction": prop({"action": action, "actor": actor, "comment": comment,
                            "previousState": previous}, at=format_utc_micros(now)),
    }


async def apply_action(services: ConsoleServices, tenant: str | None, alert_id: str, actor: str,
                       body: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """Check and apply one workflow action; returns the alert's new summary."""
    now = now or utc_now()
    name = body.get("action")
    action = ACTIONS.get(name) if isinstance(name, str) else None
    if action is None:
        raise BadRequestData(f"action must be one of {', '.join(ACTIONS)}, got {name!r}")
    unknown = sorted(set(body) - BODY_MEMBERS)
    if unknown:
        raise BadRequestData(f"Unknown member(s) {', '.join(unknown)}: an action takes "
                             f"{', '.join(sorted(BODY_MEMBERS))}")
    comment = body.get("comment")
    if comment is None:
        comment = ""
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT:
        raise BadRequestData(f"comment must be a text of at most {MAX_COMMENT} characters")
    comment = _clean_text(comment)
    if action.needs_comment and not comment:
        raise BadRequestData(f"The action {action.name} needs a comment (why)")
    client = client_for(services, tenant)
    async with _locks.hold((tenant, alert_id)):
        entity = await client.get_entity(alert_id)
        if entity.get("type") != "Alert":
            raise ResourceNotFound(f"{alert_id} is not an Alert")
        current = summary(entity)
        state = current["workflowState"]
        if state not in action.allowed_from:
            raise InvalidTransition(
                f"Cannot {action.name} an alert that is {state} (allowed from: "
                f"{', '.join(sorted(action.allowed_from))})")
        fragment = _fragment(action.name, actor, comment, action.target or "", state, now)
        if action.name == "assign":
            assignee = body.get("assignee")
            if not isinstance(assignee, str) or not _clean_text(assignee) or len(assignee) > 120:
                raise BadRequestData("assign needs an assignee (a name of at most 120 characters)")
            fragment["assignee"] = {"type": "Property",
                                    "value": " ".join(_clean_text(assignee).split())}
        if action.name == "shelve":
            until = operator_time(body.get("shelvedUntil"), "shelvedUntil")
            if until <= now:
                raise BadRequestData("shelvedUntil must be in the future")
            if until - now > MAX_SHELVE:
                raise BadRequestData(f"An alert may be shelved for at most {MAX_SHELVE.days} days")
            fragment["shelvedUntil"] = date_time(format_utc_micros(until))
        if action.target is None:  # unshelve: back to the state it was shelved from
            fragment = _unshelve_fragment(current, action.name, actor, comment, now)
        elif state == "shelved":
            fragment["shelvedUntil"] = "urn:ngsi-ld:null"
        await client.merge_entity(alert_id, fragment)
        return summary(await client.get_entity(alert_id))


def _previous_state(alert: dict[str, Any]) -> str:
    last = alert.get("lastAction") or {}
    previous = last.get("previousState") if last.get("action") == "shelve" else None
    return previous if previous in ("new", "acknowledged", "assigned") else "acknowledged"


def _unshelve_fragment(alert: dict[str, Any], name: str, actor: str, comment: str,
                       now: datetime) -> dict[str, Any]:
    fragment = _fragment(name, actor, comment, _previous_state(alert), "shelved", now)
    fragment["shelvedUntil"] = "urn:ngsi-ld:null"
    return fragment


async def expire_shelving(services: ConsoleServices, tenant: str | None,
                          now: datetime | None = None,
                          listed: list[dict[str, Any]] | None = None) -> int:
    """Return every alert whose shelving has expired to its previous state; how many.
    ``listed``: the tenant's alert summaries if the caller has just read them (else read
    here); each one to return is read again under its lock before it changes."""
    now = now or utc_now()
    client = client_for(services, tenant)
    returned = 0
    if listed is None:  # only the shelved ones (the sweep runs every few seconds)
        listed = await all_alerts(services, tenant, q='workflowState=="shelved"')
    for alert in listed:
        until = alert["shelvedUntil"]
        if alert["workflowState"] != "shelved" or not isinstance(until, str):
            continue
        expiry = parse_utc_or_none(until)
        expired = expiry is None or expiry <= now  # unreadable: do not hide the alert forever
        if not expired:
            continue
        async with _locks.hold((tenant, alert["id"])):
            fresh = summary(await client.get_entity(alert["id"]))
            if fresh["workflowState"] != "shelved" or fresh["shelvedUntil"] != until:
                continue
            await client.merge_entity(alert["id"], _unshelve_fragment(
                fresh, "unshelve", SYSTEM_ACTOR, "fin de la mise en attente", now))
            returned += 1
    return returned


async def act(request: Request, operator: Operator) -> Response:
    """POST /console/api/alerts/{id}/actions {action, comment, assignee?, shelvedUntil?}"""
    body = await read_object(request)
    alert = await apply_action(services_of(request), operator.tenant, request.path_params["id"],
                               operator.actor, body)
    return json_response(alert)
