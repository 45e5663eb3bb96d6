"""CPU cost and write rate of the living demo city (``cityvisor demo``), on a real process.

Starts ``cityvisor demo --speed S`` on a free port and a temporary data directory, waits until
it serves, lets it warm up, then measures over ``--seconds``: the server's CPU time (user +
system, from /proc, as % of one core), the reports written per real second (read from the
broker: the rate lines the demo prints), and the growth of the tenant database (the temporal
history). With ``--baseline`` it first measures the same with ``--no-live`` (an idle server).
Prints one JSON line on stdout and a summary on stderr.

    .venv/bin/python benchmarks/demo_live.py --seconds 60 --speed 1 --baseline
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _server import cli_command, free_port, proc_status

TICKS = os.sysconf("SC_CLK_TCK")
RATE_LINE = re.compile(r"^live: (.*)$", re.M)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def db_bytes(data: Path) -> int:
    return sum(p.stat().st_size for p in (data / "tenants").glob("*") if p.is_file()) \
        if (data / "tenants").exists() else 0


def measure(live: bool, seconds: float, speed: float, warmup: float) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "demo"
        log = Path(tmp) / "demo.log"
        port = free_port()
        args = [*cli_command(), "demo", "--port", str(port), "--data-dir", str(data),
                "--report-every", str(max(seconds / 2, 5))]
        args += ["--speed", str(speed)] if live else ["--no-live"]
        env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb"}
        with log.open("wb") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            started = time.monotonic()
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"demo exited: {log.read_text()}")
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            ready_s = time.monotonic() - started
            time.sleep(warmup)
            cpu0, size0, t0 = cpu_seconds(process.pid), db_bytes(data), time.monotonic()
            time.sleep(seconds)
            cpu1, size1, t1 = cpu_seconds(process.pid), db_bytes(data), time.monotonic()
            rss_kb = proc_status(process.pid, "VmRSS") or 0
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        lines = RATE_LINE.findall(log.read_text())
        return {
            "live": live, "speed": speed if live else None, "ready_s": round(ready_s, 1),
            "cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
            "db_growth_mb_per_hour": round((size1 - size0) / (t1 - t0) * 3600 / 1e6, 1),
            "rss_mb": round(rss_kb / 1024), "last_rate_line": lines[-1] if lines else None,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--speed", type=float, default=1.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--baseline", action="store_true", help="also measure --no-live")
    options = parser.parse_args()
    result: dict[str, object] = {"benchmark": "demo_live", "seconds": options.seconds}
    if options.baseline:
        result["static"] = measure(False, options.seconds, options.speed, options.warmup)
    result["living"] = measure(True, options.seconds, options.speed, options.warmup)
    print(json.dumps(result, ensure_ascii=False))
    for key in ("static", "living"):
        run = result.get(key)
        if isinstance(run, dict):
            print(f"{key}: {run['cpu_percent_of_one_core']} % of one core, "
                  f"database +{run['db_growth_mb_per_hour']} MB/h, RSS {run['rss_mb']} MB; "
                  f"{run['last_rate_line'] or 'no simulator'}", file=sys.stderr)


if __name__ == "__main__":
    main()
