"""PostgreSQL keeps delivery figures as appended increments, folded into the subscriptions'
rows now and then: the figures read are the same before and after a fold, and two workers'
transactions counting deliveries of one subscription never wait on each other."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cityvisor.store.records import StoredSubscription, SubscriptionPut, SubscriptionStatus

pytestmark = pytest.mark.anyio

SUB = "urn:ngsi-ld:Subscription:1"


def at(minute: int) -> str:
    return f"2026-01-01T00:{minute:02d}:00.000000Z"


@pytest.fixture
def store(postgres_store: Any) -> Any:
    return postgres_store


async def deltas(store: Any) -> int:
    schema = await store._schema(None)
    return int(await store.pool.fetchval(f"SELECT count(*) FROM {schema}.subscription_deltas"))


async def test_figures_are_the_same_before_and_after_a_fold(store: Any) -> None:
    await store.write(None, [], [SubscriptionPut(SUB, "{}", "[]")])
    await store.write(None, [], [SubscriptionStatus(SUB, 2, 0, at(3), at(3))])
    await store.write(None, [], [SubscriptionStatus(SUB, 1, 1, at(2), None, at(2))])
    expected = StoredSubscription(SUB, "{}", "[]", 3, at(3), at(3), at(2), "ok", 1)
    assert await store.subscription(None, SUB) == expected
    assert await deltas(store) == 2
    await store.fold_status(await store._schema(None))
    assert await deltas(store) == 0
    assert await store.subscription(None, SUB) == expected
    # increments after the fold add to the folded figures; a later failure sets the status
    await store.write(None, [], [SubscriptionStatus(SUB, 1, 1, at(4), None, at(5))])
    assert await store.subscriptions(None) == [
        StoredSubscription(SUB, "{}", "[]", 4, at(4), at(3), at(5), "failed", 2)]


async def test_two_transactions_count_one_subscription_without_waiting(store: Any) -> None:
    await store.write(None, [], [SubscriptionPut(SUB, "{}", "[]")])
    schema = await store._schema(None)
    from cityvisor.store.postgres_subscriptions import WRITERS

    async with store.pool.acquire() as first, store.pool.acquire() as second:
        one, two = first.transaction(), second.transaction()
        await one.start()
        await two.start()
        await WRITERS[SubscriptionStatus](first, schema, [SubscriptionStatus(SUB, 1)])
        # the first has not committed: the second counts without waiting for it
        await asyncio.wait_for(WRITERS[SubscriptionStatus](
            second, schema, [SubscriptionStatus(SUB, 1)]), 2)
        await two.commit()
        await one.commit()
    stored = await store.subscription(None, SUB)
    assert stored is not None and stored.times_sent == 2
