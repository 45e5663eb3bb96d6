"""Errors as HTTP answers, for every web layer (the NGSI-LD API, the console, the portal).

An :class:`~cityvisor.ngsild.errors.NgsiLdError` becomes an ``application/problem+json``
response (RFC 9457, NGSI-LD clause 5.5.2); any other exception is logged with its traceback
and answered as a generic 500, so that a stack trace never leaks to a client.

This module sits below the API and the console, which both use it: it knows Starlette and the
error family, nothing else of cityvisor.
"""

from __future__ import annotations

import logging

import orjson
from starlette.responses import Response

from cityvisor.ngsild.errors import InternalError, NgsiLdError

__all__ = ["PROBLEM_MEDIA_TYPE", "guard", "problem_response"]

LOG = logging.getLogger("cityvisor.api")
PROBLEM_MEDIA_TYPE = "application/problem+json"


def problem_response(error: NgsiLdError) -> Response:
    """The problem document of ``error`` with its status (401 also asks for a bearer token)."""
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    return Response(orjson.dumps(error.problem()), status_code=error.status, headers=headers,
                    media_type=PROBLEM_MEDIA_TYPE)


def guard(error: Exception) -> Response:
    """Map any exception to a problem response; unexpected ones are logged, never leaked."""
    if isinstance(error, NgsiLdError):
        return problem_response(error)
    LOG.exception("unexpected error", exc_info=error)
    return problem_response(InternalError("An unexpected error occurred; see the server log"))
