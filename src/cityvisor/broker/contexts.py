"""JSON-LD context resolution, caching and hosting (clauses 5.5.7, 6.30 ``/jsonldContexts``).

Resolution order for a context URL: the bundled core context (under every published URL), a
context hosted here (added through ``/jsonldContexts``), a bundled Smart Data Models context, a
cached copy (fetched once before, or preloaded from a file), and only then the network, if
``allow_fetch``; the fetched copy is cached in the system database, so a restart never fetches
again. Compiled ``TermMap``s are memoised by the context value.
"""

from __future__ import annotations

import re
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import aiohttp
import orjson

from cityvisor.ngsild.context import CORE_CONTEXT_URL, CORE_CONTEXT_URLS, TermMap, compile_context
from cityvisor.ngsild.errors import BadRequestData, LdContextNotAvailable, ResourceNotFound
from cityvisor.store.base import SystemStore
from cityvisor.store.records import StoredContext

SDM_URL = re.compile(
    r"^https://raw\.githubusercontent\.com/smart-data-models/(dataModel\.[A-Za-z]+)/"
    r"(?:master|main)/context\.jsonld$"
)
HOSTED_PATH = "/ngsi-ld/v1/jsonldContexts/"



@dataclass(frozen=True)
class ContextInfo:
    url: str
    local_id: str
    kind: str  # Hosted | Cached | ImplicitlyCreated (core)
    created_at: str | None


def _package_json(*parts: str) -> Any:
    return orjson.loads(resources.files("cityvisor.data").joinpath(*parts).read_bytes())


def core_context_document() -> dict[str, Any]:
    return _package_json("jsonld", "ngsi-ld-core-context-v1.9.jsonld")  # type: ignore[no-any-return]


class ContextRegistry:
    """Resolves ``@context`` values to term maps; hosts and caches context documents."""

    def __init__(self, system: SystemStore, *, allow_fetch: bool = True,
                 fetch_timeout_s: float = 5.0) -> None:
        self.core = core_context_document()["@context"]
        self.allow_fetch = allow_fetch
        self.fetch_timeout_s = fetch_timeout_s
        self.system = system
        self._maps: OrderedDict[bytes, TermMap] = OrderedDict()
        self.core_map = compile_context([], self.core)

    # ---------------------------------------------------------------- resolution

    async def term_map(self, context: Any) -> TermMap:
        """The compiled term map of a context value (None, URL, object or list of them)."""
        if context is None or (isinstance(context, str) and context in CORE_CONTEXT_URLS):
            return self.core_map
        key = context.encode() if isinstance(context, str) else orjson.dumps(
            context, option=orjson.OPT_SORT_KEYS)
        cached = self._maps.get(key)
        if cached is not None:
            self._maps.move_to_end(key)
            return cached
        documents: list[Mapping[str, Any]] = []
        await self._collect(context, documents, depth=0)
        term_map = compile_context(documents, self.core)
        self._maps[key] = term_map
        if len(self._maps) > 256:
            self._maps.popitem(last=False)
        return term_map

    async def _collect(self, context: Any, out: list[Mapping[str, Any]], depth: int) -> None:
        if depth > 8:
            raise BadRequestData("The @context nests too deeply")
        if context is None:
            return
        if isinstance(context, list):
            for item in context:
                await self._collect(item, out, depth + 1)
        elif isinstance(context, str):
            if context in CORE_CONTEXT_URLS:
                return
            document = await self.document(context)
            await self._collect(document.get("@context"), out, depth + 1)
        elif isinstance(context, dict):
            imported = context.get("@import")
            if isinstance(imported, str):
                await self._collect(imported, out, depth + 1)
            out.append(context)
        else:
            raise BadRequestData(f"An @context must be a URL, an object or a list, got {context!r}")

    async def document(self, url: str) -> dict[str, Any]:
        """The context document behind a URL, from the bundle, the database or the network."""
        if url in CORE_CONTEXT_URLS:
            return {"@context": self.core}
        local = self._local_document(url)
        if local is not None:
            return local
        match = SDM_URL.match(url)
        if match:
            try:
                return _package_json("smart-data-models", match.group(1), "context.jsonld")  # type: ignore[no-any-return]
            except FileNotFoundError:
                pass
        if not self.allow_fetch:
            raise LdContextNotAvailable(
                f"The @context {url} is not cached and fetching is disabled; preload it with "
                "'cityvisor context preload URL FILE'"
            )
        document = await self._fetch(url)
        self._store(url, "Cached", document)
        return document

    def _local_document(self, url: str) -> dict[str, Any] | None:
        if HOSTED_PATH in url:
            found = self.system.context(local_id=url.rsplit("/", 1)[-1])
        else:
            found = self.system.context(url=url)
        return orjson.loads(found.document) if found else None

    async def _fetch(self, url: str) -> dict[str, Any]:
        if not url.startswith(("http://", "https://")):
            raise LdContextNotAvailable(f"The @context {url} is not an http(s) URL")
        try:
            timeout = aiohttp.ClientTimeout(total=self.fetch_timeout_s)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
                    url, headers={"Accept": "application/ld+json"},
                    raise_for_status=True) as response:
                document = orjson.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError) as error:
            raise LdContextNotAvailable(f"The @context {url} cannot be retrieved: {error}") from error
        if not isinstance(document, dict) or "@context" not in document:
            raise LdContextNotAvailable(f"The document at {url} is not a JSON-LD context")
        return document  # type: ignore[no-any-return]

    def _store(self, url: str, kind: str, document: dict[str, Any], local_id: str | None = None) -> str:
        local_id = local_id or uuid.uuid4().hex
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        self.system.put_context(StoredContext(local_id, url, kind, orjson.dumps(document), now))
        self._maps.clear()
        return local_id

    # ---------------------------------------------------------------- /jsonldContexts

    def host(self, document: object, base_url: str) -> str:
        """Host a context document posted by a client; returns its URL (clause 6.30.3.1)."""
        if not isinstance(document, dict) or "@context" not in document:
            raise BadRequestData("The body must be a JSON-LD context document with an @context")
        inner = document["@context"]
        if not isinstance(inner, (dict, list, str)):
            raise BadRequestData("The @context member must be an object, a list or a URL")
        local_id = uuid.uuid4().hex
        url = base_url.rstrip("/") + HOSTED_PATH + local_id
        self._store(url, "Hosted", {"@context": inner}, local_id)
        return url

    def preload(self, url: str, document: object) -> None:
        """Cache a context document under its URL, as if fetched (for air-gapped sites)."""
        if not isinstance(document, dict) or "@context" not in document:
            raise BadRequestData(f"The document for {url} is not a JSON-LD context")
        self._store(url, "Cached", document)

    def list(self) -> list[ContextInfo]:
        infos = [ContextInfo(CORE_CONTEXT_URL, "core", "ImplicitlyCreated", None)]
        for stored in self.system.contexts():
            infos.append(ContextInfo(stored.url, stored.local_id, stored.kind, stored.created_at))
        return infos

    def _local_id(self, context_id: str) -> str:
        """A context is addressed by its local id or by its URL (clause 6.30)."""
        if context_id in CORE_CONTEXT_URLS:
            return "core"
        found = self.system.context(url=context_id)
        return found.local_id if found else context_id

    def get(self, context_id: str) -> dict[str, Any]:
        local_id = self._local_id(context_id)
        if local_id == "core":
            return {"@context": self.core}
        found = self.system.context(local_id=local_id)
        if found is None:
            raise ResourceNotFound(f"No @context with id {local_id} is hosted or cached here")
        return orjson.loads(found.document)  # type: ignore[no-any-return]

    def delete(self, context_id: str) -> None:
        local_id = self._local_id(context_id)
        if local_id == "core":
            raise BadRequestData("The core @context cannot be deleted")
        if not self.system.delete_context(local_id):
            raise ResourceNotFound(f"No @context with id {local_id} is hosted or cached here")
        self._maps.clear()

    def close(self) -> None:
        """Nothing to release: the system store is closed by its owner."""
