"""Database outages as ``StoreUnavailable`` (503), never a driver traceback or a 500.

While PostgreSQL is stopped, restarting, out of connections or unreachable, every method of
the PostgreSQL stores raises ``StoreUnavailable`` (its durable write awaitables too); the
pool reconnects by itself when the server is back. Programming errors (SQL mistakes, bad
arguments) are left as they are.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

import asyncpg

from cityvisor.ngsild.errors import StoreUnavailable
from cityvisor.store.postgres_migrations import DatabaseBehind

C = TypeVar("C", bound=type)

#: the longest wait for a pooled connection (all busy, or the server away): then a 503
ACQUIRE_TIMEOUT_S = 10.0
#: the longest one statement may run before it is cancelled (a lost server, never a hang)
COMMAND_TIMEOUT_S = 60.0

#: what the driver raises when the server cannot be talked to (SQLSTATE classes 08, 53, 57)
_OUTAGES: tuple[type[BaseException], ...] = (
    OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError, asyncpg.exceptions.ConnectionDoesNotExistError)


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` means the database is away (not a bug of ours or bad input)."""
    if isinstance(error, asyncpg.InterfaceError):
        text = str(error)
        return "closed" in text or "closing" in text  # a connection or pool torn down
    if isinstance(error, asyncpg.InternalClientError):
        # a connection whose server went away in the middle of an operation
        return "another operation" in str(error)
    return isinstance(error, _OUTAGES)


def refused_by_database(error: BaseException) -> bool:
    """Whether ``error`` is the database's answer to opening it (schemas behind this code, no
    such database, credentials refused): said to the user in one line, not a traceback."""
    return isinstance(error, (DatabaseBehind, asyncpg.InvalidCatalogNameError,
                              asyncpg.InvalidAuthorizationSpecificationError))


def unavailable(error: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"The database cannot be reached ({type(error).__name__}: "
                            f"{error}); retry in a few seconds")


class _Translating:
    """An awaitable (the durable commit of ``stage``) whose outages become
    ``StoreUnavailable``; like the one it wraps, it may be left unawaited."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Awaitable[Any]) -> None:
        self._inner = inner

    def __await__(self) -> Generator[Any, None, Any]:
        try:
            return (yield from self._inner.__await__())
        except Exception as error:
            if is_outage(error):
                raise unavailable(error) from error
            raise


def _wrap(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        result = await _Translating(method(*args, **kwargs))
        if inspect.isawaitable(result):  # stage(): the commit is awaited later
            return _Translating(result)
        return result

    return call


def outages_as_unavailable(cls: C) -> C:
    """Class decorator: every public coroutine method of ``cls`` (inherited ones included)
    raises ``StoreUnavailable`` instead of a driver outage error."""
    for name in dir(cls):
        if name.startswith("_") or name == "close":
            continue
        method = getattr(cls, name)
        if inspect.iscoroutinefunction(method):
            setattr(cls, name, _wrap(method))
    return cls
