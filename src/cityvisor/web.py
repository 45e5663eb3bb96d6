"""The whole HTTP server: the NGSI-LD API plus the operator console and the public portal.

The API layer does not know the console (imports point down); this module, like the CLI, sits on
top and composes them. ``cityvisor serve`` and ``cityvisor demo`` serve :func:`create_web_app`.
"""

from __future__ import annotations

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


def serve(settings: Settings, asgi: ASGIApp) -> None:
    """Run ``asgi`` with uvicorn on the configured host and port until interrupted."""
    import gc

    import uvicorn

    # Objects alive at start-up (modules, contexts) never become garbage: keep them out of the
    # collector's scans, and collect less often (requests allocate many short-lived dicts).
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    uvicorn.run(asgi, host=settings.host, port=settings.port, log_level=settings.log_level,
                access_log=False, server_header=False)
