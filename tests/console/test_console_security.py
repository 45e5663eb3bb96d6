"""Security and robustness of the console API: roles and tenants on every route, input
validation (nothing changes on a 4xx), bounded memory, live streams cleaned up, strict CSP."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from console_seed import ALERTS, LIGHTS, alert, console_server, streetlights
from links import link
from starlette.routing import Route
from starlette.testclient import TestClient

from cityvisor.config import Settings
from cityvisor.console import alarms, assets, events, operator
from cityvisor.services import Services
from cityvisor.web import create_web_app

ALERT = "urn:ngsi-ld:Alert:test:a"
ACTIONS = f"/console/api/alerts/{ALERT}/actions"


async def _constant(value: bool) -> bool:
    return value


class Secure:
    def __init__(self, client: TestClient, services: Services) -> None:
        self.client = client
        self.services = services
        tokens = services.tokens
        assert tokens is not None
        self.reader = {"Authorization": "Bearer " + client.portal.call(tokens.create, "reader", "*", "lecteur")[0]}
        self.writer = {"Authorization": "Bearer " + client.portal.call(tokens.create, "writer", "*", "Alice")[0]}
        self.ales = {"Authorization": "Bearer " + client.portal.call(tokens.create, "admin", "ales", "Alès")[0]}

    def seed(self) -> None:
        for context, entities in ((ALERTS, [alert("a", "critical", "2026-11-27T08:00:00Z")]),
                                  (LIGHTS, streetlights())):
            response = self.client.post(
                "/ngsi-ld/v1/entityOperations/upsert", json=entities,
                headers={**link(context), "NGSILD-Tenant": "nimes", **self.writer})
            assert response.status_code in (201, 204), response.text

    def state(self) -> tuple[str, Any, int]:
        """(workflowState, assignee, number of recorded actions) of the seeded alert."""
        listed = self.client.get("/console/api/alerts?state=all", headers=self.reader).json()
        (found,) = [a for a in listed["alerts"] if a["id"] == ALERT]
        trail = self.client.get(f"/console/api/alerts/{ALERT}/history", headers=self.reader)
        return found["workflowState"], found["assignee"], len(trail.json()["actions"])


@pytest.fixture
def secure(tmp_path: Path) -> Iterator[Secure]:
    with console_server(tmp_path / "data", auth=True) as (client, services):
        yield Secure(client, services)


def _routes() -> list[tuple[str, str]]:
    found = []
    for route in operator.ROUTES:
        assert isinstance(route, Route) and route.methods
        path = (route.path.replace("{kind}", "streetlights").replace("{name}", "communes")
                .replace("{id:path}", ALERT))
        found.extend((method, path) for method in sorted(route.methods) if method != "HEAD")
    return found


@pytest.mark.parametrize(("method", "path"), _routes())
def test_every_console_route_needs_a_token_of_the_tenant(secure: Secure, method: str,
                                                         path: str) -> None:
    secure.seed()
    body = {"action": "acknowledge"} if method == "POST" else None
    if path.endswith("/mode"):  # the sign-in page needs it: it says only how to sign in
        answer = secure.client.request(method, path).json()
        assert set(answer) == {"auth", "defaultTenant"}
        return
    assert secure.client.request(method, path, json=body).status_code == 401
    bad = {"Authorization": "Bearer cvt_forged_token"}
    assert secure.client.request(method, path, json=body, headers=bad).status_code == 401
    # a token bound to Alès (even an admin one) cannot reach Nîmes through the header
    other = secure.client.request(method, path, json=body,
                                  headers={**secure.ales, "NGSILD-Tenant": "nimes"})
    assert other.status_code == 403
    if method == "POST":
        assert secure.client.request(method, path, json=body,
                                     headers=secure.reader).status_code == 403
    assert secure.state() == ("new", None, 0)


@pytest.mark.parametrize("body", [
    {"action": "acknowledge", "comment": False},
    {"action": "acknowledge", "comment": []},
    {"action": "acknowledge", "comment": {"text": "x"}},
    {"action": "acknowledge", "comment": "x" * 2001},
    {"action": "acknowledge", "actor": "Quelqu'un d'autre"},
    {"action": "acknowledge", "workflowState": "closed"},
    {"action": "ACKNOWLEDGE"},
    {"action": None},
    {"action": "assign", "assignee": ["Équipe"]},
    {"action": "assign", "assignee": "   "},
    {"action": "assign", "assignee": "x" * 121},
    {"action": "shelve", "comment": "travaux", "shelvedUntil": "2020-01-01T00:00:00Z"},
    {"action": "shelve", "comment": "travaux", "shelvedUntil": "9999-12-31T23:59:59Z"},
    {"action": "shelve", "comment": "travaux", "shelvedUntil": "2099-01-01T00:00:00"},
    {"action": "shelve", "comment": "travaux", "shelvedUntil": 1_900_000_000},
    {"action": "shelve", "comment": "travaux", "shelvedUntil": "demain"},
    {"action": "shelve", "shelvedUntil": "2099-01-01T00:00:00Z"},
    {"action": "resolve", "comment": " \n\t "},
])
def test_a_bad_action_body_is_a_clear_400_and_changes_nothing(secure: Secure,
                                                               body: dict[str, Any]) -> None:
    secure.seed()
    answer = secure.client.post(ACTIONS, json=body, headers=secure.writer)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("application/") and answer.json()["detail"]
    assert secure.state() == ("new", None, 0)


def test_bodies_that_are_not_json_objects_or_too_large_are_refused(secure: Secure) -> None:
    secure.seed()
    post = secure.client.post
    as_json = {**secure.writer, "Content-Type": "application/json"}
    for raw in (b"", b"[1]", b'"acknowledge"', b"{", b"\xff\xfe", b"null"):
        assert post(ACTIONS, content=raw, headers=as_json).status_code == 400, raw
    # a "simple" cross-origin form post (text/plain, no preflight) is refused
    for media_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        refused = post(ACTIONS, content=b'{"action": "acknowledge"}',
                       headers={**secure.writer, "Content-Type": media_type})
        assert refused.status_code == 415, media_type
    huge = b'{"action": "acknowledge", "comment": "' + b"a" * 5_000_000 + b'"}'
    too_large = post(ACTIONS, content=huge, headers=as_json)
    assert too_large.status_code == 413 and "65536" in too_large.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the stream is cut at the limit
        yield b'{"action": "acknowledge", "comment": "'
        for _ in range(100):
            yield b"a" * 50_000
        yield b'"}'

    streamed = post(ACTIONS, content=chunks(), headers=as_json)
    assert streamed.status_code == 413
    assert secure.state() == ("new", None, 0)


def test_ids_that_are_not_alerts_are_refused(secure: Secure) -> None:
    secure.seed()
    light = "urn:ngsi-ld:Streetlight:test:1"
    for path in (f"/console/api/alerts/{light}/history", "/console/api/alerts/urn:x:none/history"):
        assert secure.client.get(path, headers=secure.reader).status_code == 404, path
    for bad in ("not%20a%20uri", "%00", "javascript:alert(1)%3Cx%3E"):
        answer = secure.client.get(f"/console/api/alerts/{bad}/history", headers=secure.reader)
        assert answer.status_code in (400, 404), bad
        acted = secure.client.post(f"/console/api/alerts/{bad}/actions",
                                   json={"action": "acknowledge"}, headers=secure.writer)
        assert acted.status_code in (400, 404), bad
    acted = secure.client.post(f"/console/api/alerts/{light}/actions",
                               json={"action": "acknowledge"}, headers=secure.writer)
    assert acted.status_code == 404
    assert secure.state() == ("new", None, 0)


def test_the_lock_table_does_not_grow_with_the_ids_clients_send(secure: Secure) -> None:
    secure.seed()
    for i in range(50):
        secure.client.post(f"/console/api/alerts/urn:ngsi-ld:Alert:nope:{i}/actions",
                           json={"action": "acknowledge"}, headers=secure.writer)
    done = secure.client.post(ACTIONS, json={"action": "acknowledge"}, headers=secure.writer)
    assert done.status_code == 200
    assert len(alarms._locks) == 0


def test_operator_text_is_stored_without_control_characters(secure: Secure) -> None:
    secure.seed()
    done = secure.client.post(ACTIONS, headers=secure.writer, json={
        "action": "assign", "assignee": " Équipe\x00 crue\x1b[31m ",
        "comment": "ligne 1\nligne 2\x07 <img src=x onerror=alert(1)>"})
    assert done.status_code == 200, done.text
    alert_now = done.json()
    assert alert_now["assignee"] == "Équipe crue[31m"
    # markup is data, kept as typed (the pages write it as text, never as HTML)
    assert alert_now["lastAction"]["comment"] == "ligne 1\nligne 2 <img src=x onerror=alert(1)>"
    assert alert_now["lastAction"]["actor"].startswith("Alice")


def test_pages_have_no_inline_script_and_every_file_keeps_the_page_csp(secure: Secure) -> None:
    import re

    pages = sorted(assets.STATIC.rglob("*.html"))
    assert len(pages) == 2
    for html in pages:
        text = html.read_text(encoding="utf-8")
        for tag in re.findall(r"<script\b[^>]*>", text, flags=re.IGNORECASE):
            assert "src=" in tag, (html.name, tag)
        assert not re.search(r"<script\b[^>]*>\s*[^<\s]", text), html.name  # no inline code
        assert not re.search(r"\son[a-z]+\s*=", text, flags=re.IGNORECASE), html.name
        assert "javascript:" not in text.lower(), html.name
    for script in sorted(assets.STATIC.rglob("*.js")):
        code = script.read_text(encoding="utf-8")
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                     "eval(", "new Function", "setHTML"):
            assert sink not in code, (script.name, sink)
    urls = ["/", "/console/", "/static/console/main.js", "/static/public/portal.css"]
    urls += [f"/vendor/{name}" for name in assets.VENDOR]
    for url in urls:
        answer = secure.client.get(url)
        assert answer.status_code in (200, 503), url  # 503: npm ci not run here
        if answer.status_code == 200:
            assert answer.headers["content-security-policy"] == assets.PAGE_CSP, url
            assert answer.headers["x-content-type-options"] == "nosniff", url
            assert answer.headers["x-frame-options"] == "DENY", url
    assert "'unsafe-inline'" not in assets.PAGE_CSP.split("script-src")[1].split(";")[0]
    assert "'unsafe-eval'" not in assets.PAGE_CSP


def test_demo_mode_operator_name_is_cleaned(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d", auth=False, allow_context_fetch=False)
    with TestClient(create_web_app(settings), base_url="http://127.0.0.1:1026") as client:
        typed = "%20Camille%00%1B%5B31m%0A%20Durand" + "x" * 200
        me = client.get("/console/api/session", headers={"X-Cityvisor-Operator": typed}).json()
        assert me["actor"] == ("Camille[31m Durand" + "x" * 200)[:80] and me["mode"] == "open"
        nameless = client.get("/console/api/session", headers={"X-Cityvisor-Operator": "%00%07"})
        assert nameless.json()["actor"] == "opérateur (mode démo)"


@pytest.mark.parametrize("tile_url", [
    "https://tiles.example.org;script-src 'unsafe-inline' *.evil/{z}/{x}/{y}.png",
    "https://a b/{z}/{x}/{y}.png",
    "https://user:pw@tiles.example.org/{z}/{x}/{y}.png",
    "javascript://tiles.example.org/x",
])
def test_a_tile_url_cannot_write_into_the_page_csp(tmp_path: Path, tile_url: str) -> None:
    settings = Settings(data_dir=tmp_path / "d", auth=False, allow_context_fetch=False,
                        console_tile_url=tile_url)
    with TestClient(create_web_app(settings), base_url="http://127.0.0.1:1026") as client:
        for page in ("/", "/console/"):
            assert client.get(page).headers["content-security-policy"] == assets.PAGE_CSP


# ------------------------------------------------------------------ live streams (SSE)



class Console:
    """One raw ASGI connection to /console/api/events (what uvicorn does, minus the socket)."""

    def __init__(self, app: Any, headers: dict[str, str], spec_version: str) -> None:
        self.app = app
        self.scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": spec_version},
            "http_version": "1.1", "method": "GET", "scheme": "http", "path": "/console/api/events",
            "raw_path": b"/console/api/events", "query_string": b"", "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 1026)}
        self.gone = anyio.Event()
        self.hello = anyio.Event()
        self.status = 0
        self.chunks: list[bytes] = []
        self.data = anyio.Event()
        self.finished = anyio.Event()

    async def receive(self) -> dict[str, Any]:
        if not getattr(self, "_sent_request", False):
            self._sent_request = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        await anyio.lowlevel.checkpoint()  # a real server may wait for the socket here
        if self.gone.is_set():
            raise OSError("the client has gone")
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message.get("body"):
            self.chunks.append(message["body"])
            self.hello.set()
            if message["body"].startswith(b"data:"):
                self.data.set()

    async def run(self) -> None:
        try:
            await self.app(self.scope, self.receive, self.send)
        finally:
            self.finished.set()


@pytest.fixture
async def started(tmp_path: Path) -> AsyncIterator[tuple[Services, Any, dict[str, str]]]:
    """(services, app, reader headers) of a started server with tokens, closed after the test."""
    settings = Settings(data_dir=tmp_path / "sse", auth=True, allow_context_fetch=False)
    services = Services.build(settings)
    await services.start()
    try:
        assert services.tokens is not None
        reader = {"authorization": "Bearer " + (await services.tokens.create("reader", "*", "r"))[0],
                  "ngsild-tenant": "nimes"}
        yield services, create_web_app(settings, services), reader
    finally:
        await services.close()


async def _connect(group: anyio.abc.TaskGroup, consoles: list[Console]) -> None:
    """Start the consoles' requests and wait until each one's stream is open."""
    for console in consoles:
        group.start_soon(console.run)
    with anyio.fail_after(10):
        for console in consoles:
            await console.hello.wait()


@pytest.mark.anyio
@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_many_consoles_then_all_disconnect_leaves_nothing_behind(
        started: tuple[Services, Any, dict[str, str]], spec_version: str) -> None:
    services, app, reader = started
    hub = events.hub_of(services)
    consoles = [Console(app, reader, spec_version) for _ in range(100)]
    async with anyio.create_task_group() as group:
        await _connect(group, consoles)
        assert len(hub.listeners) == 100 and all(c.status == 200 for c in consoles)
        await services.broker.batch_upsert("nimes", [LIGHTS], streetlights())
        with anyio.fail_after(10):
            for console in consoles:
                await console.data.wait()
        for console in consoles:
            console.gone.set()
        with anyio.fail_after(5):  # noticed at once, not at the next heartbeat (15 s)
            for console in consoles:
                await console.finished.wait()
    assert not hub.listeners and not hub.cache.watched and not hub.cache.layers
    assert hub._sweeper is None


@pytest.mark.anyio
async def test_a_console_gone_before_its_first_byte_is_forgotten(
        started: tuple[Services, Any, dict[str, str]]) -> None:
    services, app, reader = started
    hub = events.hub_of(services)
    for _ in range(20):
        console = Console(app, reader, "2.3")
        console.gone.set()  # disconnects right after the request
        with anyio.fail_after(5):
            await console.run()
    assert not hub.listeners and hub._sweeper is None


@pytest.mark.anyio
async def test_live_streams_are_capped(started: tuple[Services, Any, dict[str, str]],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    services, app, reader = started
    monkeypatch.setattr(events, "MAX_STREAMS", 3)
    hub = events.hub_of(services)
    consoles = [Console(app, reader, "2.3") for _ in range(3)]
    async with anyio.create_task_group() as group:
        await _connect(group, consoles)
        refused = Console(app, reader, "2.3")
        with anyio.fail_after(5):
            await refused.run()
        assert refused.status == 503 and b"TooManyStreams" in b"".join(refused.chunks)
        for console in consoles:
            console.gone.set()
    assert not hub.listeners


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[events.EventHub]:
    """An event hub of an open (no token) server, closed after the test."""
    services = Services.build(Settings(data_dir=tmp_path, auth=False, allow_context_fetch=False))
    try:
        yield events.EventHub(services)
    finally:
        await services.close()


@pytest.mark.anyio
async def test_a_revoked_token_is_signed_out_even_while_changes_keep_coming(
        hub: events.EventHub) -> None:
    allowed = [True]
    listener = hub.subscribe("nimes")
    stream = hub.stream(listener, heartbeat_s=0.05, still_allowed=lambda: _constant(allowed[0]))
    try:
        assert (await anext(stream)).startswith(b"retry:")
        allowed[0] = False
        with anyio.fail_after(5):
            while True:  # a busy city: a change is always waiting
                hub.publish("nimes", [{"id": "urn:x:1"}])
                chunk = await anext(stream)
                if chunk.startswith(b"event: signedout"):
                    break
                assert chunk.startswith(b"data:")
                await anyio.sleep(0.005)
            with pytest.raises(StopAsyncIteration):
                await anext(stream)
        assert listener not in hub.listeners
    finally:
        await stream.aclose()


@pytest.mark.anyio
async def test_a_stalled_console_is_bounded_in_changes_not_only_in_writes(
        hub: events.EventHub) -> None:
    stalled = hub.subscribe("nimes")
    stream = hub.stream(stalled, heartbeat_s=5)
    try:
        assert (await anext(stream)).startswith(b"retry:")
        city = [{"id": f"urn:ngsi-ld:Streetlight:{i}", "state": "on"} for i in range(20_000)]
        for _ in range(5):  # five bulk writes of the whole city: far fewer than QUEUE_LIMIT
            hub.publish("nimes", city)
        assert stalled.overflowed
        assert stalled.queue.qsize() * len(city) <= events.EVENT_LIMIT
        # the console is told to reload its layers, then follows the changes again
        assert (await anext(stream)).startswith(b"event: resync")
        assert stalled.queue.empty() and stalled.pending == 0
        hub.publish("nimes", [{"id": "urn:x:after"}])
        assert await anext(stream) == b'data: [{"id":"urn:x:after"}]\n\n'
    finally:
        await stream.aclose()
