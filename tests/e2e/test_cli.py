"""The ``cityvisor`` command line, run as real commands."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

TOKEN_RE = re.compile(r"^cvt_([0-9a-f]{12})_([A-Za-z0-9_-]{20,})$")


def create_token(e2e: Any, data_dir: Path, *args: str) -> tuple[str, str, str]:
    """(token, id, secret) of a token created with the CLI."""
    result = e2e.run_cli("token", "create", *args, "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    match = TOKEN_RE.match(lines[0])
    assert match, result.stdout
    return lines[0], match.group(1), match.group(2)


def test_token_create_prints_the_token_once(e2e: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = e2e.run_cli("token", "create", "--role", "writer", "--tenant", "t1", "--name", "ops",
                         "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    match = TOKEN_RE.match(token)
    assert match, result.stdout
    assert result.stdout.count("cvt_") == 1
    assert match.group(1) in result.stderr  # the id is announced on stderr
    assert "shown once" in result.stderr
    assert match.group(2) not in result.stderr
    # stored only hashed
    with sqlite3.connect(data / "system.sqlite") as conn:
        rows = conn.execute("SELECT id, secret_sha256, role, tenant, name FROM tokens").fetchall()
    assert len(rows) == 1
    token_id, digest, role, tenant, name = rows[0]
    assert (token_id, role, tenant, name) == (match.group(1), "writer", "t1", "ops")
    assert match.group(2) not in digest and len(digest) == 64


def test_token_list_shows_tokens_without_secrets(e2e: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    token_a, id_a, secret_a = create_token(e2e, data, "--role", "writer", "--tenant", "t1")
    token_b, id_b, secret_b = create_token(e2e, data, "--role", "admin", "--tenant", "*",
                                           "--name", "ops")
    result = e2e.run_cli("token", "list", "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    rows = {line.split("│")[1].strip(): line for line in out.splitlines()
            if "│" in line and (id_a in line or id_b in line)}
    assert set(rows) == {id_a, id_b}
    assert "writer" in rows[id_a] and "t1" in rows[id_a]
    assert "admin" in rows[id_b] and "*" in rows[id_b] and "ops" in rows[id_b]
    for secret in (secret_a, secret_b, token_a, token_b):
        assert secret not in out and secret not in result.stderr


def test_token_revoke(e2e: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    _, token_id, _ = create_token(e2e, data, "--role", "reader")
    result = e2e.run_cli("token", "revoke", token_id, "--data-dir", str(data))
    assert result.returncode == 0, result.stderr
    assert "revoked" in result.stderr
    listed = e2e.run_cli("token", "list", "--data-dir", str(data)).stdout
    row = next(line for line in listed.splitlines() if token_id in line)
    assert re.search(r"\d{4}-\d{2}-\d{2}T", row.split(token_id, 1)[1].split("│", 5)[-1])
    again = e2e.run_cli("token", "revoke", token_id, "--data-dir", str(data))
    assert again.returncode == 1
    assert token_id in again.stderr


def test_token_revoke_unknown_id_exits_1(e2e: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    create_token(e2e, data, "--role", "reader")
    result = e2e.run_cli("token", "revoke", "ffffffffffff", "--data-dir", str(data))
    assert result.returncode == 1
    assert "no active token ffffffffffff" in result.stderr


def test_token_create_with_a_bogus_role_exits_2(e2e: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = e2e.run_cli("token", "create", "--role", "bogus", "--data-dir", str(data))
    assert result.returncode == 2
    assert result.stdout == ""
    assert "bogus" in result.stderr
    assert "reader" in result.stderr and "writer" in result.stderr and "admin" in result.stderr
    assert "cvt_" not in result.stdout + result.stderr


def test_token_create_needs_a_role(e2e: Any, tmp_path: Path) -> None:
    result = e2e.run_cli("token", "create", "--data-dir", str(tmp_path / "d"))
    assert result.returncode == 2
    assert "--role" in result.stderr


def test_serve_refuses_no_auth_off_loopback(e2e: Any, tmp_path: Path) -> None:
    result = e2e.run_cli("serve", "--host", "0.0.0.0", "--no-auth", "--port",
                         str(e2e.free_port()), "--data-dir", str(tmp_path / "d"), timeout=30)
    assert result.returncode != 0
    assert "Refusing to run without authentication" in result.stderr
    assert "0.0.0.0" in result.stderr


def test_serve_with_auth_and_a_cli_token(e2e: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    token, token_id, _ = create_token(e2e, data, "--role", "writer")
    server = e2e.start_server(data, no_auth=False)
    with httpx.Client(timeout=10.0) as client:
        assert client.get(server.url + "/health").status_code == 200
        response = client.get(server.api + "/types")
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.headers["www-authenticate"].startswith("Bearer")
        auth = {"Authorization": f"Bearer {token}"}
        response = client.get(server.api + "/types", headers=auth)
        assert response.status_code == 200, response.text
        assert response.json()["type"] == "EntityTypeList"
        response = client.post(server.api + "/entities", headers=auth, json={
            "id": "urn:ngsi-ld:Sensor:1", "type": "Sensor"})
        assert response.status_code == 201, response.text

        # a token created by the CLI while the server runs works at once
        reader, _reader_id, _ = create_token(e2e, data, "--role", "reader")
        response = client.get(server.api + "/entities/urn:ngsi-ld:Sensor:1",
                              headers={"Authorization": f"Bearer {reader}"})
        assert response.status_code == 200, response.text

        # revocation by the CLI is effective within 2 s (ADR 0003)
        assert e2e.run_cli("token", "revoke", token_id, "--data-dir", str(data)).returncode == 0
        deadline = time.monotonic() + 2.5
        status = 200
        while time.monotonic() < deadline:
            status = client.get(server.api + "/types", headers=auth).status_code
            if status == 401:
                break
            time.sleep(0.1)
        assert status == 401


def test_serve_refuses_a_bad_port(e2e: Any, tmp_path: Path) -> None:
    result = e2e.run_cli("serve", "--port", "70000", "--data-dir", str(tmp_path / "d"), timeout=30)
    assert result.returncode == 2


def test_version(e2e: Any) -> None:
    result = e2e.run_cli("version")
    assert result.returncode == 0
    assert re.match(r"^\d+\.\d+\.\d+", result.stdout.strip())


def test_demo_load_only(e2e: Any, tmp_path: Path) -> None:
    """~57,000 entities in < 60 s (about 12 s here: not marked slow): the city's 39,207 and
    the Occitanie weather's 17,940 (observations and 3 days of forecasts per commune)."""
    data = tmp_path / "demo"
    started = time.monotonic()
    result = e2e.run_cli("demo", "--load-only", "--data-dir", str(data), timeout=120)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-2000:]
    match = re.search(r"Loaded (\d+) entities into tenant 'nimes'", result.stderr)
    assert match, result.stderr[-2000:]
    total = int(match.group(1))
    assert 56_000 <= total <= 58_000
    assert elapsed < 60, f"demo load took {elapsed:.1f} s"
    assert (data / "tenants").is_dir()
    # the data is there: a server on the same directory serves it
    server = e2e.start_server(data)
    with httpx.Client(timeout=30.0) as client:
        types = client.get(server.api + "/types", headers={"NGSILD-Tenant": "nimes"})
        assert types.status_code == 200, types.text
        assert len(types.json()["typeList"]) >= 8
        details = client.get(server.api + "/types", params={"details": "true"},
                             headers={"NGSILD-Tenant": "nimes"}).json()
        counted = 0
        for entry in details:
            info = client.get(server.api + "/types/" + quote(entry["id"], safe=""),
                              headers={"NGSILD-Tenant": "nimes"})
            assert info.status_code == 200, info.text
            counted += info.json()["entityCount"]
        assert counted == total

