"""The system database of the embedded backend: ``<data_dir>/system.sqlite``.

Two small tables shared by every tenant: ``contexts`` (JSON-LD context documents hosted here
or cached after a fetch or a preload) and ``tokens`` (bearer tokens, their secret hashed).
Several processes may open it (a server and the ``cityvisor token`` commands): WAL mode and
a busy timeout make them take turns.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from cityvisor.store.base import SystemStore
from cityvisor.store.records import StoredContext, StoredToken

SCHEMA = """
CREATE TABLE IF NOT EXISTS contexts (
  id TEXT PRIMARY KEY,
  url TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL,          -- Hosted | Cached
  document BLOB NOT NULL,      -- the whole document, {"@context": ...}
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tokens (
  id TEXT PRIMARY KEY,
  secret_sha256 TEXT NOT NULL,
  role TEXT NOT NULL,
  tenant TEXT NOT NULL,
  name TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL,
  revoked_at TEXT
);
"""

_CONTEXT_COLUMNS = "id, url, kind, document, created_at"
_TOKEN_COLUMNS = "id, secret_sha256, role, tenant, name, created_at, revoked_at"


class SqliteSystemStore(SystemStore):
    """``SystemStore`` on one SQLite file (created with its tables if missing)."""

    def __init__(self, path: Path | str) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(SCHEMA)
        self._lock = threading.Lock()

    async def context(self, *, local_id: str | None = None, url: str | None = None
                ) -> StoredContext | None:
        column, key = ("id", local_id) if local_id is not None else ("url", url)
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_CONTEXT_COLUMNS} FROM contexts WHERE {column} = ?", (key,)).fetchone()
        return None if row is None else StoredContext(row[0], row[1], row[2], bytes(row[3]),
                                                      row[4])

    async def put_context(self, context: StoredContext) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO contexts (id, url, kind, document, created_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (url) DO UPDATE SET document = excluded.document, kind = excluded.kind",
                (context.local_id, context.url, context.kind, context.document,
                 context.created_at))

    async def contexts(self) -> list[StoredContext]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_CONTEXT_COLUMNS} FROM contexts ORDER BY created_at, rowid").fetchall()
        return [StoredContext(r[0], r[1], r[2], bytes(r[3]), r[4]) for r in rows]

    async def delete_context(self, local_id: str) -> bool:
        with self._lock:
            return bool(self._conn.execute("DELETE FROM contexts WHERE id = ?",
                                           (local_id,)).rowcount)

    async def add_token(self, token: StoredToken) -> None:
        with self._lock:
            self._conn.execute(
                f"INSERT INTO tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token.token_id, token.secret_sha256, token.role, token.tenant, token.name,
                 token.created_at, token.revoked_at))

    async def token(self, token_id: str) -> StoredToken | None:
        with self._lock:
            row = self._conn.execute(f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE id = ?",
                                     (token_id,)).fetchone()
        return None if row is None else StoredToken(*row)

    async def revoke_token(self, token_id: str, at: str) -> bool:
        with self._lock:
            return bool(self._conn.execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (at, token_id)).rowcount)

    async def tokens(self) -> list[StoredToken]:
        with self._lock:
            rows = self._conn.execute(
                f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY created_at, rowid").fetchall()
        return [StoredToken(*row) for row in rows]

    async def close(self) -> None:
        self._conn.close()
