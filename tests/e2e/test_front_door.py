"""The front door: the README's demo command, ``bash scripts/demo``, on a fresh clone.

The repository's committed HEAD is cloned into ``X/main`` beside ``X/shared`` (a link to the
``../shared`` of this checkout, where the storm's data is), and ``scripts/demo`` runs there as a
newcomer would run it: it creates ``.venv``, installs the package with what the demo needs,
installs the console's front-end packages and starts the demo. The test waits until the server
answers and the October 2014 storm replay writes its first gauge readings in tenant ``nimes``,
then stops it. pip and npm use their normal caches (warm on CI after ``scripts/test``): a fresh
install then takes ~20 s, the whole test ~1-2 min.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
from links import SDM, link
from support.server import ROOT, clean_env, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SHARED = ROOT.parent / "shared"
INSTALL_AND_LOAD_S = 420  # install, npm ci, build and load the city (~1 min when caches are warm)
STORM_S = 120  # from the first answer to the storm's first readings (~15-30 s)


def get(port: int, path: str, headers: dict[str, str] | None = None,
        ) -> tuple[int, dict[str, str], bytes]:
    """(status, headers with lower-case names, body) of ``GET path`` on 127.0.0.1:``port``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, response.read()
    finally:
        conn.close()


def storm_readings(port: int) -> int:
    """How many ``FloodMonitoring`` entities of tenant ``nimes`` carry the storm scenario's
    label in ``dataProvider`` (the static demo city has none: the scenario labels every reading
    it writes, and the flood app running on it every warning point)."""
    query = urlencode({"type": "FloodMonitoring", "q": "dataProvider", "attrs": "dataProvider",
                       "options": "keyValues", "limit": "1000"})
    status, _, body = get(port, f"/ngsi-ld/v1/entities?{query}", {
        "NGSILD-Tenant": "nimes", **link(SDM.format("Environment"))})
    assert status == 200, body
    return sum("2014" in str(entity.get("dataProvider")) for entity in json.loads(body))


def answers(port: int) -> bool:
    try:
        return get(port, "/health")[0] == 200
    except OSError:
        return False


def test_scripts_demo_on_a_fresh_clone(tmp_path: Path) -> None:
    if not (SHARED / "data" / "flood" / "cance").is_dir():
        pytest.skip(f"no storm data at {SHARED}/data/flood/cance")
    for tool in ("git", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is needed to run scripts/demo")
    clone = tmp_path / "main"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    (tmp_path / "shared").symlink_to(SHARED.resolve(), target_is_directory=True)
    port = free_port()
    log = tmp_path / "demo.log"
    env = clean_env({"PYTHON": sys.executable})
    env.pop("VIRTUAL_ENV", None)
    started = time.monotonic()
    with log.open("wb") as out:
        # its own session: the install's children and the server stop together at the end
        demo = subprocess.Popen(["bash", "scripts/demo", "--port", str(port)], cwd=clone,
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)

    def text() -> str:
        return log.read_text(errors="replace")[-8000:]

    try:
        while not answers(port):
            assert demo.poll() is None, f"scripts/demo exited with {demo.returncode}:\n{text()}"
            assert time.monotonic() - started < INSTALL_AND_LOAD_S, \
                f"no answer on port {port} after {INSTALL_AND_LOAD_S} s:\n{text()}"
            time.sleep(0.5)
        serving = time.monotonic()
        while storm_readings(port) == 0:
            assert demo.poll() is None, f"the demo exited with {demo.returncode}:\n{text()}"
            assert "No flood replay" not in text(), text()
            assert time.monotonic() - serving < STORM_S, \
                f"no storm reading {STORM_S} s after the server answered:\n{text()}"
            time.sleep(1)
        output = text()
        assert "No flood replay" not in output, output
        assert "Traceback" not in output, output
        assert "flood-2014" in output, output  # the banner lists the scenario among the live
        status, _, body = get(port, "/console/")
        assert status == 200, body[:500]
        print(json.dumps({"front_door_s": {  # shown with -s: what a newcomer waits
            "install_and_load": round(serving - started, 1),
            "storm": round(time.monotonic() - serving, 1)}}))
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGTERM)
            try:
                demo.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(demo.pid, signal.SIGKILL)
                demo.wait(timeout=10)
    assert "Traceback" not in log.read_text(errors="replace"), text()
