"""Errors as HTTP answers: problem documents, and unexpected errors logged, never leaked."""

from __future__ import annotations

import orjson
import pytest

from cityvisor.http_problems import PROBLEM_MEDIA_TYPE, guard, problem_response
from cityvisor.ngsild.errors import BadRequestData, Unauthorized


def test_a_problem_carries_its_status_type_and_detail() -> None:
    response = problem_response(BadRequestData("limit must be an integer"))
    assert response.status_code == 400 and response.media_type == PROBLEM_MEDIA_TYPE
    body = orjson.loads(response.body)
    assert body["type"].endswith("/BadRequestData") and body["detail"] == "limit must be an integer"
    assert "www-authenticate" not in response.headers


def test_unauthorized_asks_for_a_bearer_token() -> None:
    assert problem_response(Unauthorized("no token")).headers["www-authenticate"] == "Bearer"


def test_guard_hides_unexpected_errors_and_logs_them(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("ERROR"):
        response = guard(KeyError("secret internals"))
    assert response.status_code == 500
    assert b"secret internals" not in response.body
    assert any(r.exc_info and r.exc_info[0] is KeyError for r in caplog.records)
    assert guard(BadRequestData("x")).status_code == 400
