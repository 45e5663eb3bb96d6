"""Commune search for the public portal: accent-, case- and hyphen-insensitive prefix matching.

The index is built once (first use, ~50 ms) from the bundled communes of Occitanie. Each
commune name is normalised (accents removed, lower case, every run of non-letters a single
space, ``st``/``ste`` spelled ``saint``/``sainte``) and indexed under every suffix that starts
at a word: "Saint-Gély-du-Fesc" gives ``saint gely du fesc``, ``gely du fesc``, ``du fesc``,
``fesc``. A query, normalised the same way, is a prefix of one of these keys: "nimes",
"NÎMES", "st gely", "saint-gely", "gely du" all find it. Keys are kept sorted, so a query is
two binary searches plus the ranking of the matches: microseconds, whatever the query.

Ranking: exact name first, then names that start with the query, then matches on a later word;
shorter names before longer ones, then alphabetical. A query of digits matches INSEE codes.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left
from functools import lru_cache

from cityvisor.data.geo.occitanie import Commune, communes

MAX_QUERY_LENGTH = 100
MAX_LIMIT = 50
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
#: common abbreviations in French place names, as users type them
_ABBREVIATIONS = {"st": "saint", "ste": "sainte", "sts": "saints", "stes": "saintes"}
#: the COG 2018 names drop a leading article ("Isle-Jourdain"); people type it ("L'Isle-Jourdain")
_ARTICLES = ("l ", "le ", "la ", "les ")


def normalize(text: str) -> str:
    """``"Saint-Gély-du-Fesc"`` -> ``"saint gely du fesc"``; ``"St Gély"`` -> ``"saint gely"``."""
    decomposed = unicodedata.normalize("NFKD", text.replace("œ", "oe").replace("Œ", "Oe"))
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    words = _NON_ALNUM.sub(" ", bare).split()
    return " ".join(_ABBREVIATIONS.get(word, word) for word in words)


class CommuneIndex:
    """Sorted word-suffix keys of every commune name, and the INSEE codes."""

    def __init__(self, entries: tuple[Commune, ...]) -> None:
        self.communes = entries
        keys: list[tuple[str, int, int]] = []  # (key, word position, commune index)
        for index, commune in enumerate(entries):
            words = normalize(commune.name).split()
            for position in range(len(words)):
                keys.append((" ".join(words[position:]), position, index))
        keys.sort()
        self._keys = keys
        self._texts = [key for key, _, _ in keys]
        self._names = [normalize(c.name) for c in entries]
        self._codes = sorted((c.code, i) for i, c in enumerate(entries))

    def search(self, query: str, limit: int = 10) -> list[Commune]:
        """Communes matching ``query`` (see the module doc), best first, at most ``limit``."""
        if len(query) > MAX_QUERY_LENGTH:
            raise ValueError(f"The query must be at most {MAX_QUERY_LENGTH} characters long")
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
        needle = normalize(query)
        if not needle:
            return []
        found: dict[int, tuple[int, int, str]] = {}
        self._match(needle, found)
        for article in _ARTICLES:
            if needle.startswith(article) and len(needle) > len(article):
                self._match(needle[len(article):], found)
        best = sorted(found.items(), key=lambda item: (item[1], self.communes[item[0]].code))
        return [self.communes[index] for index, _ in best[:limit]]

    def _match(self, needle: str, found: dict[int, tuple[int, int, str]]) -> None:
        if needle.isdigit():
            start = bisect_left(self._codes, (needle, -1))
            for code, index in self._codes[start:]:
                if not code.startswith(needle):
                    break
                found[index] = (0, 0, code)
        start = bisect_left(self._texts, needle)
        for key, position, index in self._keys[start:]:
            if not key.startswith(needle):
                break
            name = self._names[index]
            group = 0 if name == needle else (1 if position == 0 else 2)
            rank = (group, len(name), name)
            if index not in found or rank < found[index]:
                found[index] = rank


@lru_cache(maxsize=1)
def commune_index() -> CommuneIndex:
    """The index of all communes of Occitanie (built on first use, then shared)."""
    return CommuneIndex(communes())
