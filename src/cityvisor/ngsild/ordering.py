"""Entity ordering (ETSI GS CIM 009 v1.8/v1.9, clause 4.23): ``orderBy``, ``orderFrom``,
``collation``.

``orderBy`` is a comma-separated list of items, most significant first::

    item      := target [ ';' direction ]
    target    := 'id' | 'type' | 'createdAt' | 'modifiedAt' | attribute path (clause 4.9:
                 attr, attr.sub, attr.createdAt, attr[member.member])
    direction := 'asc' (default) | 'desc' | 'dist-asc' | 'dist-desc'

``dist-asc`` / ``dist-desc`` order by the geodesic distance from the ``orderFrom`` Point (JSON
coordinates ``[lon, lat]``) to the item's GeoProperty (clause 4.23.3); they need ``orderFrom``.

Comparison (clause 4.23.2): values of one datatype compare naturally; across datatypes numbers
come before strings, strings before booleans; an entity without the value comes last whatever
the direction. The value of an attribute is the first value a ``q`` comparison would look at
(clause 4.9, ``query.instance_values``): that of its default instance (else of its first
instance), the first element of an array; a compound value orders only through a member
(``attr[member]``). Strings compare by code point unless ``collation`` names an
IETF BCP 47 language tag (clause 4.23.3, e.g. ``und`` for the root collation): they then
compare by the Unicode collation levels (base letters, then accents, then case, lower case
first); no tailoring per language is applied. Ties keep the store's insertion order.

:func:`page` sorts and cuts a page; every store calls it, so the backends agree.
"""

from __future__ import annotations

import heapq
import json
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cmp_to_key
from typing import Any

from cityvisor.ngsild import geo
from cityvisor.ngsild.errors import BadRequestData
from cityvisor.ngsild.query import Path, instance_values, parse_path

__all__ = ["OrderKey", "Ordering", "page", "parse_ordering"]

ENTITY_MEMBERS = ("id", "type", "createdAt", "modifiedAt")
DIRECTIONS = ("asc", "desc", "dist-asc", "dist-desc")
#: RFC 5646 language tag shape (with RFC 6067 ``-u-`` extensions)
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*\Z")
_ABSENT = object()


@dataclass(frozen=True)
class OrderKey:
    """One ``orderBy`` item: an entity member (``member``) or an attribute path."""

    member: str | None = None
    path: Path | None = None
    descending: bool = False
    distance: bool = False


@dataclass(frozen=True)
class Ordering:
    """A parsed ordering: its keys, the ``orderFrom`` point, the collation tag."""

    keys: tuple[OrderKey, ...]
    origin: tuple[float, float] | None = None
    collation: str | None = None


def _key(text: str, expand: Callable[[str], str]) -> OrderKey:
    target, sep, direction = text.partition(";")
    target, direction = target.strip(), direction.strip()
    if sep and direction not in DIRECTIONS:
        raise BadRequestData(f"orderBy item {text!r}: the direction must be one of "
                             f"{', '.join(DIRECTIONS)}")
    if not target:
        raise BadRequestData(f"orderBy item {text!r} names no attribute")
    descending = direction in ("desc", "dist-desc")
    distance = direction.startswith("dist-")
    if target in ENTITY_MEMBERS:
        if distance:
            raise BadRequestData(f"orderBy {target} cannot be ordered by distance")
        return OrderKey(member=target, descending=descending)
    return OrderKey(path=parse_path(target, expand), descending=descending, distance=distance)


def _origin(text: str) -> tuple[float, float]:
    try:
        coords = json.loads(text)
    except ValueError:
        raise BadRequestData(f"orderFrom {text!r} is not a JSON array of coordinates") from None
    if (not isinstance(coords, list) or len(coords) not in (2, 3)
            or not all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in coords)):
        raise BadRequestData(f"orderFrom {text!r} must be the coordinates of a Point, "
                             "e.g. [8.5,41.2]")
    lon, lat = float(coords[0]), float(coords[1])
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise BadRequestData(f"orderFrom {text!r} is not a WGS84 [longitude, latitude]")
    return lon, lat


def parse_ordering(order_by: str | None, order_from: str | None, collation: str | None,
                   expand: Callable[[str], str]) -> Ordering | None:
    """Parse the ordering parameters of a query (clause 4.23); None when there is no orderBy.

    Raises BadRequestData for a malformed item, a distance ordering without ``orderFrom`` and
    a collation that is not a language tag."""
    if collation is not None and not _LANGUAGE_TAG.match(collation):
        raise BadRequestData(f"collation {collation!r} is not an IETF BCP 47 language tag")
    if order_by is None:
        if order_from is not None:
            raise BadRequestData("orderFrom is only meaningful with orderBy")
        return None
    items = order_by.split(",")
    keys = tuple(_key(item, expand) for item in items)
    origin = _origin(order_from) if order_from is not None else None
    if origin is None and any(k.distance for k in keys):
        raise BadRequestData("Ordering by distance (dist-asc, dist-desc) needs orderFrom, "
                             "the coordinates of the reference Point")
    return Ordering(keys, origin, collation)


# ------------------------------------------------------------------------------ comparison


def _value(entity: dict[str, Any], key: OrderKey, origin: tuple[float, float] | None) -> Any:
    if key.member is not None:
        value = entity.get(key.member, _ABSENT)
        return value[0] if key.member == "type" and isinstance(value, list) else value
    assert key.path is not None
    if key.distance:
        return _distance(entity, key.path, origin)
    values = instance_values(entity, key.path)
    return values[0] if values else _ABSENT


def _distance(entity: dict[str, Any], path: Path, origin: tuple[float, float] | None) -> Any:
    assert origin is not None  # parse_ordering requires orderFrom
    for instance in entity.get("attrs", {}).get(path.attr) or ():
        if instance.get("type") == "GeoProperty":
            try:
                return geo.distance_m(origin[0], origin[1], geo.parse_geojson(instance["value"]))
            except (BadRequestData, KeyError, TypeError):
                return _ABSENT
    return _ABSENT


def _rank(value: Any) -> int:
    if isinstance(value, bool):
        return 2
    if isinstance(value, (int, float)):
        return 0
    return 1 if isinstance(value, str) else 3


def _collation_key(text: str) -> tuple[str, str, str]:
    """Root-collation levels of a string: base letters, accents, case (lower first)."""
    decomposed = unicodedata.normalize("NFD", text)
    base = "".join(c for c in decomposed if not unicodedata.combining(c))
    return base.casefold(), decomposed.casefold(), decomposed.swapcase()


def _comparable(value: Any, collated: bool) -> Any:
    if isinstance(value, str):
        return _collation_key(value) if collated else value
    if isinstance(value, (bool, int, float)):
        return value
    return json.dumps(value, sort_keys=True)  # a null value


def _compare_values(a: Any, b: Any, collated: bool) -> int:
    rank_a, rank_b = _rank(a), _rank(b)
    if rank_a != rank_b:
        return -1 if rank_a < rank_b else 1
    x, y = _comparable(a, collated), _comparable(b, collated)
    return -1 if x < y else (1 if x > y else 0)


def _comparator(ordering: Ordering) -> Callable[[tuple[int, list[Any], Any],
                                                 tuple[int, list[Any], Any]], int]:
    collated = ordering.collation is not None

    def compare(a: tuple[int, list[Any], Any], b: tuple[int, list[Any], Any]) -> int:
        for key, x, y in zip(ordering.keys, a[1], b[1], strict=True):
            if x is _ABSENT or y is _ABSENT:
                if x is _ABSENT and y is _ABSENT:
                    continue
                return 1 if x is _ABSENT else -1  # absent last, whatever the direction
            result = _compare_values(x, y, collated)
            if result:
                return -result if key.descending else result
        return -1 if a[0] < b[0] else (1 if a[0] > b[0] else 0)

    return compare


def page(entities: Iterable[Any], entity_of: Callable[[Any], dict[str, Any]],
         ordering: Ordering, offset: int, limit: int) -> list[Any]:
    """The items ``offset`` to ``offset + limit`` of ``entities`` (in insertion order) once
    sorted by ``ordering``; ``entity_of`` gives the stored entity of an item. Keeps only
    ``offset + limit`` items in memory besides the input."""
    if limit <= 0:
        return []
    decorated = ((index, [_value(entity_of(item), key, ordering.origin)
                          for key in ordering.keys], item)
                 for index, item in enumerate(entities))
    best = heapq.nsmallest(offset + limit, decorated, key=cmp_to_key(_comparator(ordering)))
    return [item for _, _, item in best[offset:]]
