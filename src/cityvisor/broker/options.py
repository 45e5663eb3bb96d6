"""Parsing of the request parameters that shape results (clauses 6.3.x, 4.5.x)."""

from __future__ import annotations

from dataclasses import dataclass

from cityvisor.ngsild.context import TermMap
from cityvisor.ngsild.errors import BadRequestData, InvalidRequest
from cityvisor.ngsild.model import Representation, check_uri
from cityvisor.ngsild.projection import Projection, parse_projection

_OPTIONS = {"keyValues", "simplified", "concise", "normalized", "sysAttrs", "noOverwrite",
            "replace", "update", "count"}


@dataclass(frozen=True)
class Shape:
    """The raw shaping parameters of a read request, as sent."""

    options: str | None = None
    format: str | None = None
    attrs: str | None = None
    pick: str | None = None
    omit: str | None = None
    lang: str | None = None
    geometry_property: str | None = None
    dataset_id: str | None = None
    #: Linked Entity retrieval (clause 4.5.23): ``join``, ``joinLevel``, ``containedBy``
    join: str | None = None
    join_level: str | None = None
    contained_by: str | None = None


#: the entity members that are no attributes (clause 4.21: pick and omit name them too)
CORE_MEMBERS = frozenset(["id", "type", "scope", "createdAt", "modifiedAt", "deletedAt"])
JOIN_MODES = ("inline", "flat", "@none")
#: the deepest Linked Entity retrieval this broker performs (hops from the requested entity)
MAX_JOIN_LEVEL = 10
FORMATS = ("normalized", "concise", "keyValues", "simplified", "geojson")


@dataclass(frozen=True)
class Join:
    """Linked Entity retrieval (clause 4.5.23): inline or flat, up to ``level`` hops, never
    into the entities of ``contained_by`` (those the caller has already seen)."""

    mode: str
    level: int = 1
    contained_by: frozenset[str] = frozenset()


def split_list(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise BadRequestData(f"Parameter {what} has an empty item: {text!r}")
    return items


def option_set(options: str | None) -> set[str]:
    """The values of ``options``; an unknown one makes the request invalid (clause 6.3.7)."""
    items = set(split_list(options, "options") or [])
    unknown = items - _OPTIONS
    if unknown:
        raise InvalidRequest(f"Unknown value in options: {', '.join(sorted(unknown))}")
    return items


def projections(shape: Shape) -> tuple[Projection | None, Projection | None]:
    """The parsed ``pick`` and ``omit`` (clause 4.21). Clauses 5.7.1.4 and 5.7.2.4: neither
    goes with ``attrs``, and no member may be both picked and omitted."""
    pick = parse_projection(shape.pick, "pick") if shape.pick is not None else None
    omit = parse_projection(shape.omit, "omit") if shape.omit is not None else None
    if shape.attrs is not None and (pick is not None or omit is not None):
        raise BadRequestData("attrs cannot be combined with pick or omit")
    if pick is not None and omit is not None:
        both = pick.names() & omit.plain()
        if both:
            raise BadRequestData(f"Members both picked and omitted: {', '.join(sorted(both))}")
    return pick, omit


def member_names(names: frozenset[str], terms: TermMap) -> frozenset[str]:
    """Projection member names as the response names them (attribute names compacted with
    the caller's context; the core members as they are)."""
    return frozenset(name if name in CORE_MEMBERS else terms.compact(terms.expand(name))
                     for name in names)


def linked_join(shape: Shape, pick: Projection | None,
                omit: Projection | None) -> Join | None:
    """Parse ``join``/``joinLevel``/``containedBy`` (clause 4.5.23) and check the projection
    against them (clauses 5.7.1.4, 5.7.2.4): a projection reaching into linked Entities needs
    ``join``, and may not reach further than ``joinLevel`` hops."""
    mode = shape.join
    if mode is not None and mode not in JOIN_MODES:
        raise BadRequestData(f"join must be one of inline, flat or @none, got {mode!r}")
    level = 1
    if shape.join_level is not None:
        text = shape.join_level.strip()
        if not text.isdigit() or not 1 <= int(text) <= MAX_JOIN_LEVEL:
            raise BadRequestData(f"joinLevel must be an integer from 1 to {MAX_JOIN_LEVEL}, "
                                 f"got {shape.join_level!r}")
        level = int(text)
    contained = frozenset(check_uri(i, "containedBy entity id")
                          for i in split_list(shape.contained_by, "containedBy") or ())
    active = mode in ("inline", "flat")
    depth = max(p.depth() if p is not None else 0 for p in (pick, omit))
    if depth and not active:
        raise BadRequestData("A projection on linked entities ('{...}') needs join=inline "
                             "or join=flat")
    if depth > level:
        raise BadRequestData(f"The projection reaches {depth} linked entity hops, beyond "
                             f"joinLevel {level}")
    return Join(mode, level, contained) if active and mode is not None else None


def form_of(shape: Shape) -> str:
    """The representation asked for: normalized, concise or keyValues (clauses 4.5, 6.3.7:
    ``format`` wins over ``options``; ``simplified`` is keyValues)."""
    options = option_set(shape.options)
    form = shape.format
    if form is not None and form not in FORMATS:
        raise InvalidRequest(f"Unknown format {form!r}")
    if form is None or form == "geojson":
        chosen = [o for o in ("keyValues", "simplified", "concise", "normalized") if o in options]
        if len(chosen) > 1:
            raise BadRequestData("options may name only one of keyValues, concise, normalized")
        form = chosen[0] if chosen else "normalized"
    return "keyValues" if form == "simplified" else form


def representation(shape: Shape, terms: TermMap) -> Representation:
    options = option_set(shape.options)
    form = form_of(shape)
    pick, omit = projections(shape)
    attr_names = split_list(shape.attrs, "attrs")
    return Representation(
        form=form,
        sys_attrs="sysAttrs" in options,
        attrs=frozenset(terms.expand(a) for a in attr_names) if attr_names else None,
        pick=member_names(pick.names(), terms) if pick is not None else None,
        omit=member_names(omit.plain(), terms) if omit is not None else None,
        lang=shape.lang,
        dataset_ids=frozenset(split_list(shape.dataset_id, "datasetId") or ())
        if shape.dataset_id is not None else None,
    )
