"""@context resolution: bundled, fetched once and cached, offline behaviour."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cityvisor.broker.contexts import ContextRegistry
from cityvisor.ngsild.errors import BadRequestData, LdContextNotAvailable
from cityvisor.store.sqlite_system import SqliteSystemStore

pytestmark = pytest.mark.anyio
USER_CONTEXT = {"@context": {"level": "https://example.org/flood#level"}}
#: further documents the context server answers 200 with, by path (tests may change them)
SERVED: dict[str, bytes] = {
    "/no-context.jsonld": b'{"note": "no context member here"}',
    "/not-json.jsonld": b"this is { not json",
}


@pytest.fixture
def context_server() -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server serving one @context and recording each request path."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = SERVED.get(self.path, json.dumps(USER_CONTEXT).encode())
            self.send_response(200 if self.path in SERVED or self.path == "/ctx.jsonld" else 404)
            self.send_header("Content-Type", "application/ld+json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()


async def test_user_context_is_fetched_once_then_cached(
        tmp_path: Path, context_server: tuple[str, list[str]]) -> None:
    base, hits = context_server
    registry = ContextRegistry(SqliteSystemStore(tmp_path / "system.sqlite"))
    terms = await registry.term_map(f"{base}/ctx.jsonld")
    assert terms.expand("level") == "https://example.org/flood#level"
    registry._maps.clear()  # forget the compiled map: the document must come from the cache
    await registry.term_map(f"{base}/ctx.jsonld")
    assert hits == ["/ctx.jsonld"]
    # A restarted broker, offline, still knows it.
    registry.close()
    offline = ContextRegistry(SqliteSystemStore(tmp_path / "system.sqlite"), allow_fetch=False)
    assert (await offline.term_map(f"{base}/ctx.jsonld")).expand("level").endswith("#level")
    assert any(i.url == f"{base}/ctx.jsonld" and i.kind == "Cached" for i in await offline.list())


async def test_unreachable_context_is_503(tmp_path: Path,
                                          context_server: tuple[str, list[str]]) -> None:
    base, _ = context_server
    registry = ContextRegistry(SqliteSystemStore(tmp_path / "system.sqlite"), fetch_timeout_s=2)
    with pytest.raises(LdContextNotAvailable):
        await registry.term_map(f"{base}/missing.jsonld")
    offline = ContextRegistry(SqliteSystemStore(tmp_path / "other.sqlite"), allow_fetch=False)
    with pytest.raises(LdContextNotAvailable, match="preload"):
        await offline.term_map("https://example.org/never-seen.jsonld")


async def test_bundled_contexts_need_no_network(tmp_path: Path) -> None:
    registry = ContextRegistry(SqliteSystemStore(tmp_path / "system.sqlite"), allow_fetch=False)
    for version in range(3, 10):
        url = f"https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.{version}.jsonld"
        assert (await registry.term_map(url)).expand("location").endswith("/ngsi-ld/location")
    for branch in ("master", "main"):
        url = (f"https://raw.githubusercontent.com/smart-data-models/dataModel.Weather/"
               f"{branch}/context.jsonld")
        assert (await registry.term_map(url)).expand("precipitation").startswith(
            "https://smartdatamodels.org/")


async def test_a_retrieved_document_that_is_no_context_is_bad_request_data(
        tmp_path: Path, context_server: tuple[str, list[str]]) -> None:
    """Clause 5.5.6: unavailable -> LdContextNotAvailable; retrieved but invalid -> BadRequestData."""
    base, _ = context_server
    registry = ContextRegistry(SqliteSystemStore(tmp_path / "system.sqlite"), fetch_timeout_s=2)
    for path in ("/no-context.jsonld", "/not-json.jsonld"):
        with pytest.raises(BadRequestData):
            await registry.term_map(base + path)
    assert [i.url for i in await registry.list()] == [(await registry.list())[0].url]  # nothing cached


async def test_reload_downloads_a_cached_context_again(
        tmp_path: Path, context_server: tuple[str, list[str]]) -> None:
    """Clause 5.13.5: reload replaces the copy; a failed reload keeps it."""
    base, hits = context_server
    url = f"{base}/reloaded.jsonld"
    registry = ContextRegistry(SqliteSystemStore(tmp_path / "system.sqlite"), fetch_timeout_s=2)
    SERVED["/reloaded.jsonld"] = json.dumps({"@context": {"a": "https://example.org/a"}}).encode()
    try:
        assert (await registry.term_map(url)).expand("a") == "https://example.org/a"
        local_id = (await registry.info(url)).local_id
        SERVED["/reloaded.jsonld"] = json.dumps({"@context": {"a": "https://example.org/b"}}).encode()
        await registry.delete(url, reload=True)
        assert (await registry.info(local_id)).kind == "Cached"
        assert (await registry.term_map(url)).expand("a") == "https://example.org/b"
        SERVED["/reloaded.jsonld"] = b"not json"
        with pytest.raises(LdContextNotAvailable):
            await registry.delete(local_id, reload=True)
        del SERVED["/reloaded.jsonld"]
        with pytest.raises(LdContextNotAvailable):
            await registry.delete(local_id, reload=True)
        assert await registry.get(url) == {"@context": {"a": "https://example.org/b"}}
        await registry.delete(url)
        assert all(i.url != url for i in await registry.list())
    finally:
        SERVED.pop("/reloaded.jsonld", None)
    assert hits.count("/reloaded.jsonld") == 4
