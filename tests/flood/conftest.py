"""Fixtures of the flood tests: the Cance data set (the smash project's, GPL-3.0, read by path
from the repository's sibling shared/ folder, never copied into the repository)."""

from __future__ import annotations

from pathlib import Path

import pytest

CANCE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "flood" / "cance"


@pytest.fixture(scope="session")
def cance() -> Path:
    if not (CANCE / "gauge_attributes.csv").is_file():
        pytest.fail(
            f"Cance data set not found at {CANCE}: these tests read the smash Cance data "
            "(GPL-3.0, not copied into the repo) from the repository's sibling shared/ folder"
        )
    return CANCE
