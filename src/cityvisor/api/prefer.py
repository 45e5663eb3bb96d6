"""The HTTP ``Prefer`` header (IETF RFC 7240) and the NGSI-LD version preference.

A client that only understands the payloads of an earlier NGSI-LD version asks for them with
``Prefer: ngsi-ld=<major>.<minor>`` (clause 4.3.6.8, HTTP binding clause 6.3.6); the broker
answers with ``Preference-Applied: ngsi-ld=<major>.<minor>`` when it honours the preference.

RFC 7240, section 2: ``Prefer`` is a comma-separated list of preferences, each a token with an
optional value (a token or a quoted-string) and its own optional parameters after ``;``; the
header may be repeated (the lists are joined), a preference name is case-insensitive
(RFC 9110, section 5.6.2) and only the first instance of a repeated preference counts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

#: the name of the version preference (clause 6.3.6)
VERSION_PREFERENCE = "ngsi-ld"
PREFERENCE_APPLIED = "Preference-Applied"
#: where a GeoJSON answer puts its @context: ``body=json`` (Link header) or ``body=ld+json``
BODY_PREFERENCE = "body"
#: the NGSI-LD version whose payloads this broker serves natively (its core @context)
NATIVE_VERSION = (1, 9)
_VERSION = re.compile(r"(\d{1,3})\.(\d{1,3})")
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
#: one ``name[=value]`` piece of a preference (RFC 7240: value and parameters alike)
_PIECE = re.compile(rf"\s*({_TOKEN})\s*(?:=\s*({_TOKEN}|{_QUOTED})\s*)?")
#: the text between separators, quoted-strings kept whole
_PART = re.compile(rf'(?:{_QUOTED}|[^",;])*')


@dataclass(frozen=True)
class Preference:
    """One preference: its name (lower case), value and parameters (names lower case)."""

    name: str
    value: str | None = None
    parameters: dict[str, str | None] = field(default_factory=dict)


def parse_prefer(headers: Iterable[str]) -> dict[str, Preference]:
    """The preferences of the ``Prefer`` header values, by (lower-case) name; the first
    instance of a repeated preference wins. A malformed preference is skipped, not an error:
    a server ignores the preferences it does not understand (RFC 7240, section 2)."""
    found: dict[str, Preference] = {}
    for header in headers:
        for preference in _parse_one(header):
            found.setdefault(preference.name, preference)
    return found


@lru_cache(maxsize=256)
def _parse_one(header: str) -> tuple[Preference, ...]:
    out: list[Preference] = []
    for member in _split(header, ","):
        if not member.strip():
            continue  # RFC 9110 5.6.1: empty list elements are ignored
        pieces = [_piece(text) for text in _split(member, ";")]
        first = pieces[0]
        params = [piece for piece in pieces[1:] if piece is not None]
        if first is None or not first[0] or len(params) < len(pieces) - 1:
            continue
        out.append(Preference(first[0].lower(), first[1], {
            name.lower(): value for name, value in params if name}))
    return tuple(out)


def _split(text: str, separator: str) -> list[str]:
    """``text`` cut at ``separator`` outside quoted-strings (the other separator kept)."""
    parts: list[str] = []
    current = ""
    position = 0
    while position <= len(text):
        match = _PART.match(text, position)
        assert match is not None  # the pattern matches the empty string
        current += match.group(0)
        position = match.end()
        if position >= len(text):
            break
        char = text[position]
        if char == separator:
            parts.append(current)
            current = ""
        elif char == '"':  # an unterminated quoted-string: keep it as text
            current += text[position:]
            position = len(text)
            break
        else:
            current += char
        position += 1
    parts.append(current)
    return parts


def _piece(text: str) -> tuple[str, str | None] | None:
    """(name, value) of ``name[=value]``; ("", None) when empty; None when malformed."""
    if not text.strip():
        return ("", None)
    match = _PIECE.fullmatch(text)
    if match is None:
        return None
    name, value = match.groups()
    if value is not None and value.startswith('"'):
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    return name, value


def version_preference(headers: Iterable[str]) -> str | None:
    """The NGSI-LD version a client prefers (``"1.0"``), from its ``Prefer`` header values;
    None when there is none, or its value is not a ``major.minor`` version from 1.0 to the
    native one (a preference the broker cannot honour is ignored, RFC 7240 section 2)."""
    preference = parse_prefer(headers).get(VERSION_PREFERENCE)
    if preference is None or preference.value is None:
        return None
    match = _VERSION.fullmatch(preference.value.strip())
    if match is None:
        return None
    version = (int(match.group(1)), int(match.group(2)))
    if not (1, 0) <= version <= NATIVE_VERSION:
        return None
    return f"{version[0]}.{version[1]}"


def context_in_link(headers: Iterable[str]) -> bool:
    """True for ``Prefer: body=json`` (clause 6.3.6): a GeoJSON answer then carries its
    @context in a ``Link`` header, not in the body (``body=ld+json``, the default)."""
    preference = parse_prefer(headers).get(BODY_PREFERENCE)
    return preference is not None and (preference.value or "").strip().lower() == "json"


def version_applied(version: str | None) -> dict[str, str]:
    """The ``Preference-Applied`` header confirming a version preference (none without)."""
    if version is None:
        return {}
    return {PREFERENCE_APPLIED: f"{VERSION_PREFERENCE}={version}"}
