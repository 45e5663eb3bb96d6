"""Real FIWARE client libraries from PyPI drive a real ``cityvisor serve``, unchanged.

Each library lives in its own virtual environment under ``.venv-clients/`` (their pinned
dependencies conflict with ours; ``bash scripts/test`` creates them). A scenario script, run
with that environment's interpreter, does what a user of the library does: entities CRUD, batch
operations, queries (q, geo-query, pagination), a subscription notified to a local receiver and
temporal queries; this test then checks the broker's state on its own.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from support.server import ROOT, ServerProcess, start_serve

HERE = Path(__file__).parent
CLIENTS = ROOT / ".venv-clients"


class Receiver:
    """A notification endpoint on a free loopback port: POST /notify keeps the body; GET
    /received answers the notifications kept so far."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def do_GET(self) -> None:
                data = json.dumps(receiver.received).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[ServerProcess]:
    server = start_serve(tmp_path / "data", args=["--no-auth"])
    yield server
    server.stop()
    assert "Traceback" not in server.log_text(), server.log_text()[-4000:]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def run_scenario(library: str, *args: str) -> str:
    python = CLIENTS / library / "bin" / "python"
    if not python.exists():
        pytest.fail(f"{python} is missing: `bash scripts/test` installs the client libraries")
    done = subprocess.run([str(python), str(HERE / f"{library}_scenario.py"), *args],
                          capture_output=True, text=True, timeout=240, check=False)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert "scenario complete" in done.stdout, output[-6000:]
    return done.stdout


def test_ngsildclient_works_unchanged(broker: ServerProcess, receiver: Receiver) -> None:
    out = run_scenario("ngsildclient", "127.0.0.1", str(broker.port), receiver.url)
    for step in ("create", "retrieve", "update", "batch create", "batch upsert", "query",
                 "temporal", "subscription", "delete"):
        assert f"ok {step}\n" in out, out
    assert len(receiver.received) >= 1
    # the broker's own view: everything the client deleted is gone
    left = httpx.get(f"{broker.api}/entities", params={"type": "WaterLevelGauge"})
    assert left.status_code == 200 and left.json() == []


def test_filip_works_unchanged(broker: ServerProcess, receiver: Receiver) -> None:
    out = run_scenario("filip", broker.url, receiver.url)
    for step in ("create and retrieve", "append attributes", "update attribute", "keyValues",
                 "delete attribute", "batch create", "batch upsert", "batch update", "query",
                 "subscription", "unsubscribe", "delete"):
        assert f"ok {step}\n" in out, out
    # the broker's own view: the client's tenant exists and holds nothing left
    left = httpx.get(f"{broker.api}/entities", params={"type": "Streetlight"},
                     headers={"NGSILD-Tenant": "nimes"})
    assert left.status_code == 200 and left.json() == []
