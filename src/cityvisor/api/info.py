"""``/info``: Retrieve Context Source Identity Information (clause 5.15.1, HTTP binding
``GET /info/sourceIdentity``)."""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from cityvisor.api.http import Call, json_response, services_of
from cityvisor.ngsild.identity import source_identity
from cityvisor.ngsild.time import utc_now

#: when this process started serving (the origin of ``contextSourceUptime``)
STARTED = time.monotonic()


def identity_seed(request: Request) -> str:
    """What names this deployment: the URL clients use, else its address and data directory."""
    settings = services_of(request).settings
    return settings.public_url or f"{settings.host}:{settings.port}:{settings.data_dir.resolve()}"


async def source_identity_info(request: Request, call: Call) -> Response:
    """5.15.1 Retrieve Context Source Identity Information: a ContextSourceIdentity (clause
    5.2.40), whose alias identifies the Tenant of the request. It describes the Context
    Source, not a Tenant's data, so a Tenant that holds nothing yet is no error."""
    data = source_identity(identity_seed(request), call.tenant, time.monotonic() - STARTED,
                           utc_now())
    return json_response(call, data)


ROUTES: list[tuple[str, dict[str, tuple[Any, str, bool]]]] = [
    ("/info/sourceIdentity", {"GET": (source_identity_info, "reader", False)}),
]
