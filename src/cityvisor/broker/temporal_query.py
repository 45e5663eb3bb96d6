"""The temporal query (clause 4.11) and the temporal representations of its results
(clauses 4.5.7-4.5.9: normalized with ``instanceId``, ``temporalValues``, ``aggregatedValues``;
clause 6.3.10: pagination of long histories). Pure: the broker reads, this module shapes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from cityvisor.ngsild.context import TermMap
from cityvisor.ngsild.errors import BadRequestData
from cityvisor.ngsild.model import (
    NULL,
    VALUE_MEMBER,
    Representation,
    _compact_instance,
    check_uri,
)
from cityvisor.ngsild.projection import parse_projection
from cityvisor.ngsild.time import Period, display_time, normalize_time, parse_duration
from cityvisor.store.base import TIME_PROPERTIES, TimeFilter
from cityvisor.store.records import HistoryRow

INSTANCE_PREFIX = "urn:ngsi-ld:instance:"
AGGREGATION_METHODS = ("totalCount", "distinctCount", "sum", "avg", "min", "max", "stddev",
                       "sumsq")
#: clause 4.5.9: attribute type -> member of the simplified temporal representation
TEMPORAL_VALUES_MEMBER = {
    "Property": "values", "GeoProperty": "values", "Relationship": "objects",
    "LanguageProperty": "languageMaps", "ListProperty": "valueLists",
    "ListRelationship": "objectLists", "JsonProperty": "jsons", "VocabProperty": "vocabs",
}


#: the ``format`` parameter's values -> representation (``simplified`` = ``temporalValues``)
FORMATS = {"normalized": "normalized", "temporalValues": "temporalValues",
           "simplified": "temporalValues", "aggregatedValues": "aggregatedValues"}


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
    #: ``datasetId`` filter (clause 4.5.5): the instances kept; ``""`` is the default one
    datasets: frozenset[str] | None = None

    def keeps(self, row: HistoryRow) -> bool:
        """Whether the ``datasetId`` filter keeps a history row."""
        return self.datasets is None or row.dataset_id in self.datasets

    @classmethod
    def parse(cls, *, timerel: object = None, time_at: object = None, end_time_at: object = None,
              timeproperty: object = None, last_n: object = None, options: object = None,
              aggr_methods: object = None, aggr_period: object = None,
              format: object = None,
              dataset_ids: object = None) -> TemporalQuery:
        """Validate the raw parameters (strings, or JSON values of a temporalQ)."""
        if isinstance(aggr_methods, list) and all(isinstance(m, str) for m in aggr_methods):
            aggr_methods = ",".join(aggr_methods)  # clause 5.2.44: an array of strings
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
            raise BadRequestData(f"timeproperty must be observedAt, createdAt, modifiedAt or "
                                 f"deletedAt, got {prop!r}")
        n: int | None = None
        if last_n is not None:
            try:
                # clause 5.2.21: a positive integer (2.5 is none, whatever int() makes of it)
                n = int(last_n) if isinstance(last_n, (str, int)) else None
            except ValueError:
                n = None
            if n is None or isinstance(last_n, bool) or n < 1:
                raise BadRequestData(f"lastN must be a positive integer, got {last_n!r}")
        opts = [o.strip() for o in str(options or "").split(",") if o.strip()]
        known = {"temporalValues", "aggregatedValues", "sysAttrs", "normalized", "count"}
        unknown = [o for o in opts if o not in known]
        if unknown:
            raise BadRequestData(f"Unknown value in options: {', '.join(unknown)}")
        if "temporalValues" in opts and "aggregatedValues" in opts:
            raise BadRequestData("options may name only one of temporalValues and aggregatedValues")
        mode = ("temporalValues" if "temporalValues" in opts else
                "aggregatedValues" if "aggregatedValues" in opts else "normalized")
        if format is not None:
            # clause 6.3.7 / 6.18.3.2: format names the representation and takes precedence
            # over the representation named in options
            if not isinstance(format, str) or format not in FORMATS:
                raise BadRequestData(f"format must be one of {', '.join(FORMATS)}, got "
                                     f"{format!r}")
            mode = FORMATS[format]
            if mode != "aggregatedValues":
                aggr_methods = aggr_period = None
        methods: tuple[str, ...] = ()
        period = Period()
        if mode == "aggregatedValues":
            if not aggr_methods:
                raise BadRequestData("options=aggregatedValues needs aggrMethods, e.g. "
                                     "aggrMethods=avg,max")
            names = [m.strip() for m in str(aggr_methods).split(",")]
            bad = [m for m in names if m not in AGGREGATION_METHODS]
            if bad:
                raise BadRequestData(f"Unknown aggrMethods {', '.join(map(repr, bad))}: use "
                                     f"{', '.join(AGGREGATION_METHODS)}")
            methods = tuple(dict.fromkeys(names))
            period = parse_duration(aggr_period)  # type: ignore[arg-type]
        elif aggr_methods is not None or aggr_period is not None:
            raise BadRequestData("aggrMethods and aggrPeriodDuration need options=aggregatedValues")
        return cls(timerel, start, end, prop, n, mode, "sysAttrs" in opts, methods, period,
                   _datasets(dataset_ids))

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


def _datasets(raw: object) -> frozenset[str] | None:
    """``datasetId``: a comma-separated list (or a JSON array) of dataset URIs, ``@none``
    naming the default instance."""
    if raw is None:
        return None
    names = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(names, list) or not names:
        raise BadRequestData(f"datasetId must be a list of URIs or @none, got {raw!r}")
    out = set()
    for name in names:
        if name == "@none":
            out.add("")
            continue
        if not isinstance(name, str) or not name.strip():
            raise BadRequestData(f"datasetId has an empty or non-string item: {raw!r}")
        out.add(check_uri(name.strip(), "datasetId"))
    return frozenset(out)


#: members of a temporal representation that are no attribute (clause 4.5.7)
NON_ATTRIBUTE_MEMBERS = frozenset({"id", "type", "createdAt", "modifiedAt", "deletedAt"})


@dataclass(frozen=True)
class Projection:
    """``pick`` / ``omit`` (clause 4.21): the members of each temporal representation kept
    (``pick``) or dropped (``omit``), by their compact names: ``id``, ``type``, attribute names.
    """

    pick: frozenset[str] | None = None
    omit: frozenset[str] | None = None

    @classmethod
    def parse(cls, pick: str | None, omit: str | None, attrs: str | None = None) -> Projection:
        """Clauses 4.21, 5.7.3.4 and 5.7.4.4: ``pick`` and ``omit`` name entity members (a
        linked-entity projection such as ``owner{name}`` is not one); they may not be
        combined with ``attrs``, nor name the same member."""
        picked = _members(pick, "pick")
        omitted = _members(omit, "omit")
        if attrs is not None and (picked is not None or omitted is not None):
            raise BadRequestData("attrs cannot be combined with pick or omit: use pick")
        both = (picked or frozenset()) & (omitted or frozenset())
        if both:
            raise BadRequestData(f"pick and omit both name {', '.join(sorted(both))}")
        return cls(picked, omitted)

    @property
    def active(self) -> bool:
        return self.pick is not None or self.omit is not None

    def attributes(self, terms: TermMap) -> frozenset[str] | None:
        """The attribute IRIs to read: those ``pick`` names, None (all) without ``pick``."""
        if self.pick is None:
            return None
        return frozenset(terms.expand(n) for n in self.pick if n not in NON_ATTRIBUTE_MEMBERS)

    def apply(self, rendered: dict[str, Any]) -> dict[str, Any]:
        if self.pick is not None:
            rendered = {k: v for k, v in rendered.items() if k in self.pick}
        if self.omit is not None:
            rendered = {k: v for k, v in rendered.items() if k not in self.omit}
        return rendered


NO_PROJECTION = Projection()


def _members(raw: str | None, what: str) -> frozenset[str] | None:
    """The member names of a ``pick`` / ``omit`` (the clause 4.21 grammar); a temporal
    representation has no linked entities to project (``owner{name}``: BadRequestData)."""
    if raw is None:
        return None
    projection = parse_projection(raw, what)
    if projection.depth():
        raise BadRequestData(f"{what} of a temporal query names entity members; a linked "
                             f"entity projection ({raw!r}) is not supported here")
    return projection.names()


@dataclass
class TemporalResult:
    entities: list[dict[str, Any]]
    count: int | None = None
    content_range: str | None = None  # set when some attribute's history was truncated


def row_time(row: HistoryRow, timeproperty: str) -> str:
    """The time of a history row on the ``timeproperty`` axis."""
    if timeproperty == "createdAt":
        return row.created_at
    if timeproperty == "deletedAt":
        return row.deleted_at or row.modified_at
    return row.modified_at if timeproperty == "modifiedAt" else row.observed_at


def stored_instance(row: HistoryRow) -> dict[str, Any]:
    """The instance of a history row, its timestamps from the row's columns."""
    instance: dict[str, Any] = orjson.loads(row.value)
    instance.setdefault("createdAt", row.created_at)
    instance.setdefault("modifiedAt", row.modified_at)
    return instance


def render_head(head: tuple[Any, ...], terms: TermMap, tq: TemporalQuery) -> dict[str, Any]:
    entity_id, types, created, modified = head
    names = [terms.compact(t) for t in types]
    out: dict[str, Any] = {"id": entity_id, "type": names[0] if len(names) == 1 else names}
    if tq.sys_attrs:
        out["createdAt"] = created
        out["modifiedAt"] = modified
    return out

def render_attribute(rows: list[HistoryRow], terms: TermMap,
                      tq: TemporalQuery) -> Any:
    rep = Representation(sys_attrs=tq.sys_attrs)
    if tq.mode == "temporalValues":
        column = {"observedAt": 3, "createdAt": 4, "modifiedAt": 5, "deletedAt": 6}[
            tq.timeproperty]
        by_dataset: dict[str, dict[str, Any]] = {}
        for row in rows:
            if row[6] is not None and tq.timeproperty != "deletedAt":
                continue  # deletions have no value, but on the axis of their deletion time
            instance = orjson.loads(row[7])  # values only: no timestamps needed
            if row[6] is not None:
                instance[VALUE_MEMBER[instance["type"]]] = NULL
            kind = instance["type"]
            entry = by_dataset.get(row[2])
            if entry is None:
                entry = by_dataset[row[2]] = {"type": kind, TEMPORAL_VALUES_MEMBER[kind]: []}
                if row[2]:
                    entry["datasetId"] = row[2]
            member = TEMPORAL_VALUES_MEMBER.get(kind, "values")
            value = instance[VALUE_MEMBER[kind]]
            if kind == "LanguageProperty":
                value = {"languageMap": value}  # clause 4.5.9: [{"languageMap": {...}}, time]
            if kind == "VocabProperty":
                value = ([terms.compact(v) for v in value] if isinstance(value, list)
                         else terms.compact(value))
            entry.setdefault(member, []).append([value, display_time(str(row[column]))])
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

def render_aggregates(data: dict[str, list[tuple[Any, ...]]], terms: TermMap,
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
                entry[method].append([value, display_time(start), display_time(end)])
        entries = list(by_dataset.values())
        out[terms.compact(iri)] = entries[0] if len(entries) == 1 else entries
    return out


def paginate(data: dict[str, dict[str, list[HistoryRow]]], truncated: list[str],
              tq: TemporalQuery) -> tuple[dict[str, dict[str, list[HistoryRow]]], str]:
    """Cut every history to the common time window of the truncated ones (clause 6.3.10) and
    describe it as ``date-time <start>-<end>/<size>``."""
    times = [row_time(rows[i], tq.timeproperty) for attrs in data.values()
             for rows in attrs.values() for i in (0, -1) if rows]
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
    cut = {entity: {attr: [r for r in rows if keep(row_time(r, tq.timeproperty))]
                    for attr, rows in attrs.items()}
           for entity, attrs in data.items()}
    cut = {entity: {attr: rows for attr, rows in attrs.items() if rows}
           for entity, attrs in cut.items()}
    size = "*" if tq.last_n is None else str(tq.last_n)
    return cut, f"date-time {display_time(str(start))}-{display_time(end)}/{size}"
