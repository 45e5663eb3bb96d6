"""The NGSI-LD Temporal API semantics (ETSI GS CIM 009 v1.8, clauses 5.6.11-5.6.16, 5.7.3-5.7.4,
4.5.7-4.5.9 and 4.11).

- **Recording**: ``TemporalBroker.record`` is an ``EntityBroker`` listener; for every entity
  change it returns one ``InstanceRecord`` per attribute instance that is new or changed, and
  one per instance that disappeared (with ``deletedAt``), staged in the same transaction.
- **Queries**: entities are selected by id/idPattern/type/attrs from the temporal entities
  table (so deleted entities keep their history); with ``q`` or a geo-query they are selected
  on their CURRENT state by the core store (as Stellio does); then each attribute's history is
  read with one index range scan per attribute.
- **Representations**: normalized temporal (arrays of instances with ``instanceId``),
  ``temporalValues`` (``[[value, time], ...]``), ``aggregatedValues`` (``[[value, start, end]]``
  per period, computed in SQL).
- **Pagination of long histories** (clause 6.3.10): at most ``max_instances`` instances per
  attribute; beyond, 206 with ``Content-Range: date-time <start>-<end>/<lastN or *>``.
- **Retention**: a per-tenant / per-attribute number of days, purged in the background.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from cityvisor.broker.entities import EntityBroker, QueryParams, utc_now
from cityvisor.ngsild.context import TermMap
from cityvisor.ngsild.errors import (
    BadRequestData,
    NonexistentTenant,
    ResourceNotFound,
)
from cityvisor.ngsild.model import (
    NULL,
    VALUE_MEMBER,
    Representation,
    _compact_instance,
    attribute_iri,
    check_name,
    check_uri,
    expand_instance,
    expand_types,
)
from cityvisor.store.base import TIME_PROPERTIES, Buckets, Store, TimeFilter, WriteOp
from cityvisor.store.records import (
    AttributeAggregate,
    AttributeHistoryDeleted,
    EntityRecord,
    EntityTouched,
    HistoryDeleted,
    HistoryRow,
    InstanceDeleted,
    InstanceModified,
    InstanceRecord,
    TemporalEntity,
)
from cityvisor.tasks import cancel_and_wait

LOG = logging.getLogger("cityvisor.temporal")
INSTANCE_PREFIX = "urn:ngsi-ld:instance:"
DEFAULT_MAX_INSTANCES = 1000
AGGREGATION_METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev",
                       "sumsq")
#: clause 4.5.9: attribute type -> member of the simplified temporal representation
TEMPORAL_VALUES_MEMBER = {
    "Property": "values", "GeoProperty": "values", "Relationship": "objects",
    "LanguageProperty": "languageMaps", "ListProperty": "valueLists",
    "ListRelationship": "objectLists", "JsonProperty": "jsons", "VocabProperty": "vocabs",
}
_NORMAL = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
_DURATION = re.compile(
    r"^P(?!$)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
_INT64 = 2**63
MAX_PERIOD_MONTHS = 1200
_END_OF_TIME = "9999-12-31T23:59:59.999999Z"
_TIMES: dict[str, str] = {}


# ---------------------------------------------------------------------------- time helpers


def normalize_time(text: object, what: str = "date-time") -> str:
    """An ISO 8601 date-time as UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (text order = time order);
    a date-time without offset is taken as UTC."""
    if isinstance(text, str) and len(text) == 27 and _NORMAL.match(text):
        return text
    cached = _TIMES.get(text) if isinstance(text, str) else None
    if cached is not None:
        return cached
    try:
        if not isinstance(text, str) or "T" not in text:
            raise ValueError
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequestData(f"{what} must be an ISO 8601 date-time, got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    result = format_time(moment)
    if len(_TIMES) < 10_000:
        _TIMES[text] = result
    return result


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(normalized: str) -> datetime:
    return datetime.fromisoformat(normalized)


@dataclass(frozen=True)
class Period:
    """An aggregation period: fixed (``ms``), calendar months (``months``), or whole range."""

    ms: int | None = None
    months: int | None = None

    @property
    def whole(self) -> bool:
        return self.ms is None and self.months is None


def parse_duration(text: str | None) -> Period:
    """``aggrPeriodDuration``: an ISO 8601 duration. Years and months are calendar periods and
    cannot be mixed with days or times; ``PT0S`` (the default) means the whole time range."""
    if text is None:
        return Period()
    match = _DURATION.match(text)
    if match is None:
        raise BadRequestData(f"aggrPeriodDuration must be an ISO 8601 duration such as PT1H or "
                             f"P1D, got {text!r}")
    years, months, weeks, days, hours, minutes = (int(g) if g else 0 for g in match.groups()[:6])
    seconds = float(match.group(7) or 0)
    if years or months:
        if weeks or days or hours or minutes or seconds:
            raise BadRequestData(f"aggrPeriodDuration {text!r} mixes years/months with a fixed "
                                 "duration: use one or the other")
        total = years * 12 + months
        if total > MAX_PERIOD_MONTHS:
            raise BadRequestData(f"aggrPeriodDuration {text!r} is longer than 100 years")
        return Period(months=total)
    ms = round(((((weeks * 7 + days) * 24 + hours) * 60 + minutes) * 60 + seconds) * 1000)
    if ms > MAX_PERIOD_MONTHS * 31 * 86_400_000:
        raise BadRequestData(f"aggrPeriodDuration {text!r} is longer than 100 years")
    if ms == 0:
        return Period()
    return Period(ms=ms)


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus calendar months (the day clamped to the month's length)."""
    total = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(total, 12)
    if not 1 <= year <= 9999:
        raise OverflowError("date out of range")
    day = moment.day
    while day > 28:
        try:
            return moment.replace(year=year, month=month + 1, day=day)
        except ValueError:
            day -= 1
    return moment.replace(year=year, month=month + 1, day=day)


def _period_bounds(origin: datetime, bucket: int, period: Period) -> tuple[str, str]:
    """(start, end) of aggregation period number ``bucket``; the end of time when it
    overflows the calendar."""
    try:
        if period.ms is not None:
            start = origin + timedelta(milliseconds=bucket * period.ms)
            return format_time(start), _safe(lambda: start + timedelta(milliseconds=period.ms))
        assert period.months is not None
        start = add_months(origin, bucket * period.months)
        return format_time(start), _safe(
            lambda: add_months(origin, (bucket + 1) * period.months))  # type: ignore[operator]
    except (OverflowError, ValueError):
        return _END_OF_TIME, _END_OF_TIME


def _safe(compute: Callable[[], datetime]) -> str:
    try:
        return format_time(compute())
    except (OverflowError, ValueError):
        return _END_OF_TIME


# ---------------------------------------------------------------------------- query model


@dataclass(frozen=True)
class TemporalQuery:
    """The temporal part of a query (clause 4.11) and how to render the result."""

    timerel: str | None = None
    time_at: str | None = None
    end_time_at: str | None = None
    timeproperty: str = "observedAt"
    last_n: int | None = None
    mode: str = "normalized"  # normalized | temporalValues | aggregatedValues
    sys_attrs: bool = False
    methods: tuple[str, ...] = ()
    period: Period = field(default_factory=Period)

    @classmethod
    def parse(cls, *, timerel: object = None, time_at: object = None, end_time_at: object = None,
              timeproperty: object = None, last_n: object = None, options: object = None,
              aggr_methods: object = None, aggr_period: object = None) -> TemporalQuery:
        """Validate the raw parameters (strings, or JSON values of a temporalQ)."""
        for name, raw in (("timerel", timerel), ("timeAt", time_at), ("endTimeAt", end_time_at),
                          ("timeproperty", timeproperty), ("options", options),
                          ("aggrMethods", aggr_methods), ("aggrPeriodDuration", aggr_period)):
            if raw is not None and not isinstance(raw, str):
                raise BadRequestData(f"{name} must be a string, got {raw!r}")
        if timerel is not None and timerel not in ("before", "after", "between"):
            raise BadRequestData(f"timerel must be before, after or between, got {timerel!r}")
        if timerel is None and (time_at is not None or end_time_at is not None):
            raise BadRequestData("timeAt and endTimeAt need a timerel (before, after, between)")
        start = end = None
        if timerel is not None:
            if time_at is None:
                raise BadRequestData(f"timerel={timerel} needs a timeAt")
            start = normalize_time(time_at, "timeAt")
            if timerel == "between":
                if end_time_at is None:
                    raise BadRequestData("timerel=between needs an endTimeAt")
                end = normalize_time(end_time_at, "endTimeAt")
                if end <= start:
                    raise BadRequestData(f"endTimeAt ({end_time_at}) must be after timeAt "
                                         f"({time_at})")
        prop = timeproperty or "observedAt"
        if prop not in TIME_PROPERTIES:
            raise BadRequestData(f"timeproperty must be observedAt, createdAt or modifiedAt, "
                                 f"got {prop!r}")
        n: int | None = None
        if last_n is not None:
            try:
                n = int(last_n)  # type: ignore[call-overload]
            except (TypeError, ValueError):
                n = None
            if n is None or isinstance(last_n, bool) or n < 1:
                raise BadRequestData(f"lastN must be a positive integer, got {last_n!r}")
        opts = [o.strip() for o in (options or "").split(",") if o.strip()]  # type: ignore[union-attr]
        known = {"temporalValues", "aggregatedValues", "sysAttrs", "normalized", "count"}
        unknown = [o for o in opts if o not in known]
        if unknown:
            raise BadRequestData(f"Unknown value in options: {', '.join(unknown)}")
        if "temporalValues" in opts and "aggregatedValues" in opts:
            raise BadRequestData("options may name only one of temporalValues and aggregatedValues")
        mode = ("temporalValues" if "temporalValues" in opts else
                "aggregatedValues" if "aggregatedValues" in opts else "normalized")
        methods: tuple[str, ...] = ()
        period = Period()
        if mode == "aggregatedValues":
            if not aggr_methods:
                raise BadRequestData("options=aggregatedValues needs aggrMethods, e.g. "
                                     "aggrMethods=avg,max")
            names = [m.strip() for m in aggr_methods.split(",")]  # type: ignore[union-attr]
            bad = [m for m in names if m not in AGGREGATION_METHODS]
            if bad:
                raise BadRequestData(f"Unknown aggrMethods {', '.join(map(repr, bad))}: use "
                                     f"{', '.join(AGGREGATION_METHODS)}")
            methods = tuple(dict.fromkeys(names))
            period = parse_duration(aggr_period)  # type: ignore[arg-type]
        elif aggr_methods is not None or aggr_period is not None:
            raise BadRequestData("aggrMethods and aggrPeriodDuration need options=aggregatedValues")
        return cls(timerel, start, end, prop, n, mode, "sysAttrs" in opts, methods, period)

    def time_filter(self) -> TimeFilter:
        prop = self.timeproperty
        if self.timerel == "before":
            return TimeFilter(prop, before=self.time_at, last_n=self.last_n)
        if self.timerel == "after":
            return TimeFilter(prop, after=self.time_at, last_n=self.last_n)
        if self.timerel == "between":
            return TimeFilter(prop, from_=self.time_at, before=self.end_time_at,
                              last_n=self.last_n)
        return TimeFilter(prop, last_n=self.last_n)


@dataclass
class TemporalResult:
    entities: list[dict[str, Any]]
    count: int | None = None
    content_range: str | None = None  # set when some attribute's history was truncated


# ---------------------------------------------------------------------------- recording


def _num(instance: dict[str, Any]) -> float | None:
    if instance["type"] != "Property":
        return None
    value = instance.get("value")
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int:
        return value if -_INT64 <= value < _INT64 else float(value)  # type: ignore[no-any-return,operator]
    return None


#: instance members kept in their own columns, not repeated in the stored JSON (a third of it)
_COLUMN_MEMBERS = ("createdAt", "modifiedAt")


def _dumps(instance: dict[str, Any]) -> str:
    stored = {k: v for k, v in instance.items() if k not in _COLUMN_MEMBERS}
    try:
        return orjson.dumps(stored).decode()
    except TypeError:  # integers beyond 64 bits
        return json.dumps(stored, ensure_ascii=False)


def stored_instance(row: HistoryRow) -> dict[str, Any]:
    """The instance of a history row, its timestamps from the row's columns."""
    instance: dict[str, Any] = orjson.loads(row.value)
    instance.setdefault("createdAt", row.created_at)
    instance.setdefault("modifiedAt", row.modified_at)
    return instance


def instance_record(entity_id: str, entity_type: str, iri: str, instance: dict[str, Any],
                    deleted_at: str | None = None) -> InstanceRecord:
    if deleted_at is not None:
        return InstanceRecord(entity_id, entity_type, iri, instance.get("datasetId", ""),
                                 deleted_at, instance["createdAt"], deleted_at, deleted_at, None,
                                 _dumps(instance))
    modified = instance["modifiedAt"]
    observed = instance.get("observedAt")
    return InstanceRecord(
        entity_id, entity_type, iri, instance.get("datasetId", ""),
        modified if observed is None else normalize_time(observed), instance["createdAt"],
        modified, None, _num(instance), _dumps(instance))


def _by_dataset(instances: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {i.get("datasetId", ""): i for i in instances}


def changes_to_records(ops: Sequence[WriteOp], now: Callable[[], str]) -> list[object]:
    """The history rows of a batch of entity changes (see the module docstring)."""
    records: list[object] = []
    for op in ops:
        old, new = op.old, op.new
        if new is None:
            assert old is not None
            deleted = now()
            kind = old["type"][0]
            for iri, instances in old["attrs"].items():
                for instance in instances:
                    records.append(instance_record(old["id"], kind, iri, instance, deleted))
            records.append(EntityRecord(old["id"], tuple(old["type"]), old["createdAt"],
                                           deleted, deleted))
            continue
        entity_id, kind = new["id"], new["type"][0]
        if old is None or old["type"] != new["type"]:
            records.append(EntityRecord(entity_id, tuple(new["type"]), new["createdAt"],
                                           new["modifiedAt"]))
        old_attrs = old["attrs"] if old is not None else {}
        new_attrs = new["attrs"]
        for iri, instances in new_attrs.items():
            before = old_attrs.get(iri)
            if before is None:
                for instance in instances:
                    records.append(instance_record(entity_id, kind, iri, instance))
                continue
            if before == instances:
                continue
            if len(before) == 1 and len(instances) == 1 and (
                    before[0].get("datasetId") == instances[0].get("datasetId")):
                records.append(instance_record(entity_id, kind, iri, instances[0]))
                continue
            previous = _by_dataset(before)
            for instance in instances:
                if previous.pop(instance.get("datasetId", ""), None) != instance:
                    records.append(instance_record(entity_id, kind, iri, instance))
            for instance in previous.values():
                records.append(instance_record(entity_id, kind, iri, instance, new["modifiedAt"]))
        for iri in old_attrs.keys() - new_attrs.keys():
            for instance in old_attrs[iri]:
                records.append(instance_record(entity_id, kind, iri, instance, new["modifiedAt"]))
    return records


# ---------------------------------------------------------------------------- broker


class TemporalBroker:
    """Temporal API operations for every tenant, recording, and retention."""

    def __init__(self, store: Store, broker: EntityBroker, *,
                 max_instances: int = DEFAULT_MAX_INSTANCES,
                 retention_days: int | None = None, purge_interval_s: float = 3600.0,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.broker = broker
        self.contexts = broker.contexts
        self.max_instances = max_instances
        self.retention_days = retention_days
        self.purge_interval_s = purge_interval_s
        self.now = now  # the retention clock (injectable)
        self._task: asyncio.Task[None] | None = None

    async def record(self, tenant: str | None, ops: list[WriteOp]) -> Sequence[object]:
        """The ``EntityBroker`` change listener (wired by the composition root): history rows
        of the changes, staged in their transaction."""
        return changes_to_records(ops, self.broker.clock)

    # ------------------------------------------------------------ helpers

    async def _require_tenant(self, tenant: str | None) -> None:
        if not await self.store.has_tenant(tenant):
            raise NonexistentTenant(f"Tenant {tenant!r} does not exist")

    async def _entity_row(self, tenant: str | None, entity_id: str) -> TemporalEntity | None:
        """The temporal entity as the writer sees it (staged changes included)."""
        found = await self.store.temporal_entities(tenant, [entity_id], staged=True)
        return found.get(entity_id)

    async def _existing(self, tenant: str | None, entity_id: str) -> TemporalEntity:
        check_uri(entity_id, "Entity id")
        await self._require_tenant(tenant)
        row = await self._entity_row(tenant, entity_id)
        if row is None:
            raise ResourceNotFound(f"Entity {entity_id} has no temporal representation")
        return row

    @staticmethod
    def _instances(body: dict[str, Any], terms: TermMap, now: str,
                   skip: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]]:
        """(attribute IRI, expanded instance) pairs of a temporal fragment: each attribute is an
        array of instances (or one instance)."""
        found: list[tuple[str, dict[str, Any]]] = []
        for name, raw in body.items():
            if name in skip:
                continue
            check_name(name)
            iri = terms.expand(name)
            items = raw if isinstance(raw, list) else [raw]
            if not items:
                raise BadRequestData(f"Attribute {name!r} has no instance")
            for item in items:
                found.append((iri, expand_instance(iri, item, terms, now, name)))
        return found

    # ------------------------------------------------------------ writes (5.6.11-5.6.16)

    async def create_or_append(self, tenant: str | None, context: Any, body: object) -> bool:
        """5.6.11 Create or Update Temporal Representation of an Entity; True if created."""
        terms = await self.contexts.term_map(context)
        if not isinstance(body, dict):
            raise BadRequestData("The temporal entity must be a JSON object")
        entity_id = check_uri(body.get("id"), "Entity id")
        if "type" not in body:
            raise BadRequestData("The temporal entity has no type")
        types = expand_types(body["type"], terms)
        now = utc_now()
        pairs = self._instances(body, terms, now, ("id", "type", "@context", "scope",
                                                   "createdAt", "modifiedAt"))
        async with self.broker.lock(tenant):
            row = await self._entity_row(tenant, entity_id)
            created_at = now
            if row is not None:
                merged = list(row.types)
                types = merged + [t for t in types if t not in merged]
                created_at = row.created_at
            records: list[object] = [EntityRecord(entity_id, tuple(types), created_at, now)]
            records.extend(instance_record(entity_id, types[0], iri, i) for iri, i in pairs)
            durable = await self.store.stage(tenant, [], records)
        await durable
        return row is None

    async def append_attributes(self, tenant: str | None, context: Any, entity_id: str,
                                body: object) -> None:
        """5.6.12 Add Attributes to Temporal Representation of an Entity."""
        terms = await self.contexts.term_map(context)
        if not isinstance(body, dict):
            raise BadRequestData("The body must be a JSON object of attributes")
        if "id" in body and body["id"] != entity_id:
            raise BadRequestData("The id in the body differs from the id in the URL")
        now = utc_now()
        pairs = self._instances(body, terms, now, ("id", "type", "@context", "scope",
                                                   "createdAt", "modifiedAt"))
        if not pairs:
            raise BadRequestData("The body has no attribute")
        async with self.broker.lock(tenant):
            row = await self._existing(tenant, entity_id)
            kind = row.types[0]
            records: list[object] = [instance_record(entity_id, kind, iri, i) for iri, i in pairs]
            records.append(EntityTouched(entity_id, now))
            durable = await self.store.stage(tenant, [], records)
        await durable

    async def delete_entity(self, tenant: str | None, entity_id: str) -> None:
        """5.6.16 Delete Temporal Representation of an Entity."""
        async with self.broker.lock(tenant):
            await self._existing(tenant, entity_id)
            durable = await self.store.stage(tenant, [], [HistoryDeleted(entity_id)])
        await durable

    async def delete_attribute(self, tenant: str | None, context: Any, entity_id: str,
                               attribute: str, *, dataset_id: str | None = None,
                               delete_all: bool = False) -> None:
        """5.6.13 Delete Attribute from Temporal Representation of an Entity."""
        terms = await self.contexts.term_map(context)
        iri = attribute_iri(terms, attribute, dataset_id)
        which = None if delete_all else (dataset_id or "")
        async with self.broker.lock(tenant):
            await self._existing(tenant, entity_id)
            if not await self.store.has_history(tenant, entity_id, iri, which, staged=True):
                raise ResourceNotFound(
                    f"Entity {entity_id} has no history of attribute {attribute}"
                    + (f" with datasetId {dataset_id}" if dataset_id else ""))
            durable = await self.store.stage(
                tenant, [], [AttributeHistoryDeleted(entity_id, iri, which)])
        await durable

    def _instance_id(self, text: str) -> int | None:
        check_uri(text, "instanceId")
        if not text.startswith(INSTANCE_PREFIX) or not text[len(INSTANCE_PREFIX):].isdigit():
            return None
        number = int(text[len(INSTANCE_PREFIX):])
        return number if number < _INT64 else None

    async def _instance(self, tenant: str | None, entity_id: str, iri: str, attribute: str,
                        instance_text: str) -> HistoryRow:
        await self._existing(tenant, entity_id)
        number = self._instance_id(instance_text)
        found = None if number is None else await self.store.history_instance(
            tenant, entity_id, iri, number, staged=True)
        if found is None:
            raise ResourceNotFound(f"Attribute {attribute} of entity {entity_id} has no instance "
                                   f"{instance_text}")
        return found

    async def modify_instance(self, tenant: str | None, context: Any, entity_id: str,
                              attribute: str, instance_text: str, body: object) -> None:
        """5.6.14 Modify Attribute Instance in Temporal Representation of an Entity: the
        fragment's members replace the instance's; createdAt is kept, modifiedAt is now."""
        terms = await self.contexts.term_map(context)
        iri = attribute_iri(terms, attribute)
        if isinstance(body, dict) and attribute in body and len(body) == 1:
            body = body[attribute]  # {"attr": {...}} form
        if isinstance(body, list):
            if len(body) != 1:
                raise BadRequestData("Modify one instance: the body holds one attribute instance")
            body = body[0]
        now = utc_now()
        async with self.broker.lock(tenant):
            current_row = await self._instance(tenant, entity_id, iri, attribute, instance_text)
            current = stored_instance(current_row)
            if current_row.deleted_at is not None:
                raise BadRequestData(f"Instance {instance_text} records a deletion; it cannot be "
                                     "modified")
            fragment = expand_instance(iri, _with_type(body, current), terms, now, attribute)
            if fragment.get("datasetId", "") != current.get("datasetId", ""):
                raise BadRequestData("The datasetId of an instance cannot be changed")
            merged = {k: v for k, v in current.items() if k != VALUE_MEMBER[current["type"]]}
            merged.update({k: v for k, v in fragment.items() if k not in ("createdAt",)})
            merged["createdAt"] = current["createdAt"]
            merged["modifiedAt"] = now
            record = instance_record(entity_id, "", iri, merged)
            durable = await self.store.stage(tenant, [], [InstanceModified(
                current_row.instance_id,
                record.observed_at if "observedAt" in merged else current_row.observed_at, now,
                record.num, record.value)])
        await durable

    async def delete_instance(self, tenant: str | None, context: Any, entity_id: str,
                              attribute: str, instance_text: str) -> None:
        """5.6.15 Delete Attribute Instance from Temporal Representation of an Entity."""
        terms = await self.contexts.term_map(context)
        iri = attribute_iri(terms, attribute)
        async with self.broker.lock(tenant):
            row = await self._instance(tenant, entity_id, iri, attribute, instance_text)
            durable = await self.store.stage(tenant, [], [InstanceDeleted(row.instance_id)])
        await durable

    # ------------------------------------------------------------ reads (5.7.3, 5.7.4)

    async def retrieve(self, tenant: str | None, context: Any, entity_id: str,
                       tq: TemporalQuery, attrs: str | None = None) -> TemporalResult:
        """5.7.3 Retrieve Temporal Evolution of an Entity."""
        check_uri(entity_id, "Entity id")
        terms = await self.contexts.term_map(context)
        wanted = _attr_set(attrs, terms)
        await self._require_tenant(tenant)
        rows = await self.store.temporal_entities(tenant, [entity_id])
        if entity_id not in rows:
            raise ResourceNotFound(f"Entity {entity_id} has no temporal representation")
        found = rows[entity_id]
        heads = [(entity_id, list(found.types), found.created_at, found.modified_at)]
        return await self._histories(tenant, heads, wanted, tq, terms)

    async def query(self, tenant: str | None, context: Any, params: QueryParams,
                    tq: TemporalQuery) -> TemporalResult:
        """5.7.4 Query Temporal Evolution of Entities."""
        terms = await self.contexts.term_map(context)
        query = self.broker.entity_query(params, terms)
        await self._require_tenant(tenant)
        if query.q is not None or query.geo is not None:
            # q and geo-queries select on the entities' current state (the core store)
            found = await self.store.query(tenant, query)
            heads = [(e["id"], e["type"], e["createdAt"], e["modifiedAt"])
                     for e in found.entities]
            count = found.count
        else:
            selected, count = await self.store.select_temporal_entities(tenant, query)
            heads = [(e.id, list(e.types), e.created_at, e.modified_at) for e in selected]
        result = await self._histories(tenant, heads, query.attrs, tq, terms)
        result.count = count
        return result

    async def batch_query(self, tenant: str | None, context: Any, body: object,
                          params: QueryParams, raw: dict[str, Any]) -> TemporalResult:
        """5.7.4 via POST /temporal/entityOperations/query (Query with temporalQ)."""
        if not isinstance(body, dict) or body.get("type", "Query") != "Query":
            raise BadRequestData("The body must be a Query object (type Query)")
        selectors = body.get("entities")
        if selectors is not None and not isinstance(selectors, list):
            raise BadRequestData("entities must be a list of entity selectors")
        geo_q = body.get("geoQ") or {}
        if not isinstance(geo_q, dict):
            raise BadRequestData("geoQ must be an object")
        attrs = body.get("attrs")
        if attrs is not None and not (isinstance(attrs, list) and
                                      all(isinstance(a, str) for a in attrs)):
            raise BadRequestData("attrs must be a list of attribute names")
        if body.get("q") is not None and not isinstance(body.get("q"), str):
            raise BadRequestData("q must be a string")
        temporal_q = body.get("temporalQ") or {}
        if not isinstance(temporal_q, dict):
            raise BadRequestData("temporalQ must be an object")
        last_n = temporal_q.get("lastN", raw.get("lastN"))
        tq = TemporalQuery.parse(
            timerel=temporal_q.get("timerel"), time_at=temporal_q.get("timeAt"),
            end_time_at=temporal_q.get("endTimeAt"),
            timeproperty=temporal_q.get("timeproperty"),
            last_n=str(last_n) if isinstance(last_n, int) and not isinstance(last_n, bool)
            else last_n,
            options=raw.get("options"), aggr_methods=raw.get("aggrMethods"),
            aggr_period=raw.get("aggrPeriodDuration"))
        merged = QueryParams(
            selectors=tuple(selectors) if selectors else None,
            attrs=",".join(attrs) if attrs else None, q=body.get("q"),
            georel=geo_q.get("georel"), geometry=geo_q.get("geometry"),
            coordinates=geo_q.get("coordinates"), geoproperty=geo_q.get("geoproperty"),
            limit=params.limit, offset=params.offset, count=params.count, local=params.local)
        return await self.query(tenant, context, merged, tq)

    # ------------------------------------------------------------ histories and rendering

    async def _histories(self, tenant: str | None, heads: list[tuple[Any, ...]],
                         wanted: frozenset[str] | None, tq: TemporalQuery,
                         terms: TermMap) -> TemporalResult:
        ids = [h[0] for h in heads]
        if tq.mode == "aggregatedValues":
            data = await self._aggregates(tenant, ids, wanted, tq)
            entities = [self._render_head(h, terms, tq) | self._render_aggregates(
                data.get(h[0], {}), terms, tq) for h in heads]
            return TemporalResult(entities)
        limit = self.max_instances if tq.last_n is None else min(tq.last_n, self.max_instances)
        # lastN within the limit is a complete answer: no page to follow; otherwise one more
        # instance than the limit tells whether the history was truncated
        capped = tq.last_n is None or tq.last_n > limit
        data = await self.store.histories(tenant, ids, wanted, tq.time_filter(), limit + capped)
        position = {"observedAt": 3, "createdAt": 4, "modifiedAt": 5}[tq.timeproperty]
        truncated: list[str] = []
        for histories in data.values():
            for attr, rows in histories.items():
                if len(rows) > limit:
                    rows = rows[-limit:] if tq.last_n is not None else rows[:limit]
                    histories[attr] = rows
                    # the time of the last row kept (the oldest one for lastN)
                    truncated.append((rows[0] if tq.last_n is not None else rows[-1])[position])
        content_range = None
        if truncated:
            data, content_range = _paginate(data, truncated, tq)
        entities = []
        for head in heads:
            out = self._render_head(head, terms, tq)
            for iri, rows in data.get(head[0], {}).items():
                out[terms.compact(iri)] = self._render_attribute(rows, terms, tq)
            entities.append(out)
        return TemporalResult(entities, content_range=content_range)

    async def _aggregates(self, tenant: str | None, ids: list[str],
                          wanted: frozenset[str] | None, tq: TemporalQuery
                          ) -> dict[str, dict[str, list[tuple[Any, ...]]]]:
        """entity -> attribute -> [(dataset_id, kind, start, end, values...)]."""
        period = tq.period
        origin = tq.time_at if tq.timerel in ("after", "between") else None
        if tq.timerel == "between":
            whole_end = tq.end_time_at
        elif tq.timerel == "before":
            whole_end = tq.time_at
        else:
            whole_end = None
        found = await self.store.aggregate_histories(
            tenant, ids, wanted, tq.time_filter(), tq.methods,
            Buckets(period.ms, period.months), origin,
            with_last_time=period.whole and whole_end is None)
        out: dict[str, dict[str, list[tuple[Any, ...]]]] = {}
        for entity_id, per_attr in found.items():
            out[entity_id] = {attr: self._aggregate_results(aggregate, period, whole_end)
                              for attr, aggregate in per_attr.items()}
        return out

    @staticmethod
    def _aggregate_results(aggregate: AttributeAggregate, period: Period,
                           whole_end: str | None) -> list[tuple[Any, ...]]:
        origin = parse_time(aggregate.origin)
        results = []
        for dataset_id, bucket, *values in aggregate.rows:
            if not period.whole:
                bounds = _period_bounds(origin, int(bucket), period)  # type: ignore[call-overload]
            else:
                bounds = (aggregate.origin, whole_end or aggregate.last_time or aggregate.origin)
            results.append((dataset_id, aggregate.kind, *bounds, *values))
        return results

    @staticmethod
    def _render_head(head: tuple[Any, ...], terms: TermMap, tq: TemporalQuery) -> dict[str, Any]:
        entity_id, types, created, modified = head
        names = [terms.compact(t) for t in types]
        out: dict[str, Any] = {"id": entity_id, "type": names[0] if len(names) == 1 else names}
        if tq.sys_attrs:
            out["createdAt"] = created
            out["modifiedAt"] = modified
        return out

    @staticmethod
    def _render_attribute(rows: list[tuple[Any, ...]], terms: TermMap,
                          tq: TemporalQuery) -> Any:
        rep = Representation(sys_attrs=tq.sys_attrs)
        if tq.mode == "temporalValues":
            column = {"observedAt": 3, "createdAt": 4, "modifiedAt": 5}[tq.timeproperty]
            by_dataset: dict[str, dict[str, Any]] = {}
            for row in rows:
                if row[6] is not None:
                    continue  # deletions have no value
                instance = orjson.loads(row[7])  # values only: no timestamps needed
                kind = instance["type"]
                entry = by_dataset.get(row[2])
                if entry is None:
                    entry = by_dataset[row[2]] = {"type": kind, TEMPORAL_VALUES_MEMBER[kind]: []}
                    if row[2]:
                        entry["datasetId"] = row[2]
                member = TEMPORAL_VALUES_MEMBER.get(kind, "values")
                value = instance[VALUE_MEMBER[kind]]
                if kind == "VocabProperty":
                    value = ([terms.compact(v) for v in value] if isinstance(value, list)
                             else terms.compact(value))
                entry.setdefault(member, []).append([value, row[column]])
            entries = list(by_dataset.values())
            return entries[0] if len(entries) == 1 else entries
        rendered = []
        for row in rows:
            instance = stored_instance(row)
            if row[6] is not None:
                out: dict[str, Any] = {"type": instance["type"],
                                       VALUE_MEMBER[instance["type"]]: NULL}
                if row[2]:
                    out["datasetId"] = row[2]
                out["deletedAt"] = row[6]
                if tq.sys_attrs:
                    out["createdAt"] = row[4]
                    out["modifiedAt"] = row[5]
            else:
                out = _compact_instance(instance, terms, rep)
            out["instanceId"] = f"{INSTANCE_PREFIX}{row[0]}"
            rendered.append(out)
        return rendered

    @staticmethod
    def _render_aggregates(data: dict[str, list[tuple[Any, ...]]], terms: TermMap,
                           tq: TemporalQuery) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for iri, results in data.items():
            by_dataset: dict[str, dict[str, Any]] = {}
            for dataset_id, kind, start, end, *values in results:
                entry = by_dataset.get(dataset_id)
                if entry is None:
                    entry = by_dataset[dataset_id] = {"type": kind or "Property"}
                    if dataset_id:
                        entry["datasetId"] = dataset_id
                    for method in tq.methods:
                        entry[method] = []
                for method, value in zip(tq.methods, values, strict=True):
                    entry[method].append([value, start, end])
            entries = list(by_dataset.values())
            out[terms.compact(iri)] = entries[0] if len(entries) == 1 else entries
        return out

    # ------------------------------------------------------------ retention

    async def purge(self, now: datetime | None = None) -> int:
        """Delete the instances older than their retention, in every tenant; returns how many."""
        moment = now or self.now()
        tenants: list[str | None] = [None, *await self.store.tenants()]
        deleted = 0
        for tenant in tenants:
            settings = await self.store.retention(tenant)
            default_days = settings.pop("", self.retention_days)
            cutoffs = {attr: format_time(moment - timedelta(days=days))
                       for attr, days in settings.items()}
            default_cutoff = (None if default_days is None else
                              format_time(moment - timedelta(days=default_days)))
            deleted += await self.store.purge_history(tenant, cutoffs, default_cutoff)
        return deleted

    def start(self) -> None:
        """Start the background purge (every ``purge_interval_s``)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._purge_loop())

    async def _purge_loop(self) -> None:
        while True:
            await asyncio.sleep(self.purge_interval_s)
            try:
                await self.purge()
            except Exception:  # keep purging later; never kill the server
                LOG.exception("temporal retention purge failed")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None


def _with_type(body: object, current: dict[str, Any]) -> object:
    """A concise fragment ({"value": ...}) keeps the instance's type."""
    if isinstance(body, dict) and "type" not in body:
        member = VALUE_MEMBER[current["type"]]
        if member in body:
            return {"type": current["type"], **body}
    if not isinstance(body, dict):
        return {"type": current["type"], VALUE_MEMBER[current["type"]]: body}
    return body


def _attr_set(attrs: str | None, terms: TermMap) -> frozenset[str] | None:
    if attrs is None:
        return None
    names = [a.strip() for a in attrs.split(",")]
    if not all(names):
        raise BadRequestData(f"Parameter attrs has an empty item: {attrs!r}")
    return frozenset(terms.expand(n) for n in names)


def _paginate(data: dict[str, dict[str, list[tuple[Any, ...]]]], truncated: list[str],
              tq: TemporalQuery) -> tuple[dict[str, dict[str, list[tuple[Any, ...]]]], str]:
    """Cut every history to the common time window of the truncated ones (clause 6.3.10) and
    describe it as ``date-time <start>-<end>/<size>``."""
    position = {"observedAt": 3, "createdAt": 4, "modifiedAt": 5}[tq.timeproperty]
    times = [rows[i][position] for attrs in data.values() for rows in attrs.values()
             for i in (0, -1) if rows]
    if tq.last_n is None:
        end = min(truncated)
        start = tq.time_at if tq.timerel in ("after", "between") else min(times)

        def keep(t: str) -> bool:
            return t <= end
    else:
        end = max(truncated)  # the oldest instance kept
        start = (tq.end_time_at if tq.timerel == "between" else
                 tq.time_at if tq.timerel == "before" else max(times))

        def keep(t: str) -> bool:
            return t >= end
    cut = {entity: {attr: [r for r in rows if keep(r[position])] for attr, rows in attrs.items()}
           for entity, attrs in data.items()}
    cut = {entity: {attr: rows for attr, rows in attrs.items() if rows}
           for entity, attrs in cut.items()}
    size = "*" if tq.last_n is None else str(tq.last_n)
    return cut, f"date-time {start}-{end}/{size}"


# ---------------------------------------------------------------------------- CLI support


def expand_attribute(name: str) -> str:
    """An attribute name for the CLI: an absolute IRI as is, a term with the core context."""
    from cityvisor.broker.contexts import core_context_document
    from cityvisor.ngsild.context import compile_context

    check_name(name)
    return compile_context([], core_context_document()["@context"]).expand(name)


__all__ = ["TemporalBroker", "TemporalQuery", "TemporalResult", "changes_to_records",
           "normalize_time", "parse_duration"]
