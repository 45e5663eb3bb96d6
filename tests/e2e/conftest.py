"""Shared helpers for end-to-end tests: real ``cityvisor`` processes on free ports."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from support.server import ServerProcess, cityvisor_script, clean_env, free_port, start_serve

CLI = cityvisor_script()
Server = ServerProcess


def cli_env() -> dict[str, str]:
    """A clean environment: no CITYVISOR_* settings leak in; wide output, no colours."""
    return clean_env()


def run_cli(*args: str, timeout: float = 60.0, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``cityvisor ARGS`` to completion; returns the completed process (text mode)."""
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout,
                          env=cli_env(), cwd=cwd, check=False)


def wait_for_health(server: Server, timeout: float = 30.0) -> None:
    """Poll GET /health until it answers 200 (or the process dies, or time runs out)."""
    server.wait_healthy(timeout)


def start_server(data_dir: Path, *, port: int | None = None, no_auth: bool = True,
                 extra: Sequence[str] = (), wait: bool = True) -> Server:
    """Start ``cityvisor serve`` on 127.0.0.1 and a free port; wait until healthy."""
    return start_serve(data_dir, args=[*(["--no-auth"] if no_auth else []), *extra], port=port,
                       command=[CLI], wait=wait)


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
