"""A writer cancelled while it waits for the group commit does not cancel the others' commit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cityvisor.store.base import WriteOp
from cityvisor.store.sqlite import SqliteStore

pytestmark = pytest.mark.anyio


def entity(n: int) -> dict:
    return {"id": f"urn:ngsi-ld:T:{n}", "type": ["https://example.org/T"],
            "createdAt": "2026-01-01T00:00:00.000000Z", "modifiedAt": "2026-01-01T00:00:00.000000Z",
            "attrs": {}}


async def test_cancelled_writer_leaves_shared_commit_intact(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)

    async def write(n: int) -> None:
        durable = await store.stage(None, [WriteOp(None, entity(n))])
        await durable

    try:
        first = asyncio.create_task(write(1))
        second = asyncio.create_task(write(2))
        await asyncio.sleep(0)  # both staged, both waiting for the commit queued after them
        first.cancel()
        await second  # the shared commit completes for the other writer
        assert (await store.get(None, "urn:ngsi-ld:T:2")) is not None
        assert (await store.get(None, "urn:ngsi-ld:T:1")) is not None  # committed too
        with pytest.raises(asyncio.CancelledError):
            await first
    finally:
        await store.close()
