"""Schemathesis fuzzes every operation of the served OpenAPI document: never a 5xx (ADR 0001).

The app runs in-process (ASGI), open (auth off, loopback), on a fresh data directory, with
@context fetching disabled; a 503 LdContextNotAvailable for an unknown @context URL would be a
legitimate answer, but schemathesis does not send Link headers, so every 5xx is a failure.
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error

from cityvisor.api.app import create_app
from cityvisor.config import Settings
from cityvisor.services import Services

BASE = "/ngsi-ld/v1"
_DATA = Path(tempfile.mkdtemp(prefix="cityvisor-fuzz-"))
atexit.register(shutil.rmtree, _DATA, ignore_errors=True)
APP = create_app(Settings(data_dir=_DATA / "data", auth=False, allow_context_fetch=False),
                 build_services=Services.build)


def _as_loopback(app: Any) -> Any:
    """The open (no-auth) server answers loopback Host names only; schemathesis sends its own."""

    async def call(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = [(k, v) for k, v in scope["headers"] if k != b"host"]
            scope = dict(scope, headers=[*headers, (b"host", b"127.0.0.1")])
        await app(scope, receive, send)

    return call


schema = schemathesis.openapi.from_asgi("/ngsi-ld/v1/openapi.json", _as_loopback(APP))


def test_the_served_document_matches_the_route_table() -> None:
    """Every (path, method) the app routes under /ngsi-ld/v1 is described, and nothing else."""
    routed: set[tuple[str, str]] = set()
    inner = APP
    while not hasattr(inner, "routes"):  # SecurityHeaders -> LoopbackHostGuard -> Starlette
        inner = inner.app
    for route in inner.routes:
        path = getattr(route, "path", "")
        if not path.startswith(BASE) or path == BASE + "/openapi.json":
            continue
        template = re.sub(r"\{(\w+):\w+\}", r"{\1}", path[len(BASE):])
        for method in route.methods or ():
            if method != "HEAD":
                routed.add((template, method.lower()))
    described = {(path, method) for path, item in schema.raw_schema["paths"].items()
                 for method in item if method in {"get", "post", "put", "patch", "delete"}}
    assert described == routed
    assert schema.raw_schema["servers"] == [{"url": BASE}]


@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True,
          phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
def test_no_server_error(case) -> None:
    case.call_and_validate(checks=[not_a_server_error])
