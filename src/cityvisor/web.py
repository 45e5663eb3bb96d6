"""The whole HTTP server: the NGSI-LD API plus the operator console and the public portal.

The API layer does not know the console (imports point down); this module, like the CLI, sits on
top and composes them. ``cityvisor serve`` and ``cityvisor demo`` serve :func:`create_web_app`.

``cityvisor serve --workers N`` (a shared PostgreSQL store only) runs N uvicorn worker
processes on one listening socket: each imports :func:`worker_app` (an ASGI factory), reads
the server's settings from the ``CITYVISOR_WORKER_SETTINGS`` environment variable (JSON, set
by :func:`serve` for its children) and builds services of its own on them, a connection pool
of up to ``db_pool_max`` connections included.
"""

from __future__ import annotations

import os

from starlette.types import ASGIApp

from cityvisor.api.app import create_app
from cityvisor.config import Settings
from cityvisor.console import assets
from cityvisor.console import operator as operator_console  # console API (operator console)
from cityvisor.console import public as public_portal  # public portal API (no sign-in)
from cityvisor.services import Services


def create_web_app(settings: Settings, services: Services | None = None) -> ASGIApp:
    """The NGSI-LD API with the console and portal pages, static files and their APIs;
    without ``services``, they are built when the server starts (and closed when it stops)."""
    return create_app(settings, services, build_services=Services.open, extra_routes=[
        *assets.ROUTES,
        *operator_console.ROUTES,  # operator console API
        *public_portal.ROUTES,  # public portal API: /public/api/...
    ])


#: the environment variable that hands the settings to the worker processes
WORKER_SETTINGS = "CITYVISOR_WORKER_SETTINGS"


def worker_app() -> ASGIApp:
    """The web app of one worker process of ``serve(..., workers=N)`` (an ASGI factory)."""
    settings = Settings.model_validate_json(os.environ[WORKER_SETTINGS])
    _tune_gc()
    return create_web_app(settings)


def serve(settings: Settings, asgi: ASGIApp | None = None, *, workers: int = 1) -> None:
    """Run ``asgi`` with uvicorn on the configured host and port until interrupted; with
    ``workers`` > 1, that many processes of :func:`worker_app` instead (their services are
    built in each, so ``asgi`` must be None: a shared store only, see ``cityvisor serve``)."""
    import uvicorn

    if workers > 1:
        if asgi is not None:
            raise ValueError("Worker processes build their own app: give no asgi app")
        os.environ[WORKER_SETTINGS] = settings.model_dump_json()
        target: ASGIApp | str = "cityvisor.web:worker_app"
    else:
        assert asgi is not None
        _tune_gc()
        target = asgi
    uvicorn.run(target, factory=workers > 1, workers=workers if workers > 1 else None,
                host=settings.host, port=settings.port, log_level=settings.log_level,
                access_log=False, server_header=False)


def _tune_gc() -> None:
    """Objects alive at start-up (modules, contexts) never become garbage: keep them out of
    the collector's scans, and collect less often (requests allocate many short-lived
    dicts)."""
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
