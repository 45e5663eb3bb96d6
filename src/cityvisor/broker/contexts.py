"""JSON-LD context resolution, caching and hosting (clauses 5.5.7, 6.30 ``/jsonldContexts``).

Resolution order for a context URL: the bundled core context (under every published URL), a
context hosted here (added through ``/jsonldContexts``), a bundled Smart Data Models context, a
cached copy (fetched once before, or preloaded from a file), and only then the network, if
``allow_fetch``; the fetched copy is cached in the system database, so a restart never fetches
again. Compiled ``TermMap``s are memoised by the context value.
"""

from __future__ import annotations

import hashlib
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

from cityvisor.broker.changes import ChangeSink, ContextsChanged
from cityvisor.ngsild.context import CORE_CONTEXT_URL, CORE_CONTEXT_URLS, TermMap, compile_context
from cityvisor.ngsild.errors import (
    BadRequestData,
    InvalidRequest,
    LdContextNotAvailable,
    ResourceNotFound,
)
from cityvisor.store.base import SystemStore
from cityvisor.store.records import StoredContext

SDM_URL = re.compile(
    r"^https://raw\.githubusercontent\.com/smart-data-models/(dataModel\.[A-Za-z]+)/"
    r"(?:master|main)/context\.jsonld$"
)
HOSTED_PATH = "/ngsi-ld/v1/jsonldContexts/"



#: the kinds of @context (clause 5.13.1): added through /jsonldContexts, downloaded (or
#: preloaded) from their URL, created by the broker from an inline @context
HOSTED, CACHED, IMPLICITLY_CREATED = "Hosted", "Cached", "ImplicitlyCreated"
KINDS = (HOSTED, CACHED, IMPLICITLY_CREATED)
CORE_LOCAL_ID = "core"
IMPLICIT_PREFIX = "implicit-"


@dataclass(frozen=True)
class ContextInfo:
    """The details of an @context (clause 5.13.3 ``details=true``)."""

    url: str
    local_id: str
    kind: str  # one of KINDS
    created_at: str

    def details(self) -> dict[str, str]:
        return {"URL": self.url, "localId": self.local_id, "kind": self.kind,
                "createdAt": self.created_at}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def check_context_value(value: object) -> None:
    """Raise BadRequestData unless ``value`` is a JSON-LD @context: a URL, an object, or an
    array of those (JSON-LD 1.1, section 3.1; NGSI-LD clause 5.5.4)."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, str):
            if not item.strip():
                raise BadRequestData("An @context URL cannot be empty")
        elif not isinstance(item, dict):
            raise BadRequestData("An @context must be a URL, an object or an array of them, "
                                 f"got {orjson.dumps(item).decode()}")


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
        self.core_loaded_at = _now()
        #: told when a stored @context changes (the change feed); None: one worker alone
        self.on_commit: ChangeSink | None = None

    def forget(self) -> None:
        """Drop the memoised term maps (another worker changed a stored @context)."""
        self._maps.clear()

    def _changed(self) -> None:
        self._maps.clear()
        if self.on_commit is not None:
            self.on_commit(ContextsChanged())

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
        local = await self._local_document(url)
        if local is not None:
            return local
        match = SDM_URL.match(url)
        if match:
            try:
                return _package_json("smart-data-models", match.group(1), "context.jsonld")  # type: ignore[no-any-return]
            except FileNotFoundError:
                pass
        document = await self._download(url)
        await self._store(url, CACHED, document)
        return document

    async def _download(self, url: str) -> dict[str, Any]:
        if not self.allow_fetch:
            raise LdContextNotAvailable(
                f"The @context {url} cannot be downloaded: fetching is disabled; preload it "
                "with 'cityvisor context preload URL FILE'"
            )
        return await self._fetch(url)

    async def _local_document(self, url: str) -> dict[str, Any] | None:
        if HOSTED_PATH in url:
            found = await self.system.context(local_id=url.rsplit("/", 1)[-1])
        else:
            found = await self.system.context(url=url)
        return orjson.loads(found.document) if found else None

    async def _fetch(self, url: str) -> dict[str, Any]:
        """Download a context document (clause 5.5.6): one that cannot be retrieved is
        LdContextNotAvailable, one retrieved but not a JSON-LD context is BadRequestData."""
        if not url.startswith(("http://", "https://")):
            raise LdContextNotAvailable(f"The @context {url} is not an http(s) URL")
        try:
            timeout = aiohttp.ClientTimeout(total=self.fetch_timeout_s)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
                    url, headers={"Accept": "application/ld+json"},
                    raise_for_status=True) as response:
                raw = await response.read()
        except (aiohttp.ClientError, TimeoutError) as error:
            raise LdContextNotAvailable(f"The @context {url} cannot be retrieved: {error}") from error
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise BadRequestData(f"The @context {url} is not valid JSON: {error}") from error
        if not isinstance(document, dict) or "@context" not in document:
            raise BadRequestData(f"The document at {url} is not a JSON-LD context "
                                 "(no @context member)")
        return document  # type: ignore[no-any-return]

    async def _store(self, url: str, kind: str, document: dict[str, Any], local_id: str | None = None) -> str:
        local_id = local_id or uuid.uuid4().hex
        await self.system.put_context(StoredContext(local_id, url, kind, orjson.dumps(document), _now()))
        self._changed()
        return local_id

    # ---------------------------------------------------------------- /jsonldContexts

    async def host(self, document: object, base_url: str) -> str:
        """Host a context document posted by a client; returns its URL (clause 5.13.2).

        A payload that is not an object with an ``@context`` member is not an Add @context
        request (InvalidRequest); an ``@context`` value that is not JSON-LD (a URL, an
        object, or an array of them) is invalid JSON-LD (BadRequestData, clauses 5.13.2.4
        and 5.5.4)."""
        if not isinstance(document, dict) or "@context" not in document:
            raise InvalidRequest("The body must be a JSON object with an @context member")
        inner = document["@context"]
        check_context_value(inner)
        local_id = uuid.uuid4().hex
        url = base_url.rstrip("/") + HOSTED_PATH + local_id
        await self._store(url, HOSTED, {"@context": inner}, local_id)
        return url

    @staticmethod
    def needs_implicit(context: Any) -> bool:
        """Whether a request @context cannot travel as one URL in a Link header: an inline
        object, or an array holding an object or more than one non-core URL (clause 5.13.1:
        the broker then creates an ImplicitlyCreated @context standing for it)."""
        items = context if isinstance(context, list) else [context]
        if any(isinstance(item, dict) for item in items):
            return True
        return len([c for c in items if isinstance(c, str) and c not in CORE_CONTEXT_URLS]) > 1

    @staticmethod
    def implicit_url(context: Any, base_url: str) -> str:
        """The URL the ImplicitlyCreated @context for ``context`` is served at: named by a
        hash of its content, so that one context value gets one implicit @context."""
        digest = hashlib.sha256(orjson.dumps(context, option=orjson.OPT_SORT_KEYS)).hexdigest()
        return base_url.rstrip("/") + HOSTED_PATH + IMPLICIT_PREFIX + digest[:32]

    @classmethod
    def is_implicit_of(cls, url: str, context: Any) -> bool:
        """Whether ``url`` is the ImplicitlyCreated @context of ``context`` (on any base)."""
        local_id = url.rsplit("/", 1)[-1]
        return (HOSTED_PATH in url and local_id.startswith(IMPLICIT_PREFIX)
                and cls.implicit_url(context, "").endswith(local_id))

    async def keep_implicit(self, context: Any, url: str) -> None:
        """Store the ImplicitlyCreated @context ``{"@context": context}`` served at ``url``
        (from ``implicit_url``), unless it is already (clause 5.13.1). It is listed with
        kind ImplicitlyCreated, can be deleted but not reloaded (clause 5.13.5)."""
        local_id = url.rsplit("/", 1)[-1]
        if await self.system.context(local_id=local_id) is None:
            await self._store(url, IMPLICITLY_CREATED, {"@context": context}, local_id)

    async def preload(self, url: str, document: object) -> None:
        """Cache a context document under its URL, as if fetched (for air-gapped sites)."""
        if not isinstance(document, dict) or "@context" not in document:
            raise BadRequestData(f"The document for {url} is not a JSON-LD context")
        await self._store(url, CACHED, document)

    async def list(self, kind: str | None = None) -> list[ContextInfo]:
        """The @contexts known here, the core first, of one ``kind`` if given (clause
        5.13.3; an unknown kind is BadRequestData)."""
        if kind is not None and kind not in KINDS:
            raise BadRequestData(f"Parameter kind must be one of {', '.join(KINDS)}, "
                                 f"got {kind!r}")
        infos = [self._core_info()]
        infos += [ContextInfo(c.url, c.local_id, c.kind, c.created_at)
                  for c in await self.system.contexts()]
        return [i for i in infos if kind is None or i.kind == kind]

    def _core_info(self) -> ContextInfo:
        """The core @context: always cached, from the bundled copy (clause 5.13.1)."""
        return ContextInfo(CORE_CONTEXT_URL, CORE_LOCAL_ID, CACHED, self.core_loaded_at)

    async def info(self, context_id: str) -> ContextInfo:
        """The details of one @context (clause 5.13.4 with ``details=true``)."""
        local_id = await self._local_id(context_id)
        if local_id == CORE_LOCAL_ID:
            return self._core_info()
        found = await self._stored(local_id)
        return ContextInfo(found.url, found.local_id, found.kind, found.created_at)

    async def _local_id(self, context_id: str) -> str:
        """A context is addressed by its local id, by its URL if Cached, or by the URL it is
        served at here (clause 5.13.4)."""
        if context_id in CORE_CONTEXT_URLS or context_id == CORE_LOCAL_ID:
            return CORE_LOCAL_ID
        found = await self.system.context(url=context_id)
        if found is None and HOSTED_PATH in context_id:
            return context_id.rsplit("/", 1)[-1]
        return found.local_id if found else context_id

    async def _stored(self, local_id: str) -> StoredContext:
        found = await self.system.context(local_id=local_id)
        if found is None:
            raise ResourceNotFound(f"No @context with id {local_id} is hosted or cached here")
        return found

    async def get(self, context_id: str) -> dict[str, Any]:
        """The document of one @context (clause 5.13.4)."""
        local_id = await self._local_id(context_id)
        if local_id == CORE_LOCAL_ID:
            return {"@context": self.core}
        return orjson.loads((await self._stored(local_id)).document)  # type: ignore[no-any-return]

    async def delete(self, context_id: str, *, reload: bool = False) -> None:
        """Delete an @context, or with ``reload`` download a Cached one again (clause 5.13.5).

        Only a Cached @context can be reloaded (others: BadRequestData); when the download
        fails or is not a JSON-LD context, the stored copy stays (LdContextNotAvailable). The core @context cannot be
        deleted; reloading it reinstates the bundled copy, as it is never fetched."""
        local_id = await self._local_id(context_id)
        if local_id == CORE_LOCAL_ID:
            if not reload:
                raise BadRequestData("The core @context cannot be deleted")
            self.core = core_context_document()["@context"]
            self.core_map = compile_context([], self.core)
            self.core_loaded_at = _now()
            self._changed()
            return
        found = await self._stored(local_id)
        if reload:
            if found.kind != CACHED:
                raise BadRequestData(f"Only a Cached @context can be reloaded; {local_id} is "
                                     f"{found.kind}")
            try:
                document = await self._download(found.url)
            except BadRequestData as error:  # 5.13.5.4: an invalid download is "not available"
                raise LdContextNotAvailable(error.detail) from error
            await self.system.delete_context(local_id)
            await self._store(found.url, CACHED, document, local_id)
            return
        await self.system.delete_context(local_id)
        self._changed()

    def close(self) -> None:
        """Nothing to release: the system store is closed by its owner."""
