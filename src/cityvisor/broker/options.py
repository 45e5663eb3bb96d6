"""Parsing of the request parameters that shape results (clauses 6.3.x, 4.5.x)."""

from __future__ import annotations

from dataclasses import dataclass

from cityvisor.ngsild.context import TermMap
from cityvisor.ngsild.errors import BadRequestData
from cityvisor.ngsild.model import Representation

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


def split_list(text: str | None, what: str) -> list[str] | None:
    if text is None:
        return None
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise BadRequestData(f"Parameter {what} has an empty item: {text!r}")
    return items


def option_set(options: str | None) -> set[str]:
    items = set(split_list(options, "options") or [])
    unknown = items - _OPTIONS
    if unknown:
        raise BadRequestData(f"Unknown value in options: {', '.join(sorted(unknown))}")
    return items


def representation(shape: Shape, terms: TermMap) -> Representation:
    options = option_set(shape.options)
    form = shape.format
    if form is not None and form not in ("normalized", "concise", "keyValues", "simplified",
                                         "geojson"):
        raise BadRequestData(f"Unknown format {form!r}")
    if form is None or form == "geojson":
        chosen = [o for o in ("keyValues", "simplified", "concise", "normalized") if o in options]
        if len(chosen) > 1:
            raise BadRequestData("options may name only one of keyValues, concise, normalized")
        form = chosen[0] if chosen else "normalized"
    if form == "simplified":
        form = "keyValues"
    if shape.pick is not None and shape.omit is not None:
        raise BadRequestData("pick and omit cannot be used together")
    attr_names = split_list(shape.attrs, "attrs")
    pick = split_list(shape.pick, "pick")
    omit = split_list(shape.omit, "omit")
    return Representation(
        form=form,
        sys_attrs="sysAttrs" in options,
        attrs=frozenset(terms.expand(a) for a in attr_names) if attr_names else None,
        pick=frozenset(pick) if pick else None,
        omit=frozenset(omit) if omit else None,
        lang=shape.lang,
        dataset_ids=frozenset(split_list(shape.dataset_id, "datasetId") or ())
        if shape.dataset_id is not None else None,
    )
