"""A real ``cityvisor`` server process on a free loopback port.

Used by ``tests/e2e`` (through its ``e2e`` fixture), ``tests/browser`` (``free_port``) and
``benchmarks/_server.py``. Standard library only::

    server = start_serve(tmp_path / "data", args=["--no-auth"])   # waits for /health
    server.url, server.api, server.pid, server.log_text()
    server.stop()                                                 # SIGTERM, then SIGKILL
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

__all__ = ["ROOT", "ServerProcess", "clean_env", "cityvisor_script", "free_port", "start_serve"]


def cityvisor_script() -> str:
    """The ``cityvisor`` console script next to the running interpreter, else the repository's
    ``.venv`` one."""
    beside = Path(sys.executable).with_name("cityvisor")
    return str(beside if beside.exists() else ROOT / ".venv" / "bin" / "cityvisor")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any ``CITYVISOR_*`` setting; wide output, no colours;
    then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYVISOR_")}
    env.update({"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    env.update(extra or {})
    return env


@dataclass
class ServerProcess:
    """A ``cityvisor`` process serving HTTP on 127.0.0.1:``port``; its output goes to ``log``."""

    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

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

    def healthy(self) -> bool:
        """``GET /health`` answers 200 now."""
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                conn.request("GET", "/health")
                return conn.getresponse().status == 200
            finally:
                conn.close()
        except OSError:
            return False

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Poll ``/health`` until it answers 200; raise (with the log) if the process exits or
        ``timeout`` seconds pass (the process is then killed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n"
                                   f"{self.log_text()[-6000:]}")
            if self.healthy():
                return
            time.sleep(0.05)
        self.kill()
        raise TimeoutError(f"server not healthy after {timeout:g} s:\n{self.log_text()[-6000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Send ``sig`` (a graceful stop); SIGKILL if the process is still there after
        ``timeout`` seconds."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()


def start_serve(data_dir: Path, *, args: Sequence[str] = (), port: int | None = None,
                command: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
                log: Path | None = None, wait: bool = True,
                timeout: float = 30.0) -> ServerProcess:
    """Start ``cityvisor serve --host 127.0.0.1 --port PORT --data-dir DATA_DIR ARGS`` (``port``:
    a free one by default; ``command``: the ``cityvisor`` command, default
    :func:`cityvisor_script`; ``env``: the whole environment, default :func:`clean_env`;
    ``log``: default ``DATA_DIR/../server-PORT.log``); wait until healthy unless ``wait`` is
    false."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = log or data_dir.parent / f"server-{port}.log"
    argv = [*(command or [cityvisor_script()]), "serve", "--host", "127.0.0.1",
            "--port", str(port), "--data-dir", str(data_dir), *args]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL,
                                   env=dict(env) if env is not None else clean_env())
    server = ServerProcess(process, port, data_dir, log)
    if wait:
        try:
            server.wait_healthy(timeout)
        except BaseException:
            server.stop()
            raise
    return server
