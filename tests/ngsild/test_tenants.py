"""Tenant names: the rule shared by the store (file names) and the web layers (headers)."""

from __future__ import annotations

import pytest

from cityvisor.ngsild.errors import BadRequestData
from cityvisor.ngsild.tenants import TENANT_NAME, check_tenant


@pytest.mark.parametrize("tenant", [None, "nimes", "Ales_2", "a-b", "x" * 64, "0"])
def test_good_names_pass(tenant: str | None) -> None:
    check_tenant(tenant)
    assert tenant is None or TENANT_NAME.fullmatch(tenant)


@pytest.mark.parametrize("tenant", ["", "x" * 65, "../etc", "a/b", "a b", "nîmes", "a.sqlite",
                                    "a\n", "a\x00b", "tenant;drop"])
def test_names_that_could_escape_a_file_or_schema_name_are_bad_request_data(tenant: str) -> None:
    with pytest.raises(BadRequestData, match="invalid"):
        check_tenant(tenant)
