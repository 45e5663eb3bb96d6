"""Static files of the console and portal, and the npm packages they use, served locally.

Our own files live in ``static/``. Third-party front-end code comes from npm (``package.json`` +
``package-lock.json`` next to this file, installed by ``scripts/demo`` and ``scripts/test`` with
``npm ci``) and only the files listed in :data:`VENDOR` are served, under ``/vendor/``: no CDN,
no run-time download.
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
NODE_MODULES = HERE / "node_modules"

#: URL name under /vendor/ -> file inside node_modules
VENDOR = {
    "maplibre-gl.js": "maplibre-gl/dist/maplibre-gl-csp.js",
    "maplibre-gl-csp-worker.js": "maplibre-gl/dist/maplibre-gl-csp-worker.js",
    "maplibre-gl.css": "maplibre-gl/dist/maplibre-gl.css",
    "uplot.esm.js": "uplot/dist/uPlot.esm.js",
    "uplot.min.css": "uplot/dist/uPlot.min.css",
}

#: pages may load scripts, styles, images and data from this origin only (no inline script)
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; worker-src 'self' blob:; connect-src 'self'; "
    "font-src 'self'; media-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)

#: a host[:port] that may appear in the CSP (no spaces, quotes, semicolons or credentials)
_HOST = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")

mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("application/geo+json", ".geojson")


def file_response(path: Path, *, cache: str = "no-cache", csp: str = PAGE_CSP) -> Response:
    """A file with the page CSP (the API's default CSP forbids everything)."""
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if media_type.startswith("text/") or media_type.endswith("javascript"):
        media_type += "; charset=utf-8"
    return FileResponse(path, media_type=media_type,
                        headers={"content-security-policy": csp, "cache-control": cache})


def page_csp(request: Request) -> str:
    """The page CSP, opened to the configured map tile server (setting ``console_tile_url``;
    off by default: then the pages reach nothing but this origin)."""
    services = getattr(request.app.state, "services", None)
    tile_url = getattr(getattr(services, "settings", None), "console_tile_url", None)
    if not tile_url:
        return PAGE_CSP
    parts = urlsplit(tile_url)
    if parts.scheme not in ("http", "https") or not _HOST.fullmatch(parts.netloc):
        return PAGE_CSP  # not a plain origin: never let it write into the policy
    origin = f"{parts.scheme}://{parts.netloc}"
    return (PAGE_CSP.replace("img-src 'self'", f"img-src 'self' {origin}")
            .replace("connect-src 'self'", f"connect-src 'self' {origin}"))


def _not_found(what: str) -> Response:
    return Response(f"Not found: {what}\n", status_code=404, media_type="text/plain")


async def static_file(request: Request) -> Response:
    relative = request.path_params["path"]
    path = (STATIC / relative).resolve()
    if not path.is_relative_to(STATIC) or not path.is_file():
        return _not_found(relative)
    return file_response(path)


async def vendor_file(request: Request) -> Response:
    name = request.path_params["name"]
    target = VENDOR.get(name)
    if target is None:
        return _not_found(name)
    path = NODE_MODULES / target
    if not path.is_file():
        return Response(f"{name} is not installed: run `npm ci` in {HERE.name}/ "
                        "(scripts/demo does it)\n", status_code=503, media_type="text/plain")
    return file_response(path, cache="public, max-age=86400")


def page(url: str, name: str) -> Route:
    """A route serving the HTML page ``static/<name>`` at ``url``."""

    async def serve(request: Request) -> Response:
        return file_response(STATIC / name, csp=page_csp(request))

    return Route(url, serve, methods=["GET"])


ROUTES = [
    page("/", "public/index.html"),
    page("/console/", "console/index.html"),
    Route("/static/{path:path}", static_file, methods=["GET"]),
    Route("/vendor/{name}", vendor_file, methods=["GET"]),
]
