"""The living city: a scheduler that runs simulators and writes their reports to a broker.

A :class:`Simulator` describes one population of devices (streetlights, traffic counters, a
weather network, a flood replay...). It is pure bookkeeping: ``initial(now)`` returns the
entities it creates (may be empty), ``tick(now)`` the attribute fragments that changed since
its previous tick, as :data:`~cityvisor.sim.nimes.Batch` es (an ``@context`` list and entity
fragments ``{"id", "type", attr: {"type": "Property", "value", "observedAt", ...}}``).

:class:`LiveCity` owns time and I/O: it ticks every simulator every ``period_s`` *simulated*
seconds on a :class:`Clock` (real time, accelerated with ``speed``, or a :class:`FakeClock` in
tests), merges the fragments into the broker through a ``ContextClient`` (partial attributes:
update mode, ``observedAt`` set by the simulator), isolates failures (one simulator raising or
one rejected write never stops the others) and counts what it wrote (:meth:`LiveCity.rates`).

The runner never touches store or broker internals: it gets a ``ContextClient`` per
``@context`` from a factory, so the same code drives the in-process broker of
``cityvisor demo`` and any NGSI-LD broker over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar, runtime_checkable

from cityvisor.client import ContextClient
from cityvisor.ngsild.time import as_utc, utc_now
from cityvisor.sim.nimes import Batch, Entity
from cityvisor.tasks import cancel_and_wait

log = logging.getLogger("cityvisor.sim.live")

T = TypeVar("T")

#: Largest number of entities written in one call; between chunks the runner yields to the
#: event loop, so that a burst (every light switching on at dusk) never stalls the server.
CHUNK = 500


@runtime_checkable
class Simulator(Protocol):
    """A population of simulated devices; see the module docstring."""

    name: str
    period_s: float  # simulated seconds between ticks

    def initial(self, now: datetime) -> list[Batch]: ...  # entities to create (may be [])

    def tick(self, now: datetime) -> list[Batch]: ...  # changed attributes to merge


# --------------------------------------------------------------------------- helpers for simulators


def entities_of(city: Sequence[Batch], entity_type: str) -> tuple[list[str], list[Entity]]:
    """The ``@context`` and entities of one type in a city description (``build_city``)."""
    for context, entities in city:
        found = [e for e in entities if e.get("type") == entity_type]
        if found:
            return list(context), found
    return [], []


def initial_entities(simulators: Sequence[Simulator], now: datetime,
                     failed: Callable[[Simulator, Exception], None]) -> list[Batch]:
    """Every simulator's initial entities at ``now``; one that raises is passed to ``failed``
    and skipped (the others go on)."""
    batches: list[Batch] = []
    for sim in simulators:
        try:
            batches.extend(sim.initial(now))
        except Exception as error:  # isolation is the point
            failed(sim, error)
    return batches


# --------------------------------------------------------------------------- clocks


class Clock(Protocol):
    """Simulated time."""

    def now(self) -> datetime: ...

    async def sleep_until(self, when: datetime) -> None: ...


class SimulatedClock:
    """Simulated time running ``speed`` times faster than real time from ``start``
    (default: the real now), so ``speed=1`` is the wall clock."""

    def __init__(self, speed: float = 1.0, start: datetime | None = None) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, not {speed}")
        self.speed = float(speed)
        self._start = as_utc(start or utc_now())
        self._real = time.monotonic()

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(time.monotonic() - self._real) * self.speed)

    async def sleep_until(self, when: datetime) -> None:
        delay = (when - self.now()).total_seconds() / self.speed
        if delay > 0:
            await asyncio.sleep(delay)


class FakeClock:
    """Test clock: time moves only when :meth:`advance` (or :meth:`set`) is called; sleepers
    wake when their time has come."""

    def __init__(self, start: datetime) -> None:
        self._now = start.astimezone(UTC)
        self._changed = asyncio.Event()

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when.astimezone(UTC)
        self._changed.set()
        self._changed = asyncio.Event()

    def advance(self, seconds: float) -> None:
        self.set(self._now + timedelta(seconds=seconds))

    async def sleep_until(self, when: datetime) -> None:
        while self._now < when:
            await self._changed.wait()


# --------------------------------------------------------------------------- statistics


@dataclass
class SimulatorStats:
    """What one simulator did, since the start and over a recent window."""

    name: str
    period_s: float
    nominal_rate: float | None = None  # reports per simulated second the simulator aims at
    ticks: int = 0
    skipped_ticks: int = 0  # ticks merged into a later one because the runner fell behind
    reports: int = 0  # entity fragments written successfully
    attributes: int = 0  # attribute instances written successfully
    rejected: int = 0  # entity fragments the broker refused
    errors: int = 0  # exceptions (simulator or transport)
    last_error: str = ""
    write_seconds: float = 0.0  # real seconds spent writing
    sim_seconds: float = 0.0  # simulated seconds covered by ticks
    #: (real monotonic time, simulated time, reports) samples for the recent rates
    samples: deque[tuple[float, datetime, int]] = field(default_factory=lambda: deque(maxlen=64))

    def as_dict(self, window_s: float = 60.0) -> dict[str, Any]:
        real_rate = sim_rate = None
        now = time.monotonic()
        recent = [s for s in self.samples if now - s[0] <= window_s]
        if len(recent) >= 2:
            (r0, t0, n0), (r1, t1, n1) = recent[0], recent[-1]
            if r1 > r0:
                real_rate = (n1 - n0) / (r1 - r0)
            if t1 > t0:
                sim_rate = (n1 - n0) / (t1 - t0).total_seconds()
        return {
            "name": self.name, "period_s": self.period_s, "nominal_rate": self.nominal_rate,
            "ticks": self.ticks, "skipped_ticks": self.skipped_ticks, "reports": self.reports,
            "attributes": self.attributes, "rejected": self.rejected, "errors": self.errors,
            "last_error": self.last_error, "write_seconds": round(self.write_seconds, 3),
            "reports_per_sim_s": (self.reports / self.sim_seconds) if self.sim_seconds else None,
            "recent_reports_per_real_s": real_rate, "recent_reports_per_sim_s": sim_rate,
        }


def describe_rates(stats: Sequence[dict[str, Any]]) -> str:
    """One human line: ``lighting 40.1/s, traffic 0.5/s`` (reports per simulated second since
    the start: a recent window would show 0 for a population reporting every 6 minutes)."""
    parts = []
    for item in stats:
        rate = item["reports_per_sim_s"] or 0.0
        text = f"{item['name']} {rate:.1f}/s"
        if item["errors"] or item["rejected"]:
            text += f" ({item['errors']} errors, {item['rejected']} rejected)"
        parts.append(text)
    return ", ".join(parts)


# --------------------------------------------------------------------------- runner

ClientFactory = Callable[[tuple[str, ...]], ContextClient]


class LiveCity:
    """Runs simulators on a clock and writes their reports through ``ContextClient`` s.

    ``clients(context)`` returns the client bound to that ``@context`` (a tuple of URLs); the
    runner caches one per context. Writes use the client's batch merge (``merge_entities``)
    when it has one, else one ``merge_entity`` per fragment, issued concurrently so that an
    in-process broker shares one commit between them.
    """

    def __init__(self, clients: ClientFactory, simulators: Sequence[Simulator],
                 clock: Clock | None = None, *, report: Callable[[str], None] | None = None,
                 report_every_s: float = 60.0, since: datetime | None = None,
                 pending: Sequence[Batch] = ()) -> None:
        names = [s.name for s in simulators]
        if len(set(names)) != len(names):
            raise ValueError(f"simulator names must be unique: {names}")
        for sim in simulators:
            if not sim.period_s > 0:
                raise ValueError(f"simulator {sim.name}: period_s must be > 0")
        self.simulators = list(simulators)
        self.clock: Clock = clock or SimulatedClock()
        self._factory = clients
        self._clients: dict[tuple[str, ...], ContextClient] = {}
        self._next: dict[str, datetime] = {}
        self._last: dict[str, datetime] = {}
        self.stats = {s.name: SimulatorStats(s.name, s.period_s,
                                             getattr(s, "nominal_rate", None))
                      for s in simulators}
        self._report = report
        self._report_every_s = report_every_s
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0  # ticks run, all simulators together
        #: failures of the runner itself (a tick loop bug, the pending write, closing a
        #: client), each logged with its traceback; a simulator's own count in its stats
        self.runner_errors = 0
        self._ticked: asyncio.Event | None = None
        #: whole entities to create (batch upsert) when :meth:`run` starts, before any tick:
        #: what a loader leaves for after the server is up (``cityvisor demo``'s forecasts)
        self._pending = list(pending)
        self.pending_written = 0
        self._stopping = False
        self._writing: asyncio.Event | None = None  # set when the write in progress is done
        if since is not None:  # the simulators' state is that of `since` (written by a loader)
            self._schedule_from(since)

    def _schedule_from(self, since: datetime) -> None:
        for sim in self.simulators:
            self._last[sim.name] = since
            self._next[sim.name] = since + timedelta(seconds=sim.period_s)

    def _schedule_unscheduled(self, now: datetime) -> None:
        """Schedule from ``now`` the simulators not scheduled yet (first tick one period on)."""
        for sim in self.simulators:
            self._last.setdefault(sim.name, now)
            self._next.setdefault(sim.name, now + timedelta(seconds=sim.period_s))

    # ------------------------------------------------------------ public API

    def initial_batches(self, now: datetime) -> list[Batch]:
        """Every simulator's initial entities (for a loader that writes them in bulk); a
        simulator that raises is reported and skipped."""
        batches = initial_entities(
            self.simulators, now, lambda sim, error: self._failed(sim.name, "initial", error))
        self._schedule_from(now)
        return batches

    async def write_initial(self, now: datetime | None = None) -> int:
        """Create the simulators' initial entities through the clients (batch upsert, which
        replaces entities of the same id: initial entities are whole); returns how many were
        written. ``cityvisor demo`` instead writes them with the static city, in one pass."""
        return await self._create(self.initial_batches(now or self.clock.now()))

    def start(self) -> None:
        """Run :meth:`run` in the background (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(), name="live-city")

    async def stop(self, write_timeout_s: float = 30.0) -> None:
        """Stop ticking and close the clients. A write in progress is never cut in half (a
        writer cancelled while it waits for the store's commit would cancel the commit shared
        with other writers): it finishes first (up to ``write_timeout_s``)."""
        self._stopping = True
        if self._writing is not None and self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._writing.wait(), write_timeout_s)
        await cancel_and_wait(self._task)
        self._task = None
        self._stopping = False
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            try:
                await client.close()
            except Exception:  # closing must not stop closing the others: log, count, go on
                self.runner_errors += 1
                log.warning("live city: closing a client failed", exc_info=True)

    async def run(self) -> None:
        """Create the pending entities, then tick forever on the clock (until cancelled)."""
        if self._pending:
            await self._create_pending()
        now = self.clock.now()
        self._schedule_unscheduled(now)
        next_report = time.monotonic() + self._report_every_s
        while True:
            due = min(self._next.values()) if self._next else now + timedelta(seconds=60)
            await self.clock.sleep_until(due)
            try:
                await self.advance_to(self.clock.now())
            except Exception:  # a bug here must not end the city: log, wait, go on
                self.runner_errors += 1
                log.exception("live city: tick failed")
                await asyncio.sleep(1.0)
            await asyncio.sleep(0)  # never monopolise the loop, even far behind the clock
            if self._report is not None and self._report_every_s > 0 \
                    and time.monotonic() >= next_report:
                next_report = time.monotonic() + self._report_every_s
                self._report(f"live: {describe_rates(self.rates())}")

    async def advance_to(self, now: datetime) -> int:
        """Run every tick due up to ``now`` in time order; a simulator that fell behind by
        more than one period ticks once at ``now`` (its fragments cover the whole gap).
        Returns the number of ticks run."""
        ran = 0
        self._schedule_unscheduled(now)
        while True:
            sim = min(self.simulators, key=lambda s: self._next[s.name], default=None)
            if sim is None or self._next[sim.name] > now:
                return ran
            period = timedelta(seconds=sim.period_s)
            when = self._next[sim.name]
            if now - when >= period:  # behind: coalesce the missed ticks into one
                missed = int((now - when) / period)
                self.stats[sim.name].skipped_ticks += missed
                when += missed * period
            self._next[sim.name] = when + period  # first: a failing tick is not retried
            await self._tick(sim, when)
            ran += 1

    async def wait_for_ticks(self, total: int) -> None:
        """Wait until ``total`` ticks (all simulators together) have run and been written."""
        while self.ticks < total:
            if self._ticked is None:
                self._ticked = asyncio.Event()
            await self._ticked.wait()

    def rates(self, window_s: float = 60.0) -> list[dict[str, Any]]:
        return [self.stats[s.name].as_dict(window_s) for s in self.simulators]

    # ------------------------------------------------------------ internals

    async def _write(self, write: Awaitable[T]) -> T:
        """Await one write, which :meth:`stop` lets finish; none starts once stopping."""
        if self._stopping:
            close = getattr(write, "close", None)
            if close is not None:
                close()  # never awaited: no "coroutine was never awaited" warning
            raise asyncio.CancelledError("the live city is stopping")
        self._writing = asyncio.Event()
        try:
            return await write
        finally:
            self._writing.set()
            self._writing = None

    async def _create(self, batches: list[Batch]) -> int:
        """Upsert whole entities in chunks, yielding between chunks; returns how many."""
        written = 0
        for context, entities in _by_context(batches):
            client = self._client(context)
            for start in range(0, len(entities), CHUNK):
                result = await self._write(client.upsert_entities(entities[start : start + CHUNK]))
                written += len(result.get("success", ()))
                await asyncio.sleep(0)
        return written

    async def _create_pending(self) -> None:
        pending, self._pending = self._pending, []
        started = time.perf_counter()
        try:
            self.pending_written = await self._create(pending)
        except Exception:  # the city still lives without them: say so and go on
            self.runner_errors += 1
            log.exception("live city: writing the pending entities failed")
        total = sum(len(entities) for _, entities in pending)
        if self._report is not None:
            self._report(f"live: {self.pending_written} of {total} pending entities written "
                         f"after start-up in {time.perf_counter() - started:.1f} s")

    def _client(self, context: tuple[str, ...]) -> ContextClient:
        client = self._clients.get(context)
        if client is None:
            client = self._clients[context] = self._factory(context)
        return client

    def _failed(self, name: str, what: str, error: BaseException) -> None:
        stats = self.stats[name]
        stats.errors += 1
        stats.last_error = f"{what}: {type(error).__name__}: {error}"[:500]
        # Log the first error and then every 100th, not one line per tick.
        if stats.errors == 1 or stats.errors % 100 == 0:
            log.warning("live simulator %s failed (%d errors so far): %s", name, stats.errors,
                        stats.last_error, exc_info=error)

    async def _tick(self, sim: Simulator, when: datetime) -> None:
        stats = self.stats[sim.name]
        stats.ticks += 1
        try:
            batches = sim.tick(when)
        except Exception as error:  # one simulator never stops the others
            self._failed(sim.name, "tick", error)
            batches = []
        stats.sim_seconds += (when - self._last.get(sim.name, when)).total_seconds()
        self._last[sim.name] = when
        started = time.perf_counter()
        try:
            grouped = _by_context(batches)
        except Exception as error:  # malformed batches: count them, write nothing
            self._failed(sim.name, "batches", error)
            grouped = []
        for context, entities in grouped:
            valid = [e for e in entities if isinstance(e, dict) and isinstance(e.get("id"), str)]
            if len(valid) < len(entities):
                stats.rejected += len(entities) - len(valid)
                stats.last_error = "rejected: fragments without an id"
                entities = valid
            for begin in range(0, len(entities), CHUNK):
                chunk = entities[begin : begin + CHUNK]
                try:
                    ok, rejected = await self._write(self._merge(self._client(context), chunk))
                except Exception as error:  # the broker may be down a moment
                    self._failed(sim.name, "write", error)
                    continue
                stats.reports += len(ok)
                stats.attributes += sum(_attribute_count(e) for e in chunk if e["id"] in ok)
                stats.rejected += len(rejected)
                if rejected:
                    stats.last_error = f"rejected: {rejected[0]}"[:500]
                await asyncio.sleep(0)
        stats.write_seconds += time.perf_counter() - started
        stats.samples.append((time.monotonic(), when, stats.reports))
        self.ticks += 1
        if self._ticked is not None:
            self._ticked.set()
            self._ticked = None

    async def _merge(self, client: ContextClient, entities: list[Entity]
                     ) -> tuple[set[str], list[Any]]:
        """Merge fragments; returns (ids written, errors)."""
        many = getattr(client, "merge_entities", None)
        if many is not None:
            result = await many(entities)
            errors = list(result.get("errors", ()))
            failed = {e.get("entityId") for e in errors}
            return {e["id"] for e in entities if e["id"] not in failed}, errors
        outcomes = await asyncio.gather(
            *(client.merge_entity(e["id"], _fragment(e)) for e in entities),
            return_exceptions=True)
        ok: set[str] = set()
        errors = []
        for entity, outcome in zip(entities, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome
                errors.append({"entityId": entity["id"], "error": str(outcome)})
            else:
                ok.add(entity["id"])
        return ok, errors


def _fragment(entity: Entity) -> Entity:
    return {k: v for k, v in entity.items() if k not in ("id", "@context")}


def _attribute_count(entity: Entity) -> int:
    return sum(1 for k in entity if k not in ("id", "type", "@context"))


def _by_context(batches: list[Batch]) -> list[tuple[tuple[str, ...], list[Entity]]]:
    """Group batches by @context (keeping order), dropping empty ones."""
    grouped: dict[tuple[str, ...], list[Entity]] = {}
    for context, entities in batches:
        if entities:
            grouped.setdefault(tuple(context), []).extend(entities)
    return list(grouped.items())


__all__ = ["CHUNK", "Clock", "FakeClock", "LiveCity", "SimulatedClock", "Simulator",
           "SimulatorStats", "describe_rates", "entities_of", "initial_entities"]
