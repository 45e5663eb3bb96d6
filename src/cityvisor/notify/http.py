"""HTTP(S) notification binding (clause 6.3.x): POST the Notification to the endpoint."""

from __future__ import annotations

from typing import Any

import httpx

from cityvisor.api.http import CONTEXT_REL


def notification_headers(target: dict[str, Any], tenant: str | None) -> dict[str, str]:
    """Content-Type, the @context Link (for application/json), the tenant and the
    receiverInfo pairs: HTTP headers, or the MQTT binding's metadata."""
    headers = {"Content-Type": target.get("accept", "application/json")}
    if headers["Content-Type"] == "application/json":
        headers["Link"] = f'<{target["link"]}>; rel="{CONTEXT_REL}"; type="application/ld+json"'
    if tenant is not None:
        headers["NGSILD-Tenant"] = tenant
    for item in target.get("receiverInfo", ()):
        headers[item["key"]] = item["value"]
    return headers


class HttpSender:
    """One shared ``httpx.AsyncClient`` (keep-alive pools per host)."""

    def __init__(self, timeout_s: float = 5.0) -> None:
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 2.0)),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            follow_redirects=False, trust_env=False)

    async def send(self, target: dict[str, Any], payload: bytes, tenant: str | None) -> None:
        """Raise on any failure (transport error or a status other than 2xx)."""
        headers = notification_headers(target, tenant)
        response = await self.client.post(target["uri"], content=payload, headers=headers)
        if not 200 <= response.status_code < 300:
            raise RuntimeError(f"HTTP {response.status_code} from {target['uri']}")

    async def close(self) -> None:
        await self.client.aclose()
