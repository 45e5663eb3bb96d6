"""Tenant names (clause 4.14): the ``NGSILD-Tenant`` header names a tenant; ``None`` is the
default tenant. A name becomes part of a database file or schema name, so it is checked."""

from __future__ import annotations

import re

from cityvisor.ngsild.errors import BadRequestData

#: a whole tenant name (use ``fullmatch``: ``$`` would let a trailing new line through)
TENANT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_tenant(tenant: str | None) -> None:
    """Raise BadRequestData unless ``tenant`` is None or 1 to 64 letters, digits, '_', '-'."""
    if tenant is not None and not TENANT_NAME.fullmatch(tenant):
        raise BadRequestData(
            f"Tenant {tenant!r} is invalid: use 1 to 64 letters, digits, '_' or '-'"
        )


__all__ = ["TENANT_NAME", "check_tenant"]
