"""The error family: every class is in the documented tree, with the status it says."""

from __future__ import annotations

import re

from cityvisor.ngsild import errors


def _classes() -> dict[str, type[errors.NgsiLdError]]:
    return {name: value for name, value in vars(errors).items()
            if isinstance(value, type) and issubclass(value, errors.NgsiLdError)}


def test_the_docstring_tree_lists_every_error_with_its_status() -> None:
    tree = {m.group(1): m.group(2) for m in re.finditer(r"(\w+)\s+(\d{3})?", errors.__doc__ or "")
            if m.group(1) in _classes()}
    assert set(tree) == set(_classes())
    for name, status in tree.items():
        if status is not None:
            assert _classes()[name].status == int(status), name


def test_problem_documents() -> None:
    problem = errors.UnsupportedMediaType("Send JSON").problem()
    assert problem == {"type": errors.ERRORS_BASE + "InvalidRequest", "status": 415,
                       "title": "Unsupported media type", "detail": "Send JSON"}

    class Custom(errors.CityvisorProblem):
        type_name, status, title = "Custom", 409, "Custom"

    assert Custom("x").problem()["type"] == "https://cityvisor.org/problems/Custom"
