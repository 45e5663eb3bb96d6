"""The NGSI-LD error family (ETSI GS CIM 009, clause 5.5.2).

Every error the broker raises is an ``NgsiLdError``; the API renders it as an RFC 7807
``application/problem+json`` document. Messages are written in the present tense, sentence
case, and name the offending value.

    NgsiLdError                  500  (the base; its type is InternalError)
     +-- BadRequestData          400
     +-- InvalidRequest          400
     +-- UnsupportedMediaType    415  (type InvalidRequest: the body's Content-Type)
     +-- NotAcceptable           406  (type InvalidRequest: no Accept-ed media type)
     +-- MethodNotAllowed        405  (type InvalidRequest)
     +-- AlreadyExists           409
     +-- ResourceNotFound        404
     +-- NonexistentTenant       404
     +-- OperationNotSupported   422
     +-- LdContextNotAvailable   503
     +-- TooManyResults          403
     +-- Unauthorized            401  (cityvisor: missing or bad token)
     +-- Forbidden               403  (cityvisor: token lacks the role or tenant)
     +-- PayloadTooLarge         413
     +-- InternalError           500
     +-- CityvisorProblem             (cityvisor's own problem types, under
          |                            https://cityvisor.org/problems/; subclasses set
          |                            their status, e.g. the console's InvalidTransition)
          +-- StoreUnavailable   503  (the database cannot be reached: retry later)
"""

from __future__ import annotations

from typing import Any

ERRORS_BASE = "https://uri.etsi.org/ngsi-ld/errors/"


class NgsiLdError(Exception):
    """Base class: carries the problem type, HTTP status, title and detail."""

    type_name = "InternalError"
    status = 500
    title = "Internal error"
    retry_after_s: int | None = None  # a Retry-After header: the condition should pass

    def __init__(self, detail: str, *, title: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if title is not None:
            self.title = title

    @property
    def type_uri(self) -> str:
        return ERRORS_BASE + self.type_name

    def problem(self) -> dict[str, Any]:
        return {"type": self.type_uri, "title": self.title, "status": self.status,
                "detail": self.detail}


class CityvisorProblem(NgsiLdError):
    """A problem type of cityvisor's own (not in the NGSI-LD family), under its own URI."""

    @property
    def type_uri(self) -> str:
        return f"https://cityvisor.org/problems/{self.type_name}"


class StoreUnavailable(CityvisorProblem):
    """The database behind the store cannot be reached (stopped, restarting, out of
    connections): nothing was changed, or a write's outcome is unknown; retry later."""

    type_name, status, title = "StoreUnavailable", 503, "Storage unavailable"
    retry_after_s = 5


class BadRequestData(NgsiLdError):
    type_name, status, title = "BadRequestData", 400, "Bad request data"


class InvalidRequest(NgsiLdError):
    type_name, status, title = "InvalidRequest", 400, "Invalid request"


class AlreadyExists(NgsiLdError):
    type_name, status, title = "AlreadyExists", 409, "Already exists"


class ResourceNotFound(NgsiLdError):
    type_name, status, title = "ResourceNotFound", 404, "Resource not found"


class NonexistentTenant(NgsiLdError):
    type_name, status, title = "NonexistentTenant", 404, "Nonexistent tenant"


class OperationNotSupported(NgsiLdError):
    type_name, status, title = "OperationNotSupported", 422, "Operation not supported"


class LdContextNotAvailable(NgsiLdError):
    type_name, status, title = "LdContextNotAvailable", 503, "JSON-LD context not available"


class TooManyResults(NgsiLdError):
    type_name, status, title = "TooManyResults", 403, "Too many results"


class Unauthorized(NgsiLdError):
    type_name, status, title = "Unauthorized", 401, "Unauthorized"


class Forbidden(NgsiLdError):
    type_name, status, title = "Forbidden", 403, "Forbidden"


class PayloadTooLarge(NgsiLdError):
    type_name, status, title = "PayloadTooLarge", 413, "Payload too large"


class InternalError(NgsiLdError):
    pass


class UnsupportedMediaType(NgsiLdError):
    type_name, status, title = "InvalidRequest", 415, "Unsupported media type"


class NotAcceptable(NgsiLdError):
    type_name, status, title = "InvalidRequest", 406, "Not acceptable"


class MethodNotAllowed(NgsiLdError):
    type_name, status, title = "InvalidRequest", 405, "Method not allowed"
