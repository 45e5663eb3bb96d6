"""Shared helpers for the benchmarks: a real ``cityvisor serve`` process on a free port.

    with BenchServer.start() as server:          # temp data dir, --no-auth, 127.0.0.1
        server.url, server.api, server.pid
        server.rss_mb()                          # VmRSS from /proc/<pid>/status
        server.tenant_db()                       # path of the tenant's SQLite file
        server.tree_pids()                       # the server and its worker processes

``BenchServer.start(args=[...])`` adds ``cityvisor serve`` arguments (``--db DSN --workers N``:
see ``benchmarks/_postgres.py``).

The server is stopped (SIGINT, then SIGKILL) and its temporary data directory removed on exit,
even when the benchmark fails. Only the Python standard library is used here; the process
handle and ``free_port`` are the tests' (``tests/support/server.py``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.server import (  # noqa: E402  (tests/ is put on the path just above)
    ServerProcess,
    cityvisor_script,
    clean_env,
    free_port,
    start_serve,
)

__all__ = ["BenchServer", "cli_command", "free_port", "proc_status"]


def cli_command() -> list[str]:
    """The ``cityvisor`` console script next to the running interpreter (else the repo venv).

    ``BENCH_CITYVISOR`` (a command line) overrides it, e.g. to benchmark another checkout.
    """
    override = os.environ.get("BENCH_CITYVISOR")
    if override:
        return shlex.split(override)
    script = cityvisor_script()
    if Path(script).exists():
        return [script]
    return [sys.executable, "-c", "from cityvisor.cli import main; main()"]


def proc_status(pid: int, field: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM, ...), in kB; None if unavailable."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


class BenchServer(ServerProcess):
    """A running ``cityvisor serve --no-auth`` process with its own temporary data directory."""

    _own_dir: bool = False
    _directory: Path | None = None

    # -------------------------------------------------------------- lifecycle

    @classmethod
    def start(cls, *, data_dir: Path | None = None, env: dict[str, str] | None = None,
              args: Sequence[str] = (), timeout: float = 60.0) -> BenchServer:
        """Start a server on a free loopback port and wait until ``/health`` answers 200
        (``args``: more ``serve`` arguments after ``--no-auth``)."""
        own_dir = data_dir is None
        directory = Path(tempfile.mkdtemp(prefix="cityvisor-bench-")) if own_dir else data_dir
        assert directory is not None
        child_env = clean_env({"CITYVISOR_ALLOW_CONTEXT_FETCH": "false",  # offline: bundled
                               "CITYVISOR_LOG_LEVEL": "warning"})
        child_env.update(env or {})
        started = start_serve(directory / "data", args=["--no-auth", *args], command=cli_command(),
                              env=child_env, log=directory / "server.log", wait=False)
        server = cls(started.process, started.port, started.data_dir, started.log)
        server._own_dir, server._directory = own_dir, directory
        try:
            server.wait_healthy(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> None:
        """Stop the server (SIGINT, then SIGKILL) and remove the temporary directory."""
        super().stop(sig, timeout)
        if self._own_dir and self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -------------------------------------------------------------- facts

    def rss_mb(self) -> float | None:
        """Resident set size now (VmRSS), in MB (10^6 bytes); with worker processes, the sum
        over the server's process tree."""
        sizes = [proc_status(pid, "VmRSS") for pid in self.tree_pids()]
        known = [kb for kb in sizes if kb is not None]
        return round(sum(known) * 1024 / 1e6, 1) if known else None

    def tree_pids(self) -> list[int]:
        """The server's pid and those of its descendants (``--workers``), parents first."""
        pids, index = [self.pid], 0
        while index < len(pids):
            try:
                tasks = os.listdir(f"/proc/{pids[index]}/task")
            except OSError:
                tasks = []
            for task in tasks:
                try:
                    with open(f"/proc/{pids[index]}/task/{task}/children", encoding="ascii") as f:
                        pids += [int(child) for child in f.read().split()]
                except OSError:
                    continue
            index += 1
        return pids

    def peak_rss_mb(self) -> float | None:
        """Peak resident set size so far (VmHWM), in MB."""
        kb = proc_status(self.pid, "VmHWM")
        return None if kb is None else round(kb * 1024 / 1e6, 1)

    def rss_breakdown_mb(self) -> dict[str, float | None]:
        """VmRSS split: RssAnon (heap, page caches), RssFile (mapped files: SQLite mmap)."""
        out: dict[str, float | None] = {}
        for field in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
            kb = proc_status(self.pid, field)
            out[field] = None if kb is None else round(kb * 1024 / 1e6, 1)
        return out

    def tenant_db(self, tenant: str | None = None) -> Path:
        """The SQLite file of a tenant (``None``: the default tenant), as the store names it."""
        name = "default.sqlite" if tenant is None else f"tenant-{tenant}.sqlite"
        return self.data_dir / "tenants" / name
