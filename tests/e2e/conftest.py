"""Shared helpers for end-to-end tests: real ``cityvisor`` processes on free ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).with_name("cityvisor"))
if not Path(CLI).exists():  # pragma: no cover - fall back to the repository venv
    CLI = str(ROOT / ".venv" / "bin" / "cityvisor")


def cli_env() -> dict[str, str]:
    """A clean environment: no CITYVISOR_* settings leak in; wide output, no colours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYVISOR_")}
    env.update({"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    return env


def run_cli(*args: str, timeout: float = 60.0, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``cityvisor ARGS`` to completion; returns the completed process (text mode)."""
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env=cli_env(), cwd=cwd, check=False)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        return f"{self.url}/ngsi-ld/v1"

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def wait_for_health(server: Server, timeout: float = 30.0) -> None:
    """Poll GET /health until it answers 200 (or the process dies, or time runs out)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited with {server.process.returncode}:\n"
                                 f"{server.log_text()}")
        try:
            if httpx.get(server.url + "/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    server.kill()
    raise AssertionError(f"server not healthy after {timeout} s:\n{server.log_text()}")


def start_server(data_dir: Path, *, port: int | None = None, no_auth: bool = True,
                 extra: Sequence[str] = (), wait: bool = True) -> Server:
    """Start ``cityvisor serve`` on 127.0.0.1 and a free port; wait until healthy."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"server-{port}.log"
    args = [CLI, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
    if no_auth:
        args.append("--no-auth")
    args.extend(extra)
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=cli_env())
    server = Server(process, port, data_dir, log)
    if wait:
        wait_for_health(server)
    return server


class Harness:
    """What e2e tests use (a fixture, since test modules cannot import this conftest by name):
    start servers (stopped at teardown), run the CLI, find free ports."""

    Server = Server

    def __init__(self) -> None:
        self.servers: list[Server] = []
        self._processes: list[subprocess.Popen[str]] = []

    free_port = staticmethod(free_port)
    run_cli = staticmethod(run_cli)
    wait_for_health = staticmethod(wait_for_health)
    cli = CLI

    def start_server(self, data_dir: Path, **options: object) -> Server:
        server = start_server(data_dir, **options)  # type: ignore[arg-type]
        self.servers.append(server)
        return server

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """Start ``cityvisor ARGS`` without waiting (text pipes); killed at teardown."""
        process = subprocess.Popen([CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env=cli_env())
        self._processes.append(process)
        return process

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        for process in self._processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture
def e2e() -> Iterator[Harness]:
    harness = Harness()
    try:
        yield harness
    finally:
        harness.close()
