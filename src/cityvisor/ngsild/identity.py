"""The ContextSourceIdentity data type (ETSI GS CIM 009, clause 5.2.40), answered by Retrieve
Context Source Identity Information (clause 5.15.1, ``GET /info/sourceIdentity``).

Its mandatory members are ``contextSourceAlias`` (an id that tells this Context Source, and in
the multi-tenancy case one of its Tenants, apart from any other: what a peer records in its
registration and looks for to detect loops), ``contextSourceUptime`` (an ISO 8601 duration)
and ``contextSourceTimeAt`` (a DateTime, clause 4.6.3). The module is pure.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from cityvisor.ngsild.time import format_utc_micros

__all__ = ["format_duration", "source_alias", "source_identity"]


def format_duration(seconds: float) -> str:
    """An ISO 8601 duration of ``seconds`` (days, hours, minutes, seconds to the millisecond).

    >>> format_duration(0)
    'PT0S'
    >>> format_duration(93784.5)
    'P1DT2H3M4.5S'
    """
    millis = max(0, round(seconds * 1000))
    days, millis = divmod(millis, 86_400_000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    text = "P" + (f"{days}D" if days else "") + "T"
    text += (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    if millis or text.endswith("T"):
        text += f"{millis / 1000:.3f}".rstrip("0").rstrip(".") + "S"
    return text


def source_alias(seed: str, tenant: str | None) -> str:
    """The alias of the Context Source named by ``seed`` (any text stable for one deployment),
    one per Tenant: a Tenant's alias is the Context Source's with the Tenant name appended."""
    base = "urn:ngsi-ld:ContextSource:" + hashlib.sha256(seed.encode()).hexdigest()[:16]
    return base if tenant is None else f"{base}:{tenant}"


def source_identity(seed: str, tenant: str | None, uptime_s: float,
                    now: datetime) -> dict[str, Any]:
    """The ContextSourceIdentity of the Context Source ``seed`` for ``tenant`` (clause 5.2.40)."""
    alias = source_alias(seed, tenant)
    return {"id": alias.replace(":ContextSource:", ":ContextSourceIdentity:", 1),
            "type": "ContextSourceIdentity",
            "contextSourceAlias": alias,
            "contextSourceUptime": format_duration(uptime_s),
            "contextSourceTimeAt": format_utc_micros(now)}
