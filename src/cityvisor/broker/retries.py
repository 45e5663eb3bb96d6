"""Operations retried when another process made their write stale.

A store shared by several processes (``store.base``, "Several workers") refuses with
``StaleWrite`` a batch computed from an entity that another process changed meanwhile; nothing
of it was written. The operation is then run again from the start (re-read, re-validated,
re-staged) a few times, after a short random pause so that two processes racing on one entity
fall out of step. Only the outermost operation retries (one calls another: ``update_attribute``
of a deletion calls ``delete_attribute``).
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

from cityvisor.store.base import StaleWrite

#: runs of one operation before its ``StaleWrite`` goes to the caller (409)
ATTEMPTS = 5
#: the pause before run n+1 is up to ``PAUSE_S * 2**n`` seconds
PAUSE_S = 0.002

P = ParamSpec("P")
T = TypeVar("T")
_retrying: ContextVar[bool] = ContextVar("cityvisor_stale_retrying", default=False)
_operation: ContextVar[object | None] = ContextVar("cityvisor_operation", default=None)


def current_operation() -> object | None:
    """The outermost retried operation in progress: the same object across its runs (a run
    refused as stale and the runs after it), None outside one."""
    return _operation.get()


def retried_on_stale(operation: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """``operation``, run again (up to ``ATTEMPTS`` runs) when it raises ``StaleWrite``."""

    @functools.wraps(operation)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        if _retrying.get():
            return await operation(*args, **kwargs)
        token = _retrying.set(True)
        this_run = _operation.set(object())
        try:
            for attempt in range(1, ATTEMPTS):
                try:
                    return await operation(*args, **kwargs)
                except StaleWrite:
                    await asyncio.sleep(random.uniform(0, PAUSE_S * 2 ** attempt))
            return await operation(*args, **kwargs)
        finally:
            _operation.reset(this_run)
            _retrying.reset(token)

    return run
