"""Browser tests: a real cityvisor server in a thread, driven by Playwright in Debian's Chromium.

``live_server(settings)`` serves the whole web app (API, console, portal) on a free port;
``browser_page`` is a fresh French-locale page; ``screenshot(page, name)`` saves a PNG under
``build/screenshots/`` (kept by CI as evidence, ignored by git).
"""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from support.server import free_port

from cityvisor.config import Settings
from cityvisor.services import Services
from cityvisor.web import create_web_app

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@dataclass
class LiveServer:
    url: str
    settings: Settings
    services: Services
    loop: asyncio.AbstractEventLoop

    def call(self, coroutine_factory: Callable[[Services], object], timeout: float = 60) -> object:
        """Run ``coroutine_factory(services)`` on the server's loop (to seed or inspect data)."""
        future = asyncio.run_coroutine_threadsafe(coroutine_factory(self.services), self.loop)  # type: ignore[arg-type]
        return future.result(timeout)


@contextmanager
def live_server(settings: Settings) -> Iterator[LiveServer]:
    """Serve ``create_web_app(settings)`` with uvicorn in a thread until the block ends."""
    port = free_port()
    services = Services.build(settings)
    app = create_web_app(settings, services)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def serve() -> None:
        try:  # the app's lifespan starts the services; closing them is ours
            task = asyncio.ensure_future(server.serve())
            while not server.started and not task.done():  # noqa: ASYNC110 (uvicorn has no event)
                await asyncio.sleep(0.02)
            started.set()
            await task
        finally:
            await services.close()

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    if not started.wait(30):
        raise RuntimeError("the live server did not start")
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", settings, services, loop)
    finally:
        server.should_exit = True
        thread.join(30)
        loop.close()


class WebHelpers:
    """What browser tests use (a fixture: test modules cannot import this conftest by name)."""

    live_server = staticmethod(live_server)
    screenshot = staticmethod(lambda page, name: screenshot(page, name))
    ROOT = ROOT


@pytest.fixture(scope="session")
def web() -> WebHelpers:
    return WebHelpers()


# Module scope: Playwright's sync API keeps an event loop on the main thread while it runs, which
# would break later (non-browser) tests that call asyncio.run().
@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is required for browser tests (.ci/run installs it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"])
        yield browser
        browser.close()


@pytest.fixture
def browser_page(chromium: object) -> Iterator[object]:
    context = chromium.new_context(locale="fr-FR", timezone_id="Europe/Paris",  # type: ignore[attr-defined]
                                   viewport={"width": 1400, "height": 900})
    page = context.new_page()
    yield page
    context.close()


def screenshot(page: object, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))  # type: ignore[attr-defined]
    return path
