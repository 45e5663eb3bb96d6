"""The connections of the embedded backend: one SQLite file per tenant, WAL mode (ADR 0002).

``TenantDatabases`` opens ``<directory>/default.sqlite`` and ``tenant-<name>.sqlite``: per
tenant one write connection, used on the event loop's thread (writes and reads that must see
staged changes), and one read connection per thread of a small pool (WAL readers never block
the writer). A background thread runs the WAL checkpoints (which fsync), off the event loop.
The backend's modules (entities, temporal history, subscriptions) share these connections.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from cityvisor.ngsild.tenants import check_tenant
from cityvisor.store.base import EntitySelector
from cityvisor.store.sqlite_q import sqlite_regexp

T = TypeVar("T")


def tenant_file(tenant: str | None) -> str:
    """The database file name of a tenant (checked: it becomes a path)."""
    check_tenant(tenant)
    return "default.sqlite" if tenant is None else f"tenant-{tenant}.sqlite"


def configure(conn: sqlite3.Connection, synchronous: str) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("PRAGMA cache_size=-16384")  # 16 MiB page cache per connection
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.create_function("ngsi_regexp", 2, sqlite_regexp, deterministic=True)


def id_selection_sql(column: str, selector: EntitySelector) -> tuple[list[str], list[Any]]:
    """WHERE fragments for a selector's ``id`` list and ``idPattern`` on ``column``."""
    where: list[str] = []
    params: list[Any] = []
    if selector.ids is not None:
        where.append(f"{column} IN ({','.join('?' * len(selector.ids))})")
        params.extend(selector.ids)
    if selector.id_pattern is not None:
        where.append(f"ngsi_regexp(?, {column})")
        params.append(selector.id_pattern)
    return where, params


class TenantDatabases:
    """Per-tenant SQLite connections; ``schemas`` (idempotent DDL) run on every new file."""

    schemas: Sequence[str] = ()

    def __init__(self, directory: Path | str, *, synchronous: str = "NORMAL",
                 readers: int = 4) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.synchronous = synchronous.upper()
        self._writers: dict[str | None, sqlite3.Connection] = {}
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="store-read")
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._checkpointer: _Checkpointer | None = None

    def path(self, tenant: str | None) -> Path:
        return self.directory / tenant_file(tenant)

    def _exists(self, tenant: str | None) -> bool:
        """Whether the tenant has a database (without creating it)."""
        return tenant in self._writers or self.path(tenant).exists()

    def _opened(self, tenant: str | None, conn: sqlite3.Connection) -> None:
        """Called once per tenant when its write connection opens (for per-tenant caches)."""

    def _writer(self, tenant: str | None) -> sqlite3.Connection:
        conn = self._writers.get(tenant)
        if conn is None:
            conn = sqlite3.connect(self.path(tenant), isolation_level=None,
                                   check_same_thread=False)
            configure(conn, self.synchronous)
            # The writer only checkpoints itself if the WAL grows past ~80 MB (a safety bound).
            conn.execute("PRAGMA wal_autocheckpoint=20000")
            # The writer touches index pages all over the file (value index, history): a
            # larger cache than the readers' saves re-reading them on every commit.
            conn.execute("PRAGMA cache_size=-65536")
            for schema in self.schemas:
                conn.executescript(schema)
            self._writers[tenant] = conn
            if self._checkpointer is None:
                self._checkpointer = _Checkpointer(self.synchronous)
            self._checkpointer.watch(self.path(tenant))
            self._opened(tenant, conn)
        return conn

    def _reader(self, tenant: str | None) -> sqlite3.Connection | None:
        """This thread's read connection to a tenant, or None if the tenant has no database."""
        conns: dict[str | None, sqlite3.Connection] = getattr(self._local, "conns", None) or {}
        self._local.conns = conns
        conn = conns.get(tenant)
        if conn is None:
            path = self.path(tenant)
            if not path.exists():
                return None
            self._writer(tenant)  # make sure the schema exists
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            configure(conn, self.synchronous)
            conns[tenant] = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the read pool (it calls ``_reader`` for its connection)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, fn, *args)

    def _read_staged(self, tenant: str | None) -> sqlite3.Connection | None:
        """The write connection (it sees staged changes), or None if there is no database."""
        return self._writer(tenant) if self._exists(tenant) else None

    async def has_tenant(self, tenant: str | None) -> bool:
        return tenant is None or self._exists(tenant)

    async def tenants(self) -> list[str]:
        names = {p.stem[len("tenant-"):] for p in self.directory.glob("tenant-*.sqlite")}
        return sorted(names)

    def _close_connections(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        for conn in self._writers.values():
            conn.close()
        self._writers.clear()
        self._pool.shutdown(wait=True)
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()


class _Checkpointer(threading.Thread):
    """Runs passive WAL checkpoints of every tenant database twice a second."""

    def __init__(self, synchronous: str, interval_s: float = 0.5) -> None:
        super().__init__(name="store-checkpoint", daemon=True)
        self.synchronous = synchronous
        self.interval_s = interval_s
        self._paths: list[Path] = []
        self._stopping = threading.Event()
        self.start()

    def watch(self, path: Path) -> None:
        self._paths = [*self._paths, path]

    def run(self) -> None:
        conns: dict[Path, sqlite3.Connection] = {}
        while not self._stopping.wait(self.interval_s):
            self._checkpoint(conns)
        self._checkpoint(conns)
        for conn in conns.values():
            conn.close()

    def _checkpoint(self, conns: dict[Path, sqlite3.Connection]) -> None:
        for path in self._paths:
            try:
                conn = conns.get(path)
                if conn is None:
                    conn = conns[path] = sqlite3.connect(path, isolation_level=None,
                                                         check_same_thread=False)
                    conn.execute(f"PRAGMA synchronous={self.synchronous}")
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                pass  # busy or gone: the next round (or the writer's own bound) catches up

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=10)
