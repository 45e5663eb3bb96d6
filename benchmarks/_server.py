"""Shared helpers for the benchmarks: a real ``cityvisor serve`` process on a free port.

    with BenchServer.start() as server:          # temp data dir, --no-auth, 127.0.0.1
        server.url, server.api, server.pid
        server.rss_mb()                          # VmRSS from /proc/<pid>/status
        server.tenant_db()                       # path of the tenant's SQLite file

The server is stopped (SIGINT, then SIGKILL) and its temporary data directory removed on exit,
even when the benchmark fails. Only the Python standard library is used here.
"""

from __future__ import annotations

import http.client
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

ROOT = Path(__file__).resolve().parents[1]


def cli_command() -> list[str]:
    """The ``cityvisor`` console script next to the running interpreter (else the repo venv).

    ``BENCH_CITYVISOR`` (a command line) overrides it, e.g. to benchmark another checkout.
    """
    override = os.environ.get("BENCH_CITYVISOR")
    if override:
        return shlex.split(override)
    for candidate in (Path(sys.executable).with_name("cityvisor"),
                      ROOT / ".venv" / "bin" / "cityvisor"):
        if candidate.exists():
            return [str(candidate)]
    return [sys.executable, "-c", "from cityvisor.cli import main; main()"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


class BenchServer:
    """A running ``cityvisor serve --no-auth`` process with its own temporary data directory."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, data_dir: Path,
                 log: Path, own_dir: bool) -> None:
        self.process = process
        self.port = port
        self.data_dir = data_dir
        self.log = log
        self._own_dir = own_dir

    # -------------------------------------------------------------- lifecycle

    @classmethod
    def start(cls, *, data_dir: Path | None = None, env: dict[str, str] | None = None,
              timeout: float = 60.0) -> BenchServer:
        """Start a server on a free loopback port and wait until ``/health`` answers 200."""
        own_dir = data_dir is None
        directory = Path(tempfile.mkdtemp(prefix="cityvisor-bench-")) if own_dir else data_dir
        assert directory is not None
        port = free_port()
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("CITYVISOR_")}
        child_env.update({"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200",
                          "CITYVISOR_ALLOW_CONTEXT_FETCH": "false",  # offline: bundled contexts
                          "CITYVISOR_LOG_LEVEL": "warning"})
        child_env.update(env or {})
        log = directory / "server.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [*cli_command(), "serve", "--no-auth", "--host", "127.0.0.1",
                 "--port", str(port), "--data-dir", str(directory / "data")],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=child_env,
            )
        server = cls(process, port, directory / "data", log, own_dir)
        server._directory = directory
        try:
            server.wait_healthy(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n"
                                   f"{self.log_text()[-4000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
                conn.close()
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not healthy after {timeout:.0f} s:\n{self.log_text()[-4000:]}")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server (SIGINT, then SIGKILL) and remove the temporary directory."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self._own_dir:
            shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -------------------------------------------------------------- facts

    _directory: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.url}/ngsi-ld/v1"

    def rss_mb(self) -> float | None:
        """Resident set size now (VmRSS), in MB (10^6 bytes)."""
        kb = proc_status(self.pid, "VmRSS")
        return None if kb is None else round(kb * 1024 / 1e6, 1)

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

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""
