"""JSON-LD term maps for NGSI-LD (ETSI GS CIM 009, clause 5.5.7 and Annex B).

A generic JSON-LD processor is far too slow for every request, so a resolved ``@context`` is
compiled once into a ``TermMap``: a term -> IRI dictionary (with CURIE prefixes and ``@vocab``)
and its reverse, used to expand names on input and compact them on output. The core context is
always applied last and its terms cannot be overridden (they are ``@protected``).

This module is pure: resolving URLs to documents is the broker's job (``broker/contexts.py``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cityvisor.ngsild.errors import BadRequestData

CORE_IRI = "https://uri.etsi.org/ngsi-ld/"
DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
CORE_CONTEXT_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"
#: every URL under which clients and test suites refer to the core context
CORE_CONTEXT_URLS = frozenset(
    [f"https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.{n}.jsonld" for n in range(3, 10)]
    + [
        "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
        "http://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
    ]
)

#: the ``rel`` of the HTTP ``Link`` header that carries a JSON-LD @context (clause 6.3.5)
CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
#: the @context of a FIWARE Smart Data Models domain, ``{domain}`` being e.g. ``Weather``
SDM_CONTEXT_TEMPLATE = (
    "https://raw.githubusercontent.com/smart-data-models/dataModel.{domain}/master/context.jsonld"
)

_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


def sdm_context(domain: str) -> str:
    """The @context URL of the Smart Data Models ``domain`` (its subject, e.g. ``Weather``).

    >>> sdm_context("Weather")
    'https://raw.githubusercontent.com/smart-data-models/dataModel.Weather/master/context.jsonld'
    """
    return SDM_CONTEXT_TEMPLATE.format(domain=domain)


def is_absolute_iri(text: str) -> bool:
    """True for ``scheme:...`` strings (URLs and URNs)."""
    return bool(_ABSOLUTE.match(text))


class TermMap:
    """A compiled ``@context``: expands terms to IRIs and compacts IRIs back to terms."""

    __slots__ = ("_compact_cache", "_expand_cache", "_prefixes", "_reverse", "terms", "vocab")

    def __init__(self, terms: Mapping[str, str], vocab: str | None) -> None:
        self.terms = dict(terms)
        self.vocab = vocab
        reverse: dict[str, str] = {}
        for term, iri in self.terms.items():
            # Prefer the shortest term for an IRI; on a tie keep the first defined.
            current = reverse.get(iri)
            if current is None or len(term) < len(current):
                reverse[iri] = term
        self._reverse = reverse
        self._prefixes = sorted(
            ((t, i) for t, i in self.terms.items() if i.endswith(("/", "#", ":"))),
            key=lambda item: -len(item[1]),
        )
        self._expand_cache: dict[str, str] = {}
        self._compact_cache: dict[str, str] = {}

    def expand(self, term: str) -> str:
        """Expand a term, a CURIE (``prefix:suffix``) or keep an absolute IRI."""
        cached = self._expand_cache.get(term)
        if cached is not None:
            return cached
        iri = self.terms.get(term)
        if iri is None:
            prefix, sep, suffix = term.partition(":")
            if sep and not suffix.startswith("//") and prefix in self.terms:
                iri = self.terms[prefix] + suffix
            elif sep and is_absolute_iri(term):
                iri = term
            elif self.vocab is not None:
                iri = self.vocab + term
            else:
                iri = term
        if len(self._expand_cache) < 100_000:
            self._expand_cache[term] = iri
        return iri

    def compact(self, iri: str) -> str:
        """Compact an IRI to the caller's term, a ``@vocab`` suffix, a CURIE, or keep it."""
        cached = self._compact_cache.get(iri)
        if cached is not None:
            return cached
        term = self._reverse.get(iri)
        if term is None:
            term = iri
            if self.vocab is not None and iri.startswith(self.vocab):
                suffix = iri[len(self.vocab) :]
                if suffix and suffix not in self.terms and ":" not in suffix:
                    term = suffix
            if term is iri:
                for prefix, base in self._prefixes:
                    if iri.startswith(base) and len(iri) > len(base):
                        term = f"{prefix}:{iri[len(base):]}"
                        break
        if len(self._compact_cache) < 100_000:
            self._compact_cache[iri] = term
        return term


def _definitions(document: Mapping[str, Any]) -> tuple[dict[str, str], str | None]:
    """Raw term -> (unresolved) IRI pairs of one context object, and its ``@vocab``."""
    terms: dict[str, str] = {}
    vocab: str | None = None
    for key, value in document.items():
        if key == "@vocab":
            if isinstance(value, str):
                vocab = value
            continue
        if key.startswith("@"):
            continue
        if isinstance(value, str):
            terms[key] = value
        elif isinstance(value, Mapping):
            target = value.get("@id")
            if isinstance(target, str):
                terms[key] = target
            elif target is None and ":" not in key:
                terms[key] = key  # resolved through @vocab below
        # None (explicitly undefined terms) and anything else: not defined
    return terms, vocab


def _resolve(terms: dict[str, str], vocab: str | None) -> dict[str, str]:
    """Turn CURIEs and term references in term definitions into absolute IRIs."""
    resolved: dict[str, str] = {}
    for term, target in terms.items():
        iri = target
        for _ in range(4):  # CURIE chains are short; bound the loop against cycles
            if target == "@id" or target == "@type" or target.startswith("@"):
                iri = target
                break
            prefix, sep, suffix = iri.partition(":")
            if sep and not suffix.startswith("//") and prefix in terms and prefix != term:
                iri = terms[prefix] + suffix
                continue
            if not sep and iri in terms and iri != term:
                iri = terms[iri]
                continue
            if not sep and vocab is not None:
                iri = vocab + iri
            break
        resolved[term] = iri
    return resolved


def _refuse_scoped_contexts(document: Mapping[str, Any]) -> None:
    """Clause 5.5.7: a user @context "shall not contain JSON-LD Scoped Contexts"."""
    for term, definition in document.items():
        if isinstance(definition, Mapping) and "@context" in definition:
            raise BadRequestData(f"The @context defines {term!r} with a scoped context, which "
                                 "NGSI-LD does not allow in a user @context (clause 5.5.7)")


def compile_context(documents: list[Mapping[str, Any]], core: Mapping[str, Any]) -> TermMap:
    """Compile resolved context objects (in order) plus the core context into a ``TermMap``.

    ``documents`` are the ``@context`` *values* (objects) after URLs were resolved by the caller.
    """
    core_terms, core_vocab = _definitions(core)
    user_terms: dict[str, str] = {}
    user_vocab: str | None = None
    for document in documents:
        _refuse_scoped_contexts(document)
        terms, vocab = _definitions(document)
        user_terms.update(terms)
        if vocab is not None:
            user_vocab = vocab
    vocab = user_vocab or core_vocab
    merged = {**_resolve({**core_terms, **user_terms}, vocab), **_resolve(core_terms, core_vocab)}
    merged = {t: i for t, i in merged.items() if not i.startswith("@")}
    return TermMap(merged, vocab)
