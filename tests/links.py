"""Link headers for tests (a plain module: ``conftest`` is ambiguous once several exist)."""

from __future__ import annotations

SDM = "https://raw.githubusercontent.com/smart-data-models/dataModel.{}/master/context.jsonld"
LINK_REL = 'rel="http://www.w3.org/ns/json-ld#context"; type="application/ld+json"'


def link(url: str) -> dict[str, str]:
    """A Link header carrying a JSON-LD @context URL."""
    return {"Link": f"<{url}>; {LINK_REL}"}
